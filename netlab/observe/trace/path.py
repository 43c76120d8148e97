"""The path a packet takes through a lab, walked the way the kernel forwards it.

:func:`find_path` walks hop by hop: in each namespace it asks the kernel for the route
(``ip route get DST from SRC iif IN``), follows veth pairs to their peer (``IFLA_LINK`` +
``IFLA_LINK_NETNSID``), picks the bridge port that leads to the next hop (by the neighbour
MAC, else the address owner), and pushes/pops an outer destination at tunnel devices
(``flannel.1``, ``tunl0``). Nothing about a datapath is hard-coded, so docker0, VXLAN,
IP-in-IP, host-gw and VPC-native paths all come out of the same walk. A point may appear
twice (a hairpin: in and out of the same interface). The kernel is only read, through
:class:`~netlab.kernel.inspect.Inspector`.

:func:`branch` walks one branch of a trace: the request's path (to one DNAT target, if any)
and the reply's, which policy routing and gateway hairpins may make differ from the request's
path reversed. :func:`taken` picks, after the probe, the branch that actually saw it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netlab.kernel.inspect import Inspector, Link
from netlab.observe.capture import Capture, Point
from netlab.observe.decode import decode
from netlab.observe.trace.northsouth import Chain
from netlab.observe.trace.probe import TraceProbe
from netlab.observe.trace.targets import Target
from netlab.plan import Host

TUNNEL_KINDS = ("vxlan", "ipip", "gre", "geneve", "sit")
MAX_STEPS = 40


@dataclass(frozen=True)
class Hop:
    """One capture point on the path and the role it plays there."""

    point: Point
    role: str  # pod | veth | bridge | port | tunnel | uplink | router | host


@dataclass
class HopPath:
    """A request's path, with the reply's, notes where the walk stopped, and the DNAT behind it."""

    hops: list[Hop]
    notes: list[str] = field(default_factory=list)
    back: list[Hop] = field(default_factory=list)  # the reply's path, in its order
    other_backs: list[list[Hop]] = field(default_factory=list)  # other ways the reply may take
    via: str = ""  # the DNAT behind the address, e.g. "service web -> web-3"
    chain: Chain | None = None  # a north-south path: the waypoints (LB, node, proxy) on the way

    @property
    def points(self) -> list[Hop]:
        """Every capture point: the request's path, then what only a reply crosses."""
        points = {h.point: h for h in [*self.hops, *self.back, *(h for b in self.other_backs for h in b)]}
        return list(points.values())


class _Walker:
    """One walk through a lab: the hops found so far and why the walk stopped, if it did early."""

    def __init__(self, state: Any, kernel: Inspector) -> None:
        self.state = state
        self.kernel = kernel
        self.hosts: list[Host] = state.host_objects()
        # a namespace is named after its node/pod/host; hostNetwork pods share their node's
        self.by_ns = {e.ns: e for e in self.hosts if not e.host_network}
        self.namespaces: list[str] = list(state.namespaces)
        self.hops: list[Hop] = []
        self.notes: list[str] = []
        self.l2_mac: str | None = None  # the next hop's MAC, as the last router resolved it
        self.announced: dict[str, str] = {}  # address -> namespace answering ARP for it (MetalLB)

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
        """The namespace and interface that hold address ``ip`` (or answer ARP for it)."""
        if ip in self.announced:
            ns = self.announced[ip]
            link = next((link for link in self.kernel.links(ns) if link.addresses and link.name != "lo"), None)
            if link is not None:
                return ns, link
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
            if any(current in link.addresses for link in here) or (not outer and self.announced.get(current) == ns):
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
    state: Any, src: Host, dst_ip: str, dst: Host | None = None, kernel: Inspector | None = None, after: HopPath | None = None
) -> HopPath:
    """The capture points a packet from ``src`` to ``dst_ip`` crosses, in order.

    ``after``: a path already walked (to where a DNAT rewrote the destination); the walk
    continues from its last hop towards ``dst_ip``.
    """
    walker = _Walker(state, kernel or Inspector())
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

def branch(state: Any, src_ep: Host, src_ip: str, dst_ip: str, dst_ep: Host | None, target: Target | None) -> HopPath:
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



def taken(paths: list[HopPath], captures: dict[str, Capture], probe: TraceProbe) -> HopPath:
    """The branch the probe took: the one whose hops saw it most (a branch to another target
    shares the first hops, then misses), the longer one on a tie (else the first)."""
    saw: dict[str, bool] = {}

    def seen(point: str) -> bool:
        if point not in saw:
            saw[point] = False
            for frame_seen in captures[point].frames:
                frame = decode(frame_seen.packet)
                if frame is not None and probe.matches(frame) == "request":
                    saw[point] = True
                    break
        return saw[point]

    best, score = paths[0], None
    for path in paths:
        if not path.hops or not seen(str(path.hops[-1].point)):
            continue
        hits = sum(1 for h in path.hops if seen(str(h.point)))
        key = (hits - (len(path.hops) - hits), len(path.hops))
        if score is None or key > score:
            best, score = path, key
    return best


def chain_branch(state: Any, src_ep: Host, src_ip: str, chain: Chain, kernel: Inspector | None = None) -> HopPath:
    """The request's path along a north-south ``chain``: to each waypoint in turn (an LB, a
    node's NodePort, a proxy), from where the previous one rewrote it, then to the pod.

    A proxy's new connection starts in the proxy's namespace; its first hop has the role
    ``proxy``. The reply follows the request back (conntrack undoes every NAT where it was
    done; a proxy answers on the first connection), except behind an NLB that kept the
    client's address, where the VPC router turns it back to the NLB first."""
    walker = _Walker(state, kernel or Inspector())
    walker.announced = {w.address: w.endpoint.ns for w in chain.waypoints if w.announced}
    sender, sender_ip, start = src_ep, src_ip, None
    steps = [(w.endpoint, w.address, w) for w in chain.waypoints] + [(chain.end.endpoint, chain.end.address, None)]
    for host, address, waypoint in steps:
        first = len(walker.hops)
        walker.walk(sender, sender_ip, address, _tunnel_remote(walker, host), start)
        if start is None and sender is not src_ep and len(walker.hops) > first:
            walker.hops[first] = Hop(walker.hops[first].point, "proxy")  # the proxy's new connection
        if walker.notes or not walker.hops:
            break
        if walker.hops[-1].point.ns != host.ns:
            walker.notes.append(f"the walk to {address} ended at {walker.hops[-1].point}, not at {host.name}")
            break
        if waypoint is not None and waypoint.proxy:
            sender, sender_ip, start = host, str(host.ip), None
        else:
            start = walker.hops[-1]
    labels = [w.label for w in chain.waypoints]
    path = HopPath(walker.hops, walker.notes, back=list(reversed(walker.hops)), chain=chain)
    path.via = " -> ".join([*labels, f"{chain.end.endpoint.name}:{chain.end.port}" if chain.end.port else chain.end.endpoint.name])
    nlb = chain.waypoints[0] if chain.waypoints and chain.waypoints[0].kind == "nlb" else None
    if nlb is not None and not walker.notes:
        detour = _vpc_router_detour(state, walker.kernel, chain.end.endpoint, src_ip, nlb.endpoint)
        if detour:
            path.other_backs = [detour]
    return path


def _vpc_router_detour(state: Any, kernel: Inspector, target: Host, client_ip: str, nlb: Host) -> list[Hop]:
    """The reply's way when the NLB kept the client's address: the target answers the client
    directly, the VPC router (the lab's gateway) turns it back to the NLB (an fwmark rule, as
    AWS's fabric does), and the NLB un-NATs it and sends it out."""
    to_client = find_path(state, target, client_ip, None, kernel)
    gateway = next((e.ns for e in state.host_objects() if e.kind == "gateway"), None)
    cut = next((i for i, h in enumerate(to_client.hops) if h.point.ns == gateway), None)
    if cut is None or nlb.ip is None:
        return []
    walker = _Walker(state, kernel)
    walker.hops = to_client.hops[: cut + 1]
    walker.walk(target, str(target.ip), str(nlb.ip), None, walker.hops[-1])
    if walker.notes or walker.hops[-1].point.ns != nlb.ns:
        return []
    walker.walk(nlb, str(nlb.ip), client_ip, None, walker.hops[-1])
    return [] if walker.notes else walker.hops


def _tunnel_remote(walker: _Walker, host: Host) -> str | None:
    """Where a tunnel on the way to ``host`` sends it: its node's address (a pod) or its own."""
    if host.kind == "pod" and host.node:
        node = next((e for e in walker.hosts if e.name == host.node), None)
        return str(node.ip) if node and node.ip else None
    return str(host.ip) if host.kind == "node" and host.ip else None
