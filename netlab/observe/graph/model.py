"""A lab as a graph: namespaces, their interfaces, and the wires between them. Pure data.

What ``netlab graph`` draws, built either from a plan (:func:`from_plan`: what ``up`` would
build, nothing is built) or from a running lab's kernel (:mod:`netlab.observe.graph.live`).

- a :class:`Box` is one network namespace (a node, a pod, the underlay, the gateway, the
  internet host); a pod's box sits inside its node's machine when drawn;
- a :class:`Port` is one interface in a namespace, with its kind (``veth``, ``bridge``,
  ``vxlan``, ``ipip``, ``device``) and its IPv4 addresses;
- a :class:`Wire` joins two ports: the two ends of a veth pair (``veth``), a port and the
  bridge it is enslaved to (``bridge``), a tunnel device and the underlay device whose address
  it sends from (``tunnel``; a VXLAN device's ``dev``).

:class:`Step` is one numbered hop of a traced path, drawn on top (:mod:`netlab.observe.graph.steps`).
Nothing here reads the kernel or renders anything (:mod:`netlab.observe.graph.dot` does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from netlab import plan as p

PortId = tuple[str, str]  # (namespace, interface)


@dataclass(frozen=True)
class Box:
    """One namespace: its name, what lives there and (for a pod) the node it runs on."""

    ns: str
    label: str  # the lab's name for it: node1, web-1, internet (the namespace itself if none)
    role: str  # node | pod | underlay | gateway | internet | ...
    node: str | None = None  # for a pod: the namespace of its node


@dataclass(frozen=True)
class Port:
    """One interface of a namespace."""

    ns: str
    name: str
    kind: str  # veth | bridge | vxlan | ipip | device | ...
    addresses: tuple[str, ...] = ()  # "10.244.1.2/24"
    master: str | None = None  # the bridge it is a port of

    @property
    def id(self) -> PortId:
        return (self.ns, self.name)


@dataclass(frozen=True)
class Wire:
    """Two ports joined: a veth pair, a bridge port and its bridge, a tunnel and its underlay device."""

    a: PortId
    b: PortId
    kind: str  # veth | bridge | tunnel


@dataclass(frozen=True)
class Step:
    """One numbered hop of a traced path, at a port (drawn as an arrow from the previous step's port)."""

    number: int
    at: PortId
    direction: str  # request | reply | capture
    seen: bool = True
    changes: tuple[str, ...] = ()  # what changed here: "encapsulated ...", "SNAT ...", "proxied: new connection ..."
    where: str = ""  # the lab's name of the namespace where it changed
    proxy: bool = False  # the proxy's new connection starts here
    label: str = ""  # how the picture names it: "req 3", "rep 1" as the trace's table does (default: the number)

    @property
    def name(self) -> str:
        return self.label or str(self.number)


@dataclass(frozen=True)
class LabGraph:
    """A lab's namespaces, interfaces and wires, and optionally a traced path."""

    lab: str
    cni: str
    boxes: tuple[Box, ...]
    ports: tuple[Port, ...]
    wires: tuple[Wire, ...]
    steps: tuple[Step, ...] = ()
    title: str = ""

    def box(self, ns: str) -> Box | None:
        return next((b for b in self.boxes if b.ns == ns), None)

    def ports_of(self, ns: str) -> list[Port]:
        return [port for port in self.ports if port.ns == ns]

    def with_steps(self, steps: Iterable[Step], title: str = "") -> LabGraph:
        """This graph with a traced path drawn on it."""
        return replace(self, steps=tuple(steps), title=title or self.title)

    def around(self, namespaces: Iterable[str]) -> LabGraph:
        """Only ``namespaces``, the namespaces wired to them, and the nodes of their pods (a large lab's trace)."""
        keep = set(namespaces)
        ports = {port.id for port in self.ports}
        for wire in self.wires:
            if wire.a[0] in keep or wire.b[0] in keep:
                keep |= {wire.a[0], wire.b[0]}
        keep |= {b.node for b in self.boxes if b.ns in keep and b.node}
        ports = {pid for pid in ports if pid[0] in keep}
        return replace(
            self,
            boxes=tuple(b for b in self.boxes if b.ns in keep),
            ports=tuple(port for port in self.ports if port.id in ports),
            wires=tuple(w for w in self.wires if w.a in ports and w.b in ports),
        )


@dataclass
class _Builder:
    boxes: dict[str, Box] = field(default_factory=dict)
    ports: dict[PortId, Port] = field(default_factory=dict)
    wires: list[Wire] = field(default_factory=list)

    def port(self, ns: str, name: str, kind: str) -> Port:
        found = self.ports.get((ns, name))
        if found is None:
            found = self.ports[(ns, name)] = Port(ns, name, kind)
        return found

    def update(self, port: Port) -> None:
        self.ports[port.id] = port


def from_plan(plan: p.Plan) -> LabGraph:
    """The lab a plan builds, as a graph (read from its operations; nothing is built)."""
    b = _Builder()
    for op in plan.operations:
        if isinstance(op, p.CreateNamespace):
            b.boxes[op.ns] = Box(op.ns, op.ns, op.role)
        elif isinstance(op, p.AddVeth):
            b.port(op.ns, op.name, "veth")
            b.port(op.peer_ns, op.peer, "veth")
            b.wires.append(Wire((op.ns, op.name), (op.peer_ns, op.peer), "veth"))
        elif isinstance(op, p.AddBridge):
            b.update(replace(b.port(op.ns, op.name, "bridge"), kind="bridge"))
        elif isinstance(op, p.AddVxlan):
            b.update(replace(b.port(op.ns, op.name, "vxlan"), kind="vxlan"))
            b.port(op.ns, op.dev, "device")
            b.wires.append(Wire((op.ns, op.name), (op.ns, op.dev), "tunnel"))
        elif isinstance(op, p.SetTunnel):
            b.update(replace(b.port(op.ns, op.name, "ipip"), kind="ipip"))
        elif isinstance(op, p.SetMaster):
            port = b.port(op.ns, op.name, "device")
            b.update(replace(port, master=op.master))
            b.port(op.ns, op.master, "bridge")
            b.wires.append(Wire((op.ns, op.name), (op.ns, op.master), "bridge"))
        elif isinstance(op, p.AddAddress):
            port = b.port(op.ns, op.dev, "device")
            b.update(replace(port, addresses=(*port.addresses, op.address.with_prefixlen)))
    _name_boxes(b.boxes, plan.hosts)
    tunnels = {pid for pid, port in b.ports.items() if port.kind == "ipip"}
    _wire_ipip(b, tunnels)
    return LabGraph(plan.lab, plan.cni, tuple(b.boxes.values()), tuple(b.ports.values()), tuple(b.wires))


def _name_boxes(boxes: dict[str, Box], hosts: Iterable[p.Host]) -> None:
    """Name each namespace after its node, pod or host; place pods on their node."""
    hosts = list(hosts)
    node_ns = {h.name: h.ns for h in hosts if h.kind == "node"}
    for host in hosts:
        box = boxes.get(host.ns)
        if box is None or host.host_network:
            continue
        node = node_ns.get(host.node) if host.kind == "pod" and host.node else None
        boxes[host.ns] = replace(box, label=host.name, role=host.kind if box.role in ("", "node", "pod") else box.role,
                                 node=node if node != host.ns else None)


def _wire_ipip(b: _Builder, tunnels: set[PortId]) -> None:
    """An IP-in-IP device (tunl0) sends from its namespace's address on the underlay: wire it to
    the device that carries the namespace's first non-tunnel, non-bridge address."""
    for ns, name in sorted(tunnels):
        carrier = next((port for port in b.ports.values()
                        if port.ns == ns and port.addresses and port.kind not in ("ipip", "vxlan", "bridge")), None)
        if carrier is not None:
            b.wires.append(Wire((ns, name), carrier.id, "tunnel"))


def build(lab: str, cni: str, boxes: Iterable[Box], ports: Iterable[Port], wires: Iterable[Wire],
          hosts: Iterable[p.Host] = ()) -> LabGraph:
    """A graph from parts read elsewhere (the kernel), named after the lab's hosts."""
    b = _Builder({box.ns: box for box in boxes}, {port.id: port for port in ports}, list(wires))
    _name_boxes(b.boxes, hosts)
    # rtnetlink's link dump does not say which device a VXLAN device sends from: its address does
    _wire_ipip(b, {pid for pid, port in b.ports.items() if port.kind in ("ipip", "vxlan")})
    return LabGraph(lab, cni, tuple(b.boxes.values()), tuple(b.ports.values()), tuple(b.wires))
