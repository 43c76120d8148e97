"""Hop-by-hop traces: where a probe goes, what it looks like at every hop, and a verdict.

:func:`trace` does what a person does with tcpdump on every box, in one call:

1. **Path.** :func:`find_path` walks the lab the way the kernel forwards: in each
   namespace it asks the kernel for the route (``ip route get DST from SRC iif IN``), follows
   veth pairs to their peer (``IFLA_LINK`` + ``IFLA_LINK_NETNSID``), picks the bridge
   port that leads to the next hop (by the neighbour MAC, else the address owner), and pushes/pops an outer destination at tunnel devices
   (``flannel.1``, ``tunl0``). Nothing about a datapath is hard-coded, so docker0, VXLAN,
   IP-in-IP, host-gw and VPC-native paths all come out of the same walk.
   A point may appear twice (a hairpin: in and out of the same interface). Behind an
   address a DNAT may rewrite (a Service's ClusterIP or NodePort, a published port), every
   possible target pod gets its own branch; the reply's path is walked too (policy routing
   and gateway hairpins make it differ), next to the request's path reversed.
2. **Capture.** One :class:`~netlab.capture.Capture` per point, all started before the probe;
   afterwards the branch and the reply path that actually saw the probe are shown.
3. **Probe.** ICMP echo from a raw socket, or a UDP datagram / TCP connection from a socket,
   all opened inside the source namespace (a listener in the destination namespace answers
   UDP/TCP). Every probe carries a unique marker in its payload, which survives NAT and
   encapsulation, so the same probe is recognised at every hop.
4. **Report.** Request rows in path order, reply rows in reverse, each with what changed since
   the previous row (encapsulated, decapsulated, SNAT, DNAT, TTL-1), and a one-line verdict.

Every socket and thread is closed on any exit (also Ctrl-C); the lab is only read.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netlab.errors import UsageError
from netlab.kernel import netns
from netlab.observe.capture import Capture, Point
from netlab.observe.decode import Frame, decode
from netlab.observe.icmp import echo_request
from netlab.plan import Host

TUNNEL_KINDS = ("vxlan", "ipip", "gre", "geneve", "sit")
MAX_STEPS = 40
PROBE_PORT = 8080
REPLY_TAG = b"-reply"
RTN_LOCAL = 2


# ------------------------------------------------------------------ kernel view (read-only)
@dataclass(frozen=True)
class Link:
    name: str
    index: int
    kind: str  # veth | bridge | vxlan | ipip | ... | "" for plain devices
    peer_index: int | None  # IFLA_LINK: for a veth, the peer's ifindex in its namespace
    peer_nsid: int | None  # IFLA_LINK_NETNSID: the peer's namespace, as this namespace numbers it
    master: int | None
    mac: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    oif: str | None
    gateway: str | None
    local: bool


class Kernel:
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
        if ns not in self._links:
            self._links[ns] = netns.run_in(ns, _dump_links)
        return self._links[ns]

    def link(self, ns: str, name: str) -> Link | None:
        return next((link for link in self.links(ns) if link.name == name), None)

    def by_index(self, ns: str, index: int) -> Link | None:
        return next((link for link in self.links(ns) if link.index == index), None)

    def neighbour(self, ns: str, ifindex: int, address: str) -> str | None:
        """The MAC ``ns`` has for ``address`` on ``ifindex`` (permanent or resolved), if any."""
        return netns.run_in(ns, lambda: _neighbour(ifindex, address))

    def route(self, ns: str, dst: str, src: str | None = None, iif: int | None = None) -> Route | None:
        return netns.run_in(ns, lambda: _route_get(dst, src, iif))


def _dump_links() -> list[Link]:
    from pyroute2 import IPRoute

    out = []
    with IPRoute() as ipr:
        addresses: dict[int, list[str]] = {}
        for msg in ipr.get_addr(family=socket.AF_INET):
            addresses.setdefault(msg["index"], []).append(msg.get_attr("IFA_ADDRESS"))
        for msg in ipr.get_links():
            info = msg.get_attr("IFLA_LINKINFO")
            kind = (info.get_attr("IFLA_INFO_KIND") if info else None) or ""
            out.append(
                Link(
                    name=msg.get_attr("IFLA_IFNAME"),
                    index=msg["index"],
                    kind=kind,
                    peer_index=msg.get_attr("IFLA_LINK"),
                    peer_nsid=msg.get_attr("IFLA_LINK_NETNSID"),
                    master=msg.get_attr("IFLA_MASTER"),
                    mac=msg.get_attr("IFLA_ADDRESS") or "",
                    addresses=tuple(addresses.get(msg["index"], ())),
                )
            )
    return out


def _nsids(candidates: Sequence[str]) -> dict[int, str]:
    from pyroute2 import IPRoute

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
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for msg in ipr.get_neighbours(family=socket.AF_INET):
            if msg["ifindex"] == ifindex and msg.get_attr("NDA_DST") == address and msg.get_attr("NDA_LLADDR"):
                return str(msg.get_attr("NDA_LLADDR"))
    return None


def _route_get(dst: str, src: str | None, iif: int | None) -> Route | None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

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
            msg = reply[0]
            oif = msg.get_attr("RTA_OIF")
            return Route(names.get(oif), msg.get_attr("RTA_GATEWAY"), msg["type"] == RTN_LOCAL)
    return None


# ------------------------------------------------------------------ the path
@dataclass(frozen=True)
class Hop:
    """One capture point on the path and the role it plays there."""

    point: Point
    role: str  # pod | veth | bridge | port | tunnel | uplink | router | host


@dataclass
class HopPath:
    hops: list[Hop]
    notes: list[str] = field(default_factory=list)
    back: list[Hop] = field(default_factory=list)  # the reply's path, in its order
    other_backs: list[list[Hop]] = field(default_factory=list)  # other ways the reply may take
    via: str = ""  # the DNAT behind the address, e.g. "service web -> web-3"

    @property
    def points(self) -> list[Hop]:
        """Every capture point: the request's path, then what only a reply crosses."""
        points = {h.point: h for h in [*self.hops, *self.back, *(h for b in self.other_backs for h in b)]}
        return list(points.values())


class _Walker:
    def __init__(self, state: Any, kernel: Kernel) -> None:
        self.state = state
        self.kernel = kernel
        self.hosts: list[Host] = state.host_objects()
        # a namespace is named after its node/pod/host; hostNetwork pods share their node's
        self.by_ns = {e.ns: e for e in self.hosts if not e.host_network}
        self.namespaces: list[str] = list(state.namespaces)
        self.hops: list[Hop] = []
        self.notes: list[str] = []
        self.l2_mac: str | None = None  # the next hop's MAC, as the last router resolved it

    # names
    def target(self, ns: str) -> Host | None:
        return self.by_ns.get(ns)

    def add(self, ns: str, iface: str) -> None:
        ep = self.target(ns)
        hop = Hop(Point(ep.name if ep else ns, ns, iface, ep.kind if ep else ""), self.role(ns, iface))
        # a point may come twice: a hairpin (in and out of the same interface, e.g. a
        # NodePort forwarded to another node, or a gateway sending a packet back)
        self.hops.append(hop)

    def role(self, ns: str, iface: str) -> str:
        ep = self.target(ns)
        kind = ep.kind if ep else ""
        if kind in ("pod", "internet", "gateway", "underlay"):
            return {"pod": "pod", "internet": "host", "gateway": "router", "underlay": "switch"}[kind]
        link = self.kernel.link(ns, iface)
        if link is None:
            return ""
        if link.kind == "bridge" or link.kind in TUNNEL_KINDS:
            return "bridge" if link.kind == "bridge" else "tunnel"
        found = self.peer(ns, link) if link.kind == "veth" else None
        peer_ep = self.target(found[0]) if found else None
        return "veth" if peer_ep is not None and peer_ep.kind == "pod" else "uplink"

    def owner(self, ip: str) -> tuple[str, Link] | None:
        """The namespace and interface that hold address ``ip``."""
        for ns in self._search_order():
            for link in self.kernel.links(ns):
                if ip in link.addresses:
                    return ns, link
        return None

    def _search_order(self) -> list[str]:
        first = [e.ns for e in self.hosts if e.kind in ("node", "gateway", "internet")]
        return first + [ns for ns in self.namespaces if ns not in first]

    def peer(self, ns: str, link: Link) -> tuple[str, Link] | None:
        """The other end of a veth: IFLA_LINK is its index, IFLA_LINK_NETNSID its namespace."""
        if link.peer_index is None or link.peer_nsid is None:
            return None
        peer_ns = self.kernel.nsids(ns, self.namespaces).get(link.peer_nsid)
        if peer_ns is None:
            return None
        other = self.kernel.by_index(peer_ns, link.peer_index)
        return (peer_ns, other) if other is not None else None

    def state_ns(self, name: str) -> str | None:
        return next((e.ns for e in self.hosts if e.name == name), None)

    # the walk
    def walk(self, src: Host, src_ip: str, dst_ip: str, remote_for_tunnel: str | None, start: Hop | None = None) -> None:
        ns, inbound, l2_target = src.ns, None, None
        if start is not None:  # continue from a hop (the packet was rewritten there)
            ns, inbound = start.point.ns, start.point.iface
        outer: list[str] = []  # the destination stack: [inner] while a tunnel carries it
        current = dst_ip
        states: set[tuple[str, str | None, str, int]] = set()
        for _ in range(MAX_STEPS):
            state = (ns, inbound, current, len(outer))
            if state in states:
                self.notes.append(f"routing loop: {current} comes back to {self.label(ns)}")
                return
            states.add(state)
            in_link = self.kernel.link(ns, inbound) if inbound else None
            master = self.kernel.by_index(ns, in_link.master) if in_link and in_link.master else None
            if master is not None and master.kind == "bridge" and l2_target is not None and l2_target not in master.addresses:
                # switched, not routed: find the bridge port that leads to the next hop
                port = self.bridge_port(ns, master, l2_target, exclude=in_link)
                if port is None:
                    self.notes.append(f"no port of bridge {master.name} in {self.label(ns)} leads to {l2_target}")
                    return
                self.add(ns, port.name)
                ns, inbound = self.cross(ns, port)
                if ns is None:
                    return
                continue
            if master is not None and master.kind == "bridge":
                self.add(ns, master.name)  # the packet enters this namespace's IP stack here
                in_link = master
            # routed (or delivered) in this namespace
            here = self.kernel.links(ns)
            if any(current in link.addresses for link in here):
                if not outer:
                    if ns == src.ns and not self.hops:
                        self.notes.append(
                            f"{current} is {src.name}'s own address: the packet never leaves {src.name} "
                            "(the destination's address is not unique in this lab)"
                        )
                    return  # arrived
                current = outer.pop()  # outer packet arrived: the tunnel device decapsulates
                tunnel = next((link for link in here if link.kind in TUNNEL_KINDS), None)
                if tunnel is not None:
                    self.add(ns, tunnel.name)
                    in_link = tunnel
                    inbound = tunnel.name
            iif = in_link.index if in_link is not None else None
            route = self.kernel.route(ns, current, src_ip if not outer else None, iif)
            if route is None or route.oif is None:
                self.notes.append(f"no route to {current} in {self.label(ns)}")
                return
            if route.local:
                return
            out = self.kernel.link(ns, route.oif)
            assert out is not None
            if out.kind in TUNNEL_KINDS:
                self.add(ns, out.name)
                remote = route.gateway if out.kind != "vxlan" and route.gateway else remote_for_tunnel
                if remote is None:
                    self.notes.append(f"cannot tell where tunnel {out.name} in {self.label(ns)} sends {current}")
                    return
                outer.append(current)
                current = remote
                route = self.kernel.route(ns, current)
                if route is None or route.oif is None:
                    self.notes.append(f"no route to tunnel endpoint {current} in {self.label(ns)}")
                    return
                out = self.kernel.link(ns, route.oif)
                assert out is not None
            l2_target = route.gateway or current
            self.l2_mac = self.kernel.neighbour(ns, out.index, l2_target)
            if out.kind == "bridge":
                self.add(ns, out.name)
                port = self.bridge_port(ns, out, l2_target, exclude=None)
                if port is None:
                    self.notes.append(f"no port of bridge {out.name} in {self.label(ns)} leads to {l2_target}")
                    return
                out = port
            self.add(ns, out.name)
            ns, inbound = self.cross(ns, out)
            if ns is None:
                return
        self.notes.append("path longer than the walk allows; stopped")

    def cross(self, ns: str, link: Link) -> tuple[Any, str | None]:
        found = self.peer(ns, link)
        if found is None:
            self.notes.append(f"{self.label(ns)}:{link.name} leads out of the lab")
            return None, None
        peer_ns, peer = found
        self.add(peer_ns, peer.name)
        return peer_ns, peer.name

    def bridge_port(self, ns: str, bridge: Link, target: str, exclude: Link | None) -> Link | None:
        """The port of ``bridge`` that leads to ``target``: by the neighbour MAC the sender
        resolved (when it has one), else by which namespace holds the address."""
        if self.l2_mac:
            for port in self.kernel.links(ns):
                if port.master == bridge.index and port != exclude:
                    found = self.peer(ns, port)
                    if found is not None and found[1].mac == self.l2_mac:
                        return port
        owner = self.owner(target)
        owner_ns = owner[0] if owner else None
        owner_ep = self.target(owner_ns) if owner_ns else None
        host_ns = self.state_ns(owner_ep.node) if owner_ep is not None and owner_ep.node else None
        fallback = None
        for port in self.kernel.links(ns):
            if port.master != bridge.index or (exclude is not None and port.index == exclude.index):
                continue
            found = self.peer(ns, port)
            if found is None:
                continue
            if found[0] == owner_ns:
                return port
            if host_ns is not None and found[0] == host_ns:
                fallback = port
        return fallback

    def label(self, ns: str) -> str:
        ep = self.target(ns)
        return ep.name if ep else ns


def find_path(
    state: Any, src: Host, dst_ip: str, dst: Host | None = None, kernel: Kernel | None = None, after: HopPath | None = None
) -> HopPath:
    """The capture points a packet from ``src`` to ``dst_ip`` crosses, in order.

    ``after``: a path already walked (to where a DNAT rewrote the destination); the walk
    continues from its last hop towards ``dst_ip``.
    """
    walker = _Walker(state, kernel or Kernel())
    assert src.ip is not None
    remote = None
    if dst is not None and dst.kind == "pod" and dst.node:
        node = next((e for e in walker.hosts if e.name == dst.node), None)
        remote = str(node.ip) if node and node.ip else None
    elif dst is not None and dst.kind == "node":
        remote = str(dst.ip)
    start = None
    if after is not None and after.hops:
        walker.hops = list(after.hops)
        start = after.hops[-1]
    walker.walk(src, str(src.ip), dst_ip, remote, start)
    return HopPath(walker.hops, walker.notes)


@dataclass(frozen=True)
class Target:
    """Where a DNAT may send the probe: a pod behind a Service or a published port."""

    endpoint: Host
    port: int | None  # the port the pod listens on
    why: str  # "service web" | "published port 8080"


def dnat_targets(state: Any, dst_ip: str, proto: str, port: int | None) -> tuple[str, list[Target]]:
    """The pods a DNAT rule may rewrite ``dst_ip:port`` to, and what the address is."""
    eps = state.host_objects()
    by_name = {e.name: e for e in eps}
    node_ips = {str(e.ip): e.name for e in eps if e.kind == "node" and e.ip is not None}
    out: list[Target] = []
    kind = ""
    if state.extra.get("services"):
        from netlab.services import cluster

        services = cluster.services_of(state)
        backends = cluster.endpoints_for(services, cluster.pods_of(state))
        for svc in services:
            for sp in svc.ports:
                if sp.protocol.lower() != proto:
                    continue
                hit_cluster = svc.cluster_ip == dst_ip and (port is None or sp.port == port)
                hit_node = dst_ip in node_ips and sp.node_port is not None and sp.node_port == port
                if not (hit_cluster or hit_node):
                    continue
                kind = kind or ("service" if hit_cluster else "")
                for backend in backends.get(svc.key, []):
                    ep = by_name.get(backend.pod or "") or next((e for e in eps if e.ip is not None and str(e.ip) == backend.ip), None)
                    if ep is not None:
                        out.append(Target(ep, sp.target_port or sp.port, f"service {svc.name}"))
    if dst_ip in node_ips and port is not None:
        topo = state.topology or {}
        for node in topo.get("nodes", []):
            if node.get("name") != node_ips[dst_ip]:
                continue
            for pod in node.get("pods", []):
                for mapping in pod.get("ports", []):
                    if mapping.get("host_port") == port and mapping.get("protocol", "tcp") == proto and pod["name"] in by_name:
                        out.append(Target(by_name[pod["name"]], mapping.get("container_port"), f"published port {port}"))
    return kind, out


# ------------------------------------------------------------------ probes
@dataclass
class Probe:
    proto: str
    src_ip: str
    dst_ip: str
    port: int | None
    marker: bytes
    ident: int
    client_port: int | None = None
    target_ports: tuple[int, ...] = ()  # where a DNAT may send it
    replied: bool = False
    detail: str = ""

    def matches(self, frame: Frame) -> str | None:
        """'request', 'reply' or None: is ``frame`` this probe (at any hop, after any NAT)?"""
        if self.marker not in frame.payload:
            return None
        if frame.proto == "icmp":
            return "request" if frame.icmp_type == 8 else "reply" if frame.icmp_type == 0 else None
        if self.marker + REPLY_TAG in frame.payload:
            return "reply"  # netlab's echo server answers with the marker and a tag
        ports = {self.port, *self.target_ports}
        if frame.dport in ports or (self.client_port is not None and frame.sport == self.client_port):
            return "request"
        if frame.sport in ports:
            return "reply"
        return None


def send_probe(src_ns: str, listeners: Sequence[tuple[str, int]], probe: Probe, timeout: float) -> None:
    """Send one probe from ``src_ns`` and wait for its reply (sets ``probe.replied``).

    ``listeners``: (namespace, port) where an echo server answers UDP/TCP probes for the
    run of the probe (skipped where something already listens, e.g. a workload).
    """
    with ExitStack() as stack:
        if probe.proto == "icmp":
            sock = netns.run_in(src_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
            stack.callback(sock.close)
            sock.sendto(echo_request(probe.ident, 1, probe.marker), (probe.dst_ip, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                data = sock.recv(65535)
                ihl = (data[0] & 0x0F) * 4
                kind, _code, _sum, ident = struct.unpack("!BBHH", data[ihl : ihl + 6])
                if kind == 0 and ident == probe.ident and probe.marker in data:
                    probe.replied = True
                    return
            probe.detail = "no echo reply"
            return
        kind = socket.SOCK_DGRAM if probe.proto == "udp" else socket.SOCK_STREAM
        stop = threading.Event()
        for ns, port in listeners:
            server = netns.run_in(ns, lambda port=port: _listener(kind, port))  # type: ignore[misc]
            if server is None:
                continue
            stack.callback(server.close)
            echo = threading.Thread(target=_echo, args=(server, kind, stop, timeout), name="trace-echo", daemon=True)
            echo.start()
            stack.callback(echo.join, timeout + 1)
        stack.callback(stop.set)  # runs first: the echo threads end, then are joined, then closed
        client = netns.run_in(src_ns, lambda: socket.socket(socket.AF_INET, kind))
        stack.callback(client.close)
        client.settimeout(timeout)
        try:
            client.bind(("0.0.0.0", 0))
            probe.client_port = client.getsockname()[1]
            if kind == socket.SOCK_DGRAM:
                client.sendto(probe.marker, (probe.dst_ip, probe.port))
                data = client.recv(65535)
            else:
                client.connect((probe.dst_ip, probe.port))
                client.sendall(probe.marker)
                data = client.recv(65535)
            probe.replied = bool(data)
            if data and probe.marker not in data:
                probe.detail = "answered by a server that is not an echo"
        except OSError as exc:
            probe.detail = exc.strerror or str(exc)


def _listener(kind: int, port: int) -> socket.socket | None:
    """An echo server's socket on ``port``; None if something already listens there."""
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        if kind == socket.SOCK_STREAM:
            sock.listen(4)
    except OSError:
        sock.close()
        return None
    return sock


def _echo(server: socket.socket, kind: int, stop: threading.Event, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    conn: socket.socket | None = None
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([server if conn is None else conn], [], [], 0.05)
            if not ready:
                continue
            if kind == socket.SOCK_DGRAM:
                data, address = server.recvfrom(65535)
                server.sendto(data + REPLY_TAG, address)
                return
            if conn is None:
                conn, _ = server.accept()
                continue
            data = conn.recv(65535)
            if data:
                conn.sendall(data + REPLY_TAG)
            return
    except OSError:
        return
    finally:
        if conn is not None:
            conn.close()


# ------------------------------------------------------------------ the report
@dataclass
class Row:
    hop: Hop
    direction: str  # request | reply
    frame: Frame | None  # None: the probe was not seen here
    outgoing: bool | None
    time: float | None
    changes: list[str] = field(default_factory=list)
    where: str = ""  # the namespace (target name) where the changes happened

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": str(self.hop.point),
            "ns": self.hop.point.ns,
            "iface": self.hop.point.iface,
            "role": self.hop.role,
            "direction": self.direction,
            "seen": self.frame is not None,
            "dir": None if self.outgoing is None else ("out" if self.outgoing else "in"),
            "time": self.time,
            "frame": self.frame.as_dict() if self.frame else None,
            "changes": self.changes,
            "changed_at": self.where or None,
        }


@dataclass
class Trace:
    lab: str
    src: str
    dst: str
    src_kind: str
    dst_kind: str
    probe: Probe
    hops: list[Hop]
    rows: list[Row]
    notes: list[str]
    back: list[Hop] = field(default_factory=list)
    via: str = ""
    verdict: str = ""
    captures: dict[str, Capture] = field(default_factory=dict, repr=False)

    def seen(self, direction: str = "request") -> list[Row]:
        return [r for r in self.rows if r.direction == direction and r.frame is not None]

    def changes(self, direction: str = "request") -> list[tuple[str, str]]:
        return [(c, r.where) for r in self.seen(direction) for c in r.changes]

    def as_dict(self) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "src": self.src,
            "dst": self.dst,
            "proto": self.probe.proto,
            "port": self.probe.port,
            "src_ip": self.probe.src_ip,
            "dst_ip": self.probe.dst_ip,
            "marker": self.probe.marker.decode(),
            "replied": self.probe.replied,
            "path": [{"at": str(h.point), "ns": h.point.ns, "iface": h.point.iface, "role": h.role} for h in self.hops],
            "return_path": [str(h.point) for h in self.back],
            "rows": [r.as_dict() for r in self.rows],
            "notes": self.notes,
            "via": self.via or None,
            "verdict": self.verdict,
        }

    def write(self, directory: str | os.PathLike[str]) -> list[Path]:
        """One pcap per capture point (everything captured there), ``NN-target-iface.pcap``,
        numbered in path order (the request's, then points only the reply crossed)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        points = list(dict.fromkeys(h.point for h in [*self.hops, *self.back]))
        for i, point in enumerate(points, 1):
            cap = self.captures.get(str(point))
            if cap is None:
                continue
            path = out / f"{i:02d}-{point.target}-{point.iface}.pcap"
            cap.write(str(path))
            written.append(path)
        return written


def _rows(hops: Sequence[Hop], back: Sequence[Hop], captures: dict[str, Capture], probe: Probe) -> list[Row]:
    found: dict[tuple[str, str], list[tuple[Frame, bool, float]]] = {}
    for point in {str(h.point) for h in [*hops, *back]}:
        for seen in captures[point].frames:
            frame = decode(seen.packet)
            which = probe.matches(frame) if frame is not None else None
            if frame is not None and which in ("request", "reply"):
                found.setdefault((point, which), []).append((frame, seen.outgoing, seen.time))
    rows = []
    for direction, order in (("request", list(hops)), ("reply", list(back))):
        previous: Row | None = None
        passes: dict[str, int] = {}  # a point on the path twice takes its frames in turn
        for hop in order:
            key = str(hop.point)
            hits = found.get((key, direction), [])
            turn = passes.get(key, 0)
            passes[key] = turn + 1
            hit = hits[turn] if turn < len(hits) else None
            row = Row(hop, direction, *(hit if hit else (None, None, None)))
            if row.frame is not None and previous is not None and previous.frame is not None:
                row.changes = _diff(previous.frame, row.frame)
                if row.changes:
                    same = previous.hop.point.ns == hop.point.ns
                    row.where = hop.point.target if same else previous.hop.point.target
            if row.frame is not None:
                previous = row
            rows.append(row)
    _name_reverse_nat(rows)
    return rows


def _diff(before: Frame, after: Frame) -> list[str]:
    out = []
    if before.encap == "none" and after.encap != "none":
        out.append(f"encapsulated {after.short_encap()} {after.src}->{after.dst}")
    elif before.encap != "none" and after.encap == "none":
        out.append(f"decapsulated {before.short_encap()}")
    if before.inner_src != after.inner_src or before.sport != after.sport:
        out.append(f"SNAT src {_where(before.inner_src, before.sport, after.sport)}->{_where(after.inner_src, after.sport, before.sport)}")
    if before.inner_dst != after.inner_dst or before.dport != after.dport:
        out.append(f"DNAT dst {_where(before.inner_dst, before.dport, after.dport)}->{_where(after.inner_dst, after.dport, before.dport)}")
    if after.inner_ttl < before.inner_ttl:
        out.append(f"TTL-{before.inner_ttl - after.inner_ttl}")
    return out


def _where(ip: str, port: int | None, other: int | None) -> str:
    """An address, with its port when a NAT changed the port too."""
    return f"{ip}:{port}" if port is not None and port != other else ip


def _name_reverse_nat(rows: list[Row]) -> None:
    """On the reply path, a rewrite that undoes the request's NAT is un-SNAT / un-DNAT."""
    snats = {c.split()[-1] for r in rows if r.direction == "request" for c in r.changes if c.startswith("SNAT")}
    dnats = {c.split()[-1] for r in rows if r.direction == "request" for c in r.changes if c.startswith("DNAT")}
    for row in rows:
        if row.direction != "reply":
            continue
        renamed = []
        for change in row.changes:
            if change.startswith("DNAT dst ") and "->".join(reversed(change.split()[-1].split("->"))) in snats:
                change = "un-SNAT dst " + change.split()[-1]
            elif change.startswith("SNAT src ") and "->".join(reversed(change.split()[-1].split("->"))) in dnats:
                change = "un-DNAT src " + change.split()[-1]
            renamed.append(change)
        row.changes = renamed


def verdict(t: Trace) -> str:
    kind = f"{t.src_kind}-to-{t.dst_kind}" + (f" ({t.via})" if t.via and t.seen("request") else "")
    requests = t.seen("request")
    if not requests:
        why = "; ".join(t.notes) or t.probe.detail
        return f"{kind}: the probe was not seen on any hop" + (f": {why}" if why else "")
    encaps = sorted({r.frame.short_encap() for r in requests if r.frame is not None and r.frame.encapsulated})
    words = [kind + (f" via {', '.join(encaps)}" if encaps else ", no encapsulation")]
    nat = [f"{c.split(' ', 2)[0]} {c.split()[-1].replace('->', ' -> ')} at {where}" for c, where in t.changes("request") if "NAT" in c]
    words.append(", ".join(nat) if nat else "no NAT")
    last = requests[-1]
    arrived = last.hop is t.hops[-1] and not t.notes
    if t.probe.replied:
        unnat = [f"{c.split(' ', 2)[0]} at {where}" for c, where in t.changes("reply") if c.startswith("un-")]
        words.append("reply received" + (f" ({', '.join(unnat)})" if unnat else ""))
    elif arrived:
        words.append(f"reached {last.hop.point} but no reply" + (f" ({t.probe.detail})" if t.probe.detail else ""))
    else:
        words.append(f"NOT delivered: last seen at {last.hop.point}")
    return ", ".join(words)


# ------------------------------------------------------------------ the entry point
def resolve(state: Any, name: str) -> tuple[Host | None, str, str]:
    """A trace end: (endpoint or None, address, kind) for a lab name or an IPv4 address."""
    for ep in state.host_objects():
        if ep.name == name:
            if ep.ip is None:
                raise UsageError(f"{name!r} has no address to trace to or from")
            return ep, str(ep.ip), ep.kind
    for svc in state.extra.get("services", []):
        if svc.get("name") == name and svc.get("clusterIP"):
            return None, str(svc["clusterIP"]), "service"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        valid = ", ".join(e.name for e in state.host_objects() if e.ip is not None)
        raise UsageError(f"lab {state.lab!r} has no node or pod named {name!r}; valid: {valid} (or an IPv4 address)") from None
    for ep in state.host_objects():
        if ep.ip is not None and str(ep.ip) == name:
            return ep, name, ep.kind
    return None, name, "address"


def trace(
    state: Any,
    src: str,
    dst: str,
    proto: str = "icmp",
    port: int | None = None,
    timeout: float = 3.0,
    settle: float = 0.3,
    on_start: Callable[[HopPath], None] | None = None,
) -> Trace:
    """Trace one probe from ``src`` to ``dst`` across a built lab."""
    if proto not in ("icmp", "udp", "tcp"):
        raise UsageError(f"unknown probe protocol {proto!r}; use icmp, udp or tcp")
    src_ep, src_ip, src_kind = resolve(state, src)
    if src_ep is None:
        raise UsageError(f"the source must be a node, pod or lab host, not an address ({src})")
    dst_ep, dst_ip, dst_kind = resolve(state, dst)
    probe_port = None if proto == "icmp" else (port or PROBE_PORT)
    kind, targets = dnat_targets(state, dst_ip, proto, probe_port) if probe_port else ("", [])
    dst_kind = kind or dst_kind
    paths = [_branch(state, src_ep, src_ip, dst_ip, dst_ep, None)]
    paths += [_branch(state, src_ep, src_ip, dst_ip, dst_ep, t) for t in targets]
    if targets and dst_ep is None:
        paths = paths[1:]  # a Service address itself is on no interface: only the DNAT branches
    listeners: list[tuple[str, int]] = [(t.endpoint.ns, t.port or probe_port) for t in targets] if probe_port else []
    if dst_ep is not None and probe_port:
        listeners.append((dst_ep.ns, probe_port))
    ident = int.from_bytes(os.urandom(2), "big") or 1
    marker = f"netlab-trace-{os.urandom(6).hex()}".encode()
    probe = Probe(proto, src_ip, dst_ip, probe_port, marker, ident)
    probe.target_ports = tuple(t.port for t in targets if t.port)
    union = HopPath([], [], [])
    for path in paths:
        union.hops += [h for h in path.points if h.point not in {x.point for x in union.hops}]
    if on_start:
        on_start(union)
    captures: dict[str, Capture] = {}
    with ExitStack() as stack:
        for hop in union.hops:
            cap = Capture(hop.point.ns, hop.point.iface, "ip", None, timeout + settle + 5)
            stack.callback(cap.stop)
            captures[str(hop.point)] = cap.start()
        send_probe(src_ep.ns, listeners, probe, timeout)
        time.sleep(settle)
    path = _taken(paths, captures, probe)
    rows = _rows(path.hops, path.back, captures, probe)
    for other in path.other_backs:
        alternative = _rows(path.hops, other, captures, probe)
        if _replies_seen(alternative) > _replies_seen(rows):
            path.back, rows = other, alternative
    result = Trace(state.lab, src, dst, src_kind, dst_kind, probe, path.hops, rows, path.notes, path.back, path.via, captures=captures)
    result.verdict = verdict(result)
    return result


def _branch(state: Any, src_ep: Host, src_ip: str, dst_ip: str, dst_ep: Host | None, target: Target | None) -> HopPath:
    """The request's path (to ``target`` behind a DNAT, if given) and the reply's."""
    final, final_ip = (dst_ep, dst_ip) if target is None else (target.endpoint, str(target.endpoint.ip))
    path = find_path(state, src_ep, final_ip, final)
    reached = bool(path.hops) and not path.notes and final is not None and path.hops[-1].point.ns == final.ns
    if target is not None and not reached:
        # the target is not routable from the source (a published port reached from
        # outside): walk to the address that was asked for, then on from where it ends
        path = find_path(state, src_ep, final_ip, final, after=find_path(state, src_ep, dst_ip, dst_ep))
    path.back = list(reversed(path.hops))
    if target is not None:
        path.via = f"{target.why} -> {target.endpoint.name}"
    if final is not None and path.hops and not path.notes:
        # replies may take another way (policy routing, a gateway hairpin). Where a NAT
        # hides the source the reply follows the request back instead, and which one it
        # was is only known afterwards: both are captured, the one that saw it is shown
        back = find_path(state, final, src_ip, src_ep)
        if back.hops and not back.notes and back.hops[-1].point == path.hops[0].point and back.hops != path.back:
            path.other_backs = [path.back]
            path.back = back.hops
    return path


def _replies_seen(rows: list[Row]) -> int:
    return sum(1 for r in rows if r.direction == "reply" and r.frame is not None)


def _taken(paths: list[HopPath], captures: dict[str, Capture], probe: Probe) -> HopPath:
    """The branch the probe took: the longest whose last hop saw it (else the first)."""
    for path in sorted(paths, key=lambda p: -len(p.hops)):
        if not path.hops:
            continue
        cap = captures[str(path.hops[-1].point)]
        for seen in cap.frames:
            frame = decode(seen.packet)
            if frame is not None and probe.matches(frame) == "request":
                return path
    return paths[0]
