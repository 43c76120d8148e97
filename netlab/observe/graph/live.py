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

# the kernel's per-namespace fallback devices (ip_tunnel, ip_gre, ip_vti, sit, ip6_tunnel modules)
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
        wires += _veth_wires(kernel, ns, list(state.namespaces), {i.name for i in interfaces})
    return build(state.lab, state.cni, boxes, ports, _dedupe(wires), hosts)


def _veth_wires(kernel: Inspector, ns: str, namespaces: list[str], names: set[str]) -> list[Wire]:
    out = []
    links = kernel.links(ns)
    for link in links:
        if link.kind != "veth" or link.name not in names or link.peer_index is None:
            continue
        if link.peer_nsid is None:
            peer_ns = ns  # both ends here
        else:
            peer_ns = kernel.nsids(ns, namespaces).get(link.peer_nsid, "")
            if not peer_ns:
                continue  # the peer is outside the lab
        peer = kernel.by_index(peer_ns, link.peer_index)
        if peer is not None:
            out.append(Wire((ns, link.name), (peer_ns, peer.name), "veth"))
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
