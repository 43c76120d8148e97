"""A running lab's graph, read from the kernel (read-only).

The same dumps ``netlab status`` reads (:func:`~netlab.kernel.inspect.inspect_namespaces`:
every interface with its kind, master and addresses), and the veth peers a trace follows
(:class:`~netlab.kernel.inspect.Inspector`: ``IFLA_LINK`` + ``IFLA_LINK_NETNSID``). Fallback
tunnel devices the kernel makes in every namespace once a module is loaded (``tunl0``,
``gre0``, ``sit0`` ...) are shown only where they are up, as Calico's ``tunl0`` is.
"""

from __future__ import annotations

from collections.abc import Sequence

from netlab.kernel.inspect import Inspector, Interface, inspect_namespaces
from netlab.observe.capture import Capture
from netlab.observe.graph import steps
from netlab.observe.graph.model import Box, LabGraph, Port, Wire, build
from netlab.observe.trace.rows import Trace
from netlab.state import LabState

# the fallback device each tunnel module makes in every namespace (Linux net/ipv4/ipip.c "tunl0",
# net/ipv4/ip_gre.c "gre0"/"gretap0"/"erspan0", net/ipv4/ip_vti.c "ip_vti0", net/ipv6/sit.c "sit0",
# net/ipv6/ip6_tunnel.c "ip6tnl0", net/ipv6/ip6_gre.c "ip6gre0", net/ipv6/ip6_vti.c "ip6_vti0")
FALLBACK = frozenset({"tunl0", "gre0", "gretap0", "erspan0", "ip_vti0", "ip6_vti0", "sit0", "ip6tnl0", "ip6gre0"})
KINDS = {"ipip": "ipip", "vxlan": "vxlan", "veth": "veth", "bridge": "bridge"}


def shown(iface: Interface) -> bool:
    """Is this interface worth drawing? Not ``lo``, not a fallback tunnel device that is down."""
    if iface.kind == "loopback" or iface.name == "lo":
        return False
    return not (iface.name in FALLBACK and iface.state == "DOWN" and not iface.addresses)


def from_kernel(state: LabState) -> LabGraph:
    """Every namespace of the running lab, its interfaces and the wires between them."""
    hosts = state.host_objects()
    roles = {h.ns: h.kind for h in hosts if not h.host_network}
    prefix = f"{state.lab}-"
    tables = inspect_namespaces(list(state.namespaces))
    boxes, ports, wires = [], [], []
    shown_names: dict[str, set[str]] = {}
    kernel = Inspector()
    for ns in state.namespaces:
        found = tables.get(ns)
        if found is None:
            continue  # gone
        label = ns[len(prefix):] if ns.startswith(prefix) else ns
        boxes.append(Box(ns, label, roles.get(ns, label if label in ("underlay", "gateway", "internet") else "service")))
        interfaces = [i for i in found[0] if shown(i)]
        for iface in interfaces:
            ports.append(Port(ns, iface.name, KINDS.get(iface.kind, iface.kind if iface.kind != "device" else "device"),
                              tuple(iface.addresses), iface.master))
            if iface.master:
                wires.append(Wire((ns, iface.name), (ns, iface.master), "bridge"))
        shown_names[ns] = {i.name for i in interfaces}
    wires += _veth_wires(kernel, shown_names)
    return build(state.lab, state.cni, boxes, ports, _dedupe(wires), hosts)


def _veth_wires(kernel: Inspector, shown: dict[str, set[str]]) -> list[Wire]:
    """Both ends of every veth pair. A veth's peer is the link whose ifindex is its IFLA_LINK, in
    the namespace its IFLA_LINK_NETNSID names. ifindexes repeat across namespaces, so the
    candidates are the veths that point back (their IFLA_LINK is this one's index); only where
    several namespaces have such a veth is the netns id asked for (one query per namespace per
    candidate: asking every namespace about every other would take n² queries in a large lab)."""
    veths = {ns: [link for link in kernel.links(ns) if link.kind == "veth" and link.name in names] for ns, names in shown.items()}
    out = []
    for ns, links in veths.items():
        for link in links:
            if link.peer_index is None:
                continue
            if link.peer_nsid is None:  # both ends in this namespace
                peer = kernel.by_index(ns, link.peer_index)
                if peer is not None and peer.name in shown[ns]:
                    out.append(Wire((ns, link.name), (ns, peer.name), "veth"))
                continue
            candidates = [(other, peer) for other, theirs in veths.items() if other != ns
                          for peer in theirs if peer.index == link.peer_index and peer.peer_index == link.index]
            if len(candidates) > 1:
                nsids = Inspector().nsids(ns, [other for other, _ in candidates])
                candidates = [(other, peer) for other, peer in candidates if nsids.get(link.peer_nsid) == other]
            if len(candidates) == 1:
                other, peer = candidates[0]
                out.append(Wire((ns, link.name), (other, peer.name), "veth"))
    return out


def _dedupe(wires: list[Wire]) -> list[Wire]:
    """Each veth pair once (it is found from both ends)."""
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    out = []
    for wire in wires:
        key = (wire.kind, frozenset((wire.a, wire.b)))
        if key not in seen:
            seen.add(key)
            out.append(wire)
    return out


LARGE = 40  # namespaces; a trace through a larger lab is drawn with only the namespaces around its path


def for_trace(state: LabState, trace: Trace) -> LabGraph:
    """The running lab with ``trace``'s rows drawn on it, numbered (request, then reply)."""
    graph = from_kernel(state)
    if len(graph.boxes) > LARGE:
        graph = graph.around(row.hop.point.ns for row in trace.rows)
    title = f"trace {trace.probe.proto} {trace.src} -> {trace.dst} in lab {trace.lab}: {trace.verdict}"
    return graph.with_steps(steps.from_rows(trace.rows), title)


def for_captures(state: LabState, captures: Sequence[Capture], title: str) -> LabGraph:
    """The running lab with a capture step's points numbered in the order its traffic reached them."""
    graph = from_kernel(state)
    if len(graph.boxes) > LARGE:
        graph = graph.around(cap.ns for cap in captures)
    points = [(cap.ns, cap.iface, min((f.time for f in cap.frames), default=None)) for cap in captures]
    return graph.with_steps(steps.from_captures(points), title)
