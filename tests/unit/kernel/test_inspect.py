"""The kernel inspector's parsing: netlink messages (encoded and decoded by pyroute2) -> records (no kernel)."""

from __future__ import annotations

from typing import Any

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netlab.kernel.inspect import Interface, Link, Route, RouteLookup, interface_of, link_of, lookup_of, route_of

NAMES = {1: "lo", 2: "eth0", 3: "cni0", 4: "veth1234", 5: "flannel.1"}


def wire(msg: Any) -> Any:
    """``msg`` as the kernel would send it: encoded, then decoded afresh."""
    msg.encode()
    out = type(msg)(msg.data)
    out.decode()
    return out


def link(index: int, name: str, kind: str | None = None, **attrs: Any) -> Any:
    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MTU", attrs.pop("mtu", 1500)), ("IFLA_OPERSTATE", attrs.pop("state", "UP"))]
    if kind is not None:
        msg["attrs"].append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind)]}))
    msg["attrs"] += list(attrs.items())
    return wire(msg)


def route(dst: str | None, dst_len: int, scope: int = 0, kind: int = 1, **attrs: Any) -> Any:
    msg = rtmsg()
    msg["family"], msg["dst_len"], msg["scope"], msg["type"], msg["table"] = 2, dst_len, scope, kind, 254
    msg["attrs"] = ([("RTA_DST", dst)] if dst else []) + list(attrs.items())
    return wire(msg)


def test_interface_of_a_bridge_port() -> None:
    msg = link(4, "veth1234", "veth", IFLA_ADDRESS="02:42:ac:11:00:02", IFLA_MASTER=3, mtu=1450)
    assert interface_of(msg, NAMES) == Interface("veth1234", "veth", "UP", 1450, "02:42:ac:11:00:02", "cni0")


def test_interface_of_plain_devices_is_loopback_or_device() -> None:
    assert interface_of(link(1, "lo", state="UNKNOWN", mtu=65536), NAMES) == Interface("lo", "loopback", "UNKNOWN", 65536, "", None)
    assert interface_of(link(2, "eth0"), NAMES).kind == "device"


def test_route_of_reads_as_ip_route_does() -> None:
    default = route_of(route(None, 0, RTA_GATEWAY="192.168.1.1", RTA_OIF=2), NAMES, 254)
    assert default == Route("default", "192.168.1.1", "eth0", "global", 254)
    assert str(default) == "default via 192.168.1.1 dev eth0"
    connected = route_of(route("10.244.1.0", 24, scope=253, RTA_OIF=3), NAMES, 254)
    assert str(connected) == "10.244.1.0/24 dev cni0 scope link"
    other = route_of(route("10.244.2.0", 24, RTA_GATEWAY="10.244.2.0", RTA_OIF=5), NAMES, 100)
    assert str(other) == "10.244.2.0/24 via 10.244.2.0 dev flannel.1 table 100"
    assert route_of(route("10.0.0.1", 32, scope=42), NAMES, 254).scope == "42"


def test_link_of_a_veth_names_its_peer_and_master() -> None:
    msg = link(4, "veth1234", "veth", IFLA_LINK=2, IFLA_LINK_NETNSID=7, IFLA_MASTER=3, IFLA_ADDRESS="02:42:ac:11:00:02")
    assert link_of(msg, {4: ["10.0.0.1"]}) == Link("veth1234", 4, "veth", 2, 7, 3, "02:42:ac:11:00:02", ("10.0.0.1",))


def test_link_of_a_plain_device_has_no_kind() -> None:
    out = link_of(link(2, "eth0"), {})
    assert (out.kind, out.peer_index, out.peer_nsid, out.master, out.mac, out.addresses) == ("", None, None, None, "", ())


def test_lookup_of_tells_local_delivery_from_forwarding() -> None:
    assert lookup_of(route("10.244.2.2", 32, RTA_OIF=5, RTA_GATEWAY="10.244.2.0"), NAMES) == RouteLookup("flannel.1", "10.244.2.0", False)
    assert lookup_of(route("10.244.1.1", 32, kind=2, RTA_OIF=1), NAMES) == RouteLookup("lo", None, True)
