"""A :class:`~netlab.observe.graph.model.LabGraph` as a Graphviz picture (DOT, SVG, PNG).

The DOT is built with the ``graphviz`` Python package and laid out by Graphviz's own ``dot``
(the distribution's ``graphviz`` package): no coordinates are placed here. Each namespace is
a cluster (a pod's cluster sits in a dashed "machine" cluster with its node's), each
interface a box with its addresses, each wire an edge: a veth pair solid, a bridge port
dotted, a tunnel dashed to the device it sends from. A traced path is drawn on top as
numbered arrows (request red, reply blue, a capture step's points green) that do not move
the layout; where a step rewrote the packet (encapsulation, NAT, a proxy's new connection)
the arrow says so and the namespace where it happened is outlined.

SVG elements carry stable ids: ``port:NS/IFACE`` for an interface, ``step:N`` for step N.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import graphviz

from netlab.errors import EnvironmentProblem, UsageError
from netlab.observe.graph.model import Box, LabGraph, Port, PortId, Step

FORMATS = ("svg", "png", "dot")
RANK = {"internet": 0, "gateway": 1, "underlay": 2, "service": 2, "node": 3, "pod": 4}
FILL = {"veth": "#fff7d6", "bridge": "#d6e8ff", "vxlan": "#ffd9b3", "ipip": "#ffd9b3", "device": "#ffffff"}
COLOR = {"request": "#c0392b", "reply": "#1f5fbf", "capture": "#1e8449"}
MAX_CHANGE = 70  # characters of one change on an arrow
TITLE_WIDTH = 120  # characters per line of a title (a trace's verdict can run to several hundred)


def output_format(path: str | Path) -> str:
    """The picture format an output file's suffix asks for (.svg, .png, .dot); checked before any work."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix == "gv":
        suffix = "dot"
    if suffix not in FORMATS:
        raise UsageError(f"-o {path}: the suffix picks the format; use .svg, .png or .dot")
    return suffix


def node_id(port: PortId) -> str:
    """The Graphviz node name of an interface (no ':' — DOT reads it as a port)."""
    return f"{port[0]}/{port[1]}".replace(":", "_")


def to_dot(graph: LabGraph) -> graphviz.Digraph:
    """The lab (and its traced path, if any) as a Graphviz digraph, not yet laid out."""
    title = "\n".join(textwrap.wrap(graph.title, TITLE_WIDTH)) if graph.title else f"lab {graph.lab} (cni {graph.cni})"
    dot = graphviz.Digraph(graph.lab, engine="dot")
    dot.attr(label=title, labelloc="t", fontname="Helvetica", fontsize="16", rankdir="TB", newrank="true",
             compound="true", nodesep="0.25", ranksep="0.45")
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10", margin="0.08,0.04")
    dot.attr("edge", dir="none", fontname="Helvetica", fontsize="9")
    changed = _changed_boxes(graph)
    machines: dict[str, list[Box]] = {}
    for box in graph.boxes:
        if box.node and graph.box(box.node) is not None:
            machines.setdefault(box.node, []).append(box)
    pods = {b.ns for group in machines.values() for b in group}
    for box in graph.boxes:
        if box.ns in pods:
            continue
        if box.ns in machines:
            with dot.subgraph(name=f"cluster_machine_{box.ns}") as machine:
                machine.attr(label=f"machine {box.label}", style="dashed", color="#888888", fontsize="11")
                _box(machine, graph, box, changed)
                for pod in machines[box.ns]:
                    _box(machine, graph, pod, changed)
        else:
            _box(dot, graph, box, changed)
    uplinks = _uplinks(graph)
    for wire in graph.wires:
        a, b = _downward(graph, wire.a, wire.b, wire.kind, uplinks)
        style = {"veth": "solid", "bridge": "dotted", "tunnel": "dashed"}.get(wire.kind, "solid")
        dot.edge(node_id(a), node_id(b), style=style, penwidth="1.4" if wire.kind == "veth" else "1")
    wired = {frozenset((w.a, w.b)) for w in graph.wires}
    for port in graph.ports:  # a namespace reads top-down: its uplinks, then its other ports (bridges, veths to pods)
        for uplink in uplinks.get(port.ns, []):
            if uplink != port.name and port.name not in uplinks[port.ns] and frozenset(((port.ns, uplink), port.id)) not in wired:
                dot.edge(node_id((port.ns, uplink)), node_id(port.id), style="invis")
    _steps(dot, graph)
    return dot


def _uplinks(graph: LabGraph) -> dict[str, list[str]]:
    """Per namespace, its ports wired to a namespace ranked above it (toward the internet)."""
    up: dict[str, list[str]] = {}
    for wire in graph.wires:
        if wire.kind == "veth" and wire.a[0] != wire.b[0]:
            for mine, other in ((wire.a, wire.b), (wire.b, wire.a)):
                if _rank(graph, other[0]) < _rank(graph, mine[0]):
                    up.setdefault(mine[0], []).append(mine[1])
    return up


def _box(parent: graphviz.Digraph, graph: LabGraph, box: Box, changed: dict[str, list[str]]) -> None:
    with parent.subgraph(name=f"cluster_ns_{box.ns}") as sub:
        label = f"{box.label} ({box.role})" + (f"\nnetns {box.ns}" if box.ns != box.label else "")
        notes = changed.get(box.label, [])
        if notes:
            label += "\n" + "\n".join(notes)
        sub.attr(label=label, style="rounded,filled", fillcolor=_fill(box.role), fontsize="11",
                 color=COLOR["request"] if notes else "#555555", penwidth="2.5" if notes else "1", id=f"ns:{box.ns}")
        for port in graph.ports_of(box.ns):
            sub.node(node_id(port.id), _port_label(port), fillcolor=FILL.get(port.kind, "#ffffff"),
                     id=f"port:{port.ns}/{port.name}", tooltip=f"{port.name} ({port.kind}) in netns {port.ns}")


def _fill(role: str) -> str:
    return {"pod": "#f3faf3", "node": "#f4f4f4", "underlay": "#eef3fb", "gateway": "#fbf3ea", "internet": "#fbeef3"}.get(role, "#fafafa")


def _port_label(port: Port) -> str:
    kind = f" ({port.kind})" if port.kind not in ("device",) else ""
    return "\n".join([f"{port.name}{kind}", *port.addresses])


def _downward(graph: LabGraph, a: PortId, b: PortId, kind: str, uplinks: dict[str, list[str]]) -> tuple[PortId, PortId]:
    """Orient a wire so that dot ranks the internet above the gateway above the underlay above
    nodes above pods; inside a namespace, a bridge above its ports and a tunnel below its device."""
    if a[0] != b[0]:
        ra, rb = _rank(graph, a[0]), _rank(graph, b[0])
        return (b, a) if rb < ra else (a, b)
    if kind == "bridge":  # the bridge (b) above the port (a), unless the port is the uplink
        return (a, b) if a[1] in uplinks.get(a[0], []) else (b, a)
    if kind == "tunnel":
        return (b, a)  # the underlay device (b) above the tunnel device (a)
    return (a, b)


def _rank(graph: LabGraph, ns: str) -> int:
    box = graph.box(ns)
    return RANK.get(box.role, 2) if box else 2


def _changed_boxes(graph: LabGraph) -> dict[str, list[str]]:
    """The namespaces (by label) where a step changed the packet, with what changed there."""
    out: dict[str, list[str]] = {}
    for step in graph.steps:
        if step.where:
            for change in _marked(step):
                out.setdefault(step.where, []).append(f"{step.name}: {_short(change)}")
    return out


def _marked(step: Step) -> list[str]:
    """The changes worth marking: encapsulation, NAT, a proxy (not each router's TTL-1)."""
    return [c for c in step.changes if c != "TTL-1"]


def _short(text: str) -> str:
    return text if len(text) <= MAX_CHANGE else text[: MAX_CHANGE - 1] + "…"


def _steps(dot: graphviz.Digraph, graph: LabGraph) -> None:
    """Numbered arrows from each step's port to the next, per direction (the first step of a
    direction a loop at its port); constraint=false keeps the layout."""
    known = {port.id for port in graph.ports}
    previous: dict[str, PortId] = {}
    for step in graph.steps:
        if step.at not in known:
            continue
        color = COLOR.get(step.direction, "#000000")
        label = step.name + ("" if step.seen else " (not seen)")
        marked = _marked(step)
        if marked:
            label += ": " + "; ".join(_short(c) for c in marked) + (f" (in {step.where})" if step.where else "")
        before = previous.get(step.direction, step.at)
        dot.edge(node_id(before), node_id(step.at), label=label, color=color, fontcolor=color, dir="forward",
                 style="bold" if step.seen else "dashed", penwidth="3" if step.proxy else "1.8",
                 constraint="false", id=f"step:{step.number}", arrowsize="0.7")
        previous[step.direction] = step.at


def render(graph: LabGraph, path: str | Path) -> Path:
    """Write ``graph`` to ``path`` in the format its suffix names (.dot is the DOT source)."""
    fmt = output_format(path)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    dot = to_dot(graph)
    if fmt == "dot":
        out.write_text(dot.source)
        return out
    try:
        data = dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise EnvironmentProblem("drawing a picture needs Graphviz's dot: install it (sudo apt-get install graphviz, "
                                 "or sudo scripts/setup.sh), or write -o FILE.dot") from None
    out.write_bytes(data)
    return out
