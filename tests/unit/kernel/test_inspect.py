"""The kernel inspector's parsing: netlink messages (encoded by pyroute2, as the kernel sends them) -> records (no kernel)."""

from __future__ import annotations

from typing import Any

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netlab.kernel.inspect import (
    Interface,
    Link,
    Route,
    RouteLookup,
    interface_of,
    link_of,
    lookup_of,
    parse_address,
    parse_link,
    parse_route,
    route_of,
    tables_view,
)

NAMES = {1: "lo", 2: "eth0", 3: "cni0", 4: "veth1234", 5: "flannel.1"}


def wire(msg: Any) -> Any:
    """``msg`` as the kernel would send it: encoded, then decoded afresh."""
    msg.encode()
    out = type(msg)(msg.data)
    out.decode()
    return out


def raw(msg: Any) -> bytes:
    """The bytes of ``msg`` on the wire (header included), as a dump returns them."""
    msg.encode()
    return bytes(msg.data[: msg["header"]["length"]])


def link_msg(index: int, name: str, kind: str | None = None, **attrs: Any) -> Any:
    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MTU", attrs.pop("mtu", 1500)), ("IFLA_OPERSTATE", attrs.pop("state", "UP"))]
    if kind is not None:
        msg["attrs"].append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind)]}))
    msg["attrs"] += list(attrs.items())
    return msg


def link(index: int, name: str, kind: str | None = None, **attrs: Any) -> Any:
    return parse_link(raw(link_msg(index, name, kind, **attrs)))


def route_msg(dst: str | None, dst_len: int, scope: int = 0, kind: int = 1, table: int = 254, **attrs: Any) -> Any:
    msg = rtmsg()
    msg["family"], msg["dst_len"], msg["scope"], msg["type"], msg["table"] = 2, dst_len, scope, kind, min(table, 252)
    msg["attrs"] = ([("RTA_DST", dst)] if dst else []) + [("RTA_TABLE", table)] + list(attrs.items())
    return msg


def route(dst: str | None, dst_len: int, scope: int = 0, kind: int = 1, table: int = 254, **attrs: Any) -> Any:
    return parse_route(raw(route_msg(dst, dst_len, scope, kind, table, **attrs)))


def test_interface_of_a_bridge_port() -> None:
    msg = link(4, "veth1234", "veth", IFLA_ADDRESS="02:42:ac:11:00:02", IFLA_MASTER=3, mtu=1450)
    assert interface_of(msg, NAMES) == Interface("veth1234", "veth", "UP", 1450, "02:42:ac:11:00:02", "cni0")


def test_interface_of_plain_devices_is_loopback_or_device() -> None:
    assert interface_of(link(1, "lo", state="UNKNOWN", mtu=65536), NAMES) == Interface("lo", "loopback", "UNKNOWN", 65536, "", None)
    assert interface_of(link(2, "eth0"), NAMES).kind == "device"


def test_route_of_reads_as_ip_route_does() -> None:
    default = route_of(route(None, 0, RTA_GATEWAY="192.168.1.1", RTA_OIF=2), NAMES)
    assert default == Route("default", "192.168.1.1", "eth0", "global", 254)
    assert str(default) == "default via 192.168.1.1 dev eth0"
    connected = route_of(route("10.244.1.0", 24, scope=253, RTA_OIF=3), NAMES)
    assert str(connected) == "10.244.1.0/24 dev cni0 scope link"
    other = route_of(route("10.244.2.0", 24, table=100, RTA_GATEWAY="10.244.2.0", RTA_OIF=5), NAMES)
    assert str(other) == "10.244.2.0/24 via 10.244.2.0 dev flannel.1 table 100"
    assert route_of(route("10.0.0.1", 32, scope=42), NAMES).scope == "42"
    assert route_of(route("10.0.0.0", 8, table=1000), NAMES).table == 1000  # beyond rtm_table's byte: RTA_TABLE


def test_link_of_a_veth_names_its_peer_and_master() -> None:
    msg = link(4, "veth1234", "veth", IFLA_LINK=2, IFLA_LINK_NETNSID=7, IFLA_MASTER=3, IFLA_ADDRESS="02:42:ac:11:00:02")
    assert link_of(msg, {4: ["10.0.0.1"]}) == Link("veth1234", 4, "veth", 2, 7, 3, "02:42:ac:11:00:02", ("10.0.0.1",))


def test_link_of_a_plain_device_has_no_kind() -> None:
    out = link_of(link(2, "eth0"), {})
    assert (out.kind, out.peer_index, out.peer_nsid, out.master, out.mac, out.addresses) == ("", None, None, None, "", ())


def test_a_namespace_view_puts_addresses_on_interfaces_and_keeps_the_main_table() -> None:
    links = [link(1, "lo", state="UNKNOWN", mtu=65536), link(2, "eth0", "veth", IFLA_ADDRESS="02:42:ac:11:00:02")]
    addr = ifaddrmsg()
    addr["family"], addr["prefixlen"], addr["index"] = 2, 16, 2
    addr["attrs"] = [("IFA_ADDRESS", "172.17.0.2"), ("IFA_LOCAL", "172.17.0.2"), ("IFA_LABEL", "eth0")]
    addresses = [a for a in (parse_address(raw(addr)),) if a]
    assert addresses == [(2, "172.17.0.2", 16)]
    routes = [route(None, 0, RTA_GATEWAY="172.17.0.1", RTA_OIF=2), route("172.17.0.2", 32, scope=254, kind=2, table=255, RTA_OIF=2)]
    interfaces, main = tables_view(links, addresses, routes)
    assert [(i.name, i.kind, i.addresses) for i in interfaces] == [("lo", "loopback", []), ("eth0", "veth", ["172.17.0.2/16"])]
    assert [str(r) for r in main] == ["default via 172.17.0.1 dev eth0"]  # the local table left out


def test_lookup_of_tells_local_delivery_from_forwarding() -> None:
    assert lookup_of(wire(route_msg("10.244.2.2", 32, RTA_OIF=5, RTA_GATEWAY="10.244.2.0")), NAMES) == RouteLookup("flannel.1", "10.244.2.0", False)
    assert lookup_of(wire(route_msg("10.244.1.1", 32, kind=2, RTA_OIF=1)), NAMES) == RouteLookup("lo", None, True)
