"""A read-only look at a namespace's links, addresses and routes, shared by status and trace.

Two views of the same kernel state, both read-only (nothing here changes a namespace):

- :func:`inspect_namespace` is what ``netlab status`` prints: every interface with its kind,
  state, MTU, MAC, master and addresses (with prefix length), and the main routing table. It
  opens one netlink socket in the namespace and closes it.
- :class:`Inspector` is what a trace walks: the link graph (veth peers by ``IFLA_LINK`` and
  ``IFLA_LINK_NETNSID``, bridge masters, tunnel devices), the neighbour a router resolved, and
  the kernel's own route lookup (``ip route get DST from SRC iif IN``). Queries run in a helper
  thread inside the namespace; links and netns ids are cached per namespace for one walk.

The ``*_of`` functions turn one pyroute2 message into netlab's record and do no I/O.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netlab.kernel import netns

RTN_LOCAL = 2
MAIN_TABLE = 254
_SCOPES = {0: "global", 253: "link", 254: "host"}


# ------------------------------------------------------------------ status: tables as `ip` shows them
@dataclass
class Interface:
    """An interface as ``netlab status`` lists it."""

    name: str
    kind: str  # veth | bridge | vxlan | ... | "loopback" | "device" for plain devices
    state: str
    mtu: int
    mac: str
    master: str | None  # the master's name
    addresses: list[str] = field(default_factory=list)  # "10.244.1.2/24"


@dataclass
class Route:
    """An entry of a routing table, printed the way ``ip route`` does."""

    dst: str
    via: str | None
    dev: str | None
    scope: str
    table: int

    def __str__(self) -> str:
        text = self.dst
        if self.via:
            text += f" via {self.via}"
        if self.dev:
            text += f" dev {self.dev}"
        if self.scope != "global":
            text += f" scope {self.scope}"
        if self.table not in (MAIN_TABLE,):
            text += f" table {self.table}"
        return text


def interface_of(link: Any, names: Mapping[int, str]) -> Interface:
    """An ``RTM_NEWLINK`` message as an :class:`Interface` (``names``: ifindex -> name, for the master)."""
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else ("loopback" if link["index"] == 1 else "device")
    return Interface(
        name=link.get_attr("IFLA_IFNAME"),
        kind=kind or "device",
        state=str(link.get_attr("IFLA_OPERSTATE")),
        mtu=int(link.get_attr("IFLA_MTU")),
        mac=str(link.get_attr("IFLA_ADDRESS") or ""),
        master=names.get(link.get_attr("IFLA_MASTER")),
    )


def route_of(route: Any, names: Mapping[int, str], table: int) -> Route:
    """An ``RTM_NEWROUTE`` message of ``table`` as a :class:`Route`."""
    dst = route.get_attr("RTA_DST")
    return Route(
        dst=f"{dst}/{route['dst_len']}" if dst else "default",
        via=route.get_attr("RTA_GATEWAY"),
        dev=names.get(route.get_attr("RTA_OIF")),
        scope=_SCOPES.get(route["scope"], str(route["scope"])),
        table=table,
    )


def inspect_namespace(ns: str) -> tuple[list[Interface], list[Route]]:
    """Namespace ``ns``'s interfaces (with their IPv4 addresses) and its main routing table."""
    with IPRoute(use_socket=netns.netlink_socket(ns)) as ipr:
        links = ipr.get_links()
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        interfaces = {link["index"]: interface_of(link, names) for link in links}
        for addr in ipr.get_addr(family=socket.AF_INET):
            iface = interfaces.get(addr["index"])
            if iface:
                iface.addresses.append(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
        routes = []
        for table in (MAIN_TABLE,):
            for route in ipr.get_routes(family=socket.AF_INET, table=table):
                routes.append(route_of(route, names, table))
        return list(interfaces.values()), routes


# ------------------------------------------------------------------ trace: the link graph and route lookups
@dataclass(frozen=True)
class Link:
    """A link as a trace follows it: by index, to its veth peer, its master, its addresses."""

    name: str
    index: int
    kind: str  # veth | bridge | vxlan | ipip | ... | "" for plain devices
    peer_index: int | None  # IFLA_LINK: for a veth, the peer's ifindex in its namespace
    peer_nsid: int | None  # IFLA_LINK_NETNSID: the peer's namespace, as this namespace numbers it
    master: int | None
    mac: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class RouteLookup:
    """The kernel's answer to ``ip route get``: where it sends a packet (not a table entry)."""

    oif: str | None
    gateway: str | None
    local: bool  # delivered in this namespace


def link_of(msg: Any, addresses: Mapping[int, Sequence[str]]) -> Link:
    """An ``RTM_NEWLINK`` message as a :class:`Link` (``addresses``: ifindex -> IPv4 addresses)."""
    info = msg.get_attr("IFLA_LINKINFO")
    kind = (info.get_attr("IFLA_INFO_KIND") if info else None) or ""
    return Link(
        name=msg.get_attr("IFLA_IFNAME"),
        index=msg["index"],
        kind=kind,
        peer_index=msg.get_attr("IFLA_LINK"),
        peer_nsid=msg.get_attr("IFLA_LINK_NETNSID"),
        master=msg.get_attr("IFLA_MASTER"),
        mac=msg.get_attr("IFLA_ADDRESS") or "",
        addresses=tuple(addresses.get(msg["index"], ())),
    )


def lookup_of(msg: Any, names: Mapping[int, str]) -> RouteLookup:
    """The ``RTM_NEWROUTE`` reply to a route get as a :class:`RouteLookup`."""
    return RouteLookup(names.get(msg.get_attr("RTA_OIF")), msg.get_attr("RTA_GATEWAY"), msg["type"] == RTN_LOCAL)


class Inspector:
    """Read-only, cached netlink queries per namespace (each in a helper thread)."""

    def __init__(self) -> None:
        self._links: dict[str, list[Link]] = {}
        self._nsids: dict[str, dict[int, str]] = {}

    def nsids(self, ns: str, candidates: Sequence[str]) -> dict[int, str]:
        """How namespace ``ns`` numbers the ``candidates`` (netns ids, as in IFLA_LINK_NETNSID)."""
        if ns not in self._nsids:
            self._nsids[ns] = netns.run_in(ns, lambda: _nsids(candidates))
        return self._nsids[ns]

    def links(self, ns: str) -> list[Link]:
        """Every link in ``ns`` (dumped once, then cached)."""
        if ns not in self._links:
            self._links[ns] = netns.run_in(ns, _dump_links)
        return self._links[ns]

    def link(self, ns: str, name: str) -> Link | None:
        """The link named ``name`` in ``ns``, if any."""
        return next((link for link in self.links(ns) if link.name == name), None)

    def by_index(self, ns: str, index: int) -> Link | None:
        """The link with ifindex ``index`` in ``ns``, if any."""
        return next((link for link in self.links(ns) if link.index == index), None)

    def neighbour(self, ns: str, ifindex: int, address: str) -> str | None:
        """The MAC ``ns`` has for ``address`` on ``ifindex`` (permanent or resolved), if any."""
        return netns.run_in(ns, lambda: _neighbour(ifindex, address))

    def route(self, ns: str, dst: str, src: str | None = None, iif: int | None = None) -> RouteLookup | None:
        """Where ``ns`` sends a packet to ``dst`` (from ``src``, arriving on ``iif``), if it routes it.

        Without both ``src`` and ``iif``, or when the kernel refuses that lookup, it asks for
        ``dst`` alone."""
        return netns.run_in(ns, lambda: _route_get(dst, src, iif))


def _dump_links() -> list[Link]:
    with IPRoute() as ipr:
        addresses: dict[int, list[str]] = {}
        for msg in ipr.get_addr(family=socket.AF_INET):
            addresses.setdefault(msg["index"], []).append(msg.get_attr("IFA_ADDRESS"))
        return [link_of(msg, addresses) for msg in ipr.get_links()]


def _nsids(candidates: Sequence[str]) -> dict[int, str]:
    out = {}
    with IPRoute() as ipr:
        for name in candidates:
            try:
                fd = os.open(netns.path(name), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                nsid = ipr.get_netnsid(fd=fd).get("nsid")
            finally:
                os.close(fd)
            if nsid is not None and 0 <= nsid < 0xFFFFFFFF:
                out[nsid] = name
    return out


def _neighbour(ifindex: int, address: str) -> str | None:
    with IPRoute() as ipr:
        for msg in ipr.get_neighbours(family=socket.AF_INET):
            if msg["ifindex"] == ifindex and msg.get_attr("NDA_DST") == address and msg.get_attr("NDA_LLADDR"):
                return str(msg.get_attr("NDA_LLADDR"))
    return None


def _route_get(dst: str, src: str | None, iif: int | None) -> RouteLookup | None:
    with IPRoute() as ipr:
        names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in ipr.get_links()}
        attempts: list[dict[str, Any]] = []
        if iif is not None and src is not None:
            attempts.append({"dst": dst, "src": src, "iif": iif})
        attempts.append({"dst": dst})
        for kwargs in attempts:
            try:
                reply = ipr.route("get", **kwargs)
            except NetlinkError:
                continue
            return lookup_of(reply[0], names)
    return None
