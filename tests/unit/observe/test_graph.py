"""``netlab graph``: a planned lab as a graph and its picture, a trace's rows as numbered steps.

Every namespace and interface of a topology's plan is named in the DOT and in the SVG that
Graphviz's ``dot`` lays out from it; a synthetic trace's rows come out as numbered arrows in
order, with NAT and encapsulation marked in the namespace where they happened.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from netlab import plan as p
from netlab.datapaths import make_plan
from netlab.errors import UsageError
from netlab.model import load_topology
from netlab.observe.capture import Point
from netlab.observe.decode import Frame
from netlab.observe.graph import dot, from_plan, steps
from netlab.observe.graph.model import LabGraph, Step
from netlab.observe.trace.path import Hop
from netlab.observe.trace.rows import Row

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"
SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt install graphviz)")


def planned(name: str) -> p.Plan:
    path = TOPOLOGIES / f"{name}.yaml"
    return make_plan(load_topology(path), str(path))


def interfaces(plan: p.Plan) -> set[tuple[str, str]]:
    """Every (namespace, interface) the plan creates or configures, lo aside."""
    out = set()
    for op in plan.operations:
        if isinstance(op, p.AddVeth):
            out |= {(op.ns, op.name), (op.peer_ns, op.peer)}
        elif isinstance(op, (p.AddBridge, p.AddVxlan, p.SetTunnel)):
            out.add((op.ns, op.name))
        elif isinstance(op, p.AddAddress):
            out.add((op.ns, op.dev))
    return out


def svg_texts(data: bytes) -> list[str]:
    return [t.text or "" for t in ET.fromstring(data).iter(f"{SVG}text")]


def svg_steps(data: bytes) -> list[tuple[int, str, str]]:
    """(number, from, to) of every step arrow, by its id ``step:N`` and its title ``from->to``."""
    out = []
    for g in ET.fromstring(data).iter(f"{SVG}g"):
        if (g.get("id") or "").startswith("step:"):
            title = g.find(f"{SVG}title")
            tail, _, head = (title.text or "").partition("->")
            out.append((int(g.get("id", "")[5:]), tail, head))
    return sorted(out)


@pytest.mark.parametrize("name", ["flannel-vxlan", "calico-ipip", "docker0", "vpc-native", "host-gw"])
def test_the_dot_names_every_namespace_and_interface_of_the_plan(name: str) -> None:
    plan = planned(name)
    graph = from_plan(plan)
    assert {b.ns for b in graph.boxes} == set(plan.namespaces)
    assert {port.id for port in graph.ports} == interfaces(plan)
    source = dot.to_dot(graph).source
    for ns in plan.namespaces:
        assert f"cluster_ns_{ns}" in source
    for ns, iface in interfaces(plan):
        assert f'"{dot.node_id((ns, iface))}"' in source or f" {dot.node_id((ns, iface))} " in source


@needs_dot
def test_the_svg_names_every_namespace_interface_and_address() -> None:
    plan = planned("flannel-vxlan")
    data = dot.to_dot(from_plan(plan)).pipe(format="svg")
    texts = svg_texts(data)
    for ns in plan.namespaces:
        assert f"netns {ns}" in texts
    names = {t.split(" (")[0] for t in texts}
    for _ns, iface in interfaces(plan):
        assert iface in names
    addresses = {op.address.with_prefixlen for op in plan.operations if isinstance(op, p.AddAddress)}
    assert addresses <= set(texts)
    ids = {g.get("id") for g in ET.fromstring(data).iter(f"{SVG}g")}
    assert {f"port:{ns}/{iface}" for ns, iface in interfaces(plan)} <= ids


def test_wires_are_the_veth_pairs_bridge_ports_and_tunnels_of_the_plan() -> None:
    graph = from_plan(planned("flannel-vxlan"))
    veths = {frozenset((w.a, w.b)) for w in graph.wires if w.kind == "veth"}
    assert frozenset({("flannel-vxlan-node1", "eth0"), ("flannel-vxlan-underlay", "node1-eth0")}) in veths
    bridged = {w.a for w in graph.wires if w.kind == "bridge" and w.b == ("flannel-vxlan-node1", "cni0")}
    assert len(bridged) == 2  # web-1's and client's host-side veths
    assert ("flannel-vxlan-node1", "flannel.1") in {w.a for w in graph.wires if w.kind == "tunnel" and w.b == ("flannel-vxlan-node1", "eth0")}
    pods = {b.label: b.node for b in graph.boxes if b.role == "pod"}
    assert pods["web-1"] == "flannel-vxlan-node1" and pods["db"] == "flannel-vxlan-node2"
    ipip = from_plan(planned("calico-ipip"))
    assert any(w.kind == "tunnel" and w.a == ("calico-ipip-node1", "tunl0") and w.b == ("calico-ipip-node1", "eth0") for w in ipip.wires)


def _row(ns: str, target: str, iface: str, direction: str, seen: bool = True, changes: tuple[str, ...] = (), where: str = "",
         role: str = "veth") -> Row:
    frame = Frame("10.244.1.2", "10.244.2.2", 64, 98) if seen else None
    return Row(Hop(Point(target, ns, iface), role), direction, frame, True if seen else None, 0.0 if seen else None,
               list(changes), where)


def synthetic_rows() -> list[Row]:
    """A pod-to-pod ping across Flannel's VXLAN: out of web-1, encapsulated in node1, over the
    underlay, decapsulated in node2, into db; and the reply's first two hops."""
    n1, n2, u = "flannel-vxlan-node1", "flannel-vxlan-node2", "flannel-vxlan-underlay"
    return [
        _row("flannel-vxlan-web-1", "web-1", "eth0", "request"),
        _row(n1, "node1", "cni0", "request"),
        _row(n1, "node1", "eth0", "request", changes=("encapsulated vxlan vni 1 192.168.1.11->192.168.1.12",), where="node1"),
        _row(u, "underlay", "node2-eth0", "request"),
        _row(n2, "node2", "cni0", "request", changes=("decapsulated",), where="node2"),
        _row("flannel-vxlan-db", "db", "eth0", "request"),
        _row("flannel-vxlan-db", "db", "eth0", "reply"),
        _row(n2, "node2", "eth0", "reply", seen=False),
    ]


def test_a_traces_rows_become_numbered_steps_in_order() -> None:
    got = steps.from_rows(synthetic_rows())
    assert [s.number for s in got] == list(range(1, 9))
    assert [s.at[1] for s in got] == ["eth0", "cni0", "eth0", "node2-eth0", "cni0", "eth0", "eth0", "eth0"]
    assert [s.direction for s in got] == ["request"] * 6 + ["reply"] * 2
    assert got[2].changes == ("encapsulated vxlan vni 1 192.168.1.11->192.168.1.12",) and got[2].where == "node1"
    assert not got[7].seen
    assert [s.name for s in got] == [f"req {i}" for i in range(1, 7)] + ["rep 1", "rep 2"]  # as the trace's table


def test_the_proxys_new_connection_is_a_step_of_its_own() -> None:
    rows = [_row("ns-client", "client", "eth0", "request"),
            _row("ns-ingress", "ingress", "eth0", "request", changes=("proxied: new connection 10.0.0.5:40000 -> 10.244.2.2:80",),
                 where="ingress", role="proxy")]
    got = steps.from_rows(rows)
    assert got[1].proxy and not got[0].proxy
    source = dot.to_dot(LabGraph("x", "vxlan", (), (), ()).with_steps(got)).source
    assert "step:2" not in source  # a step at an interface the picture lacks is left out, not drawn to nowhere


@needs_dot
def test_the_svg_draws_the_steps_numbered_in_order_with_changes_where_they_happened() -> None:
    graph = from_plan(planned("flannel-vxlan")).with_steps(steps.from_rows(synthetic_rows()), "trace icmp web-1 -> db")
    data = dot.to_dot(graph).pipe(format="svg")
    drawn = svg_steps(data)
    assert [n for n, _, _ in drawn] == list(range(1, 9))
    heads = [head for _, _, head in drawn]
    assert heads == [dot.node_id(s.at) for s in graph.steps]
    assert drawn[1][1] == dot.node_id(("flannel-vxlan-web-1", "eth0"))  # step 2 is drawn from step 1's interface
    assert drawn[0][1] == drawn[0][2] and drawn[6][1] == drawn[6][2]  # each direction starts with a loop at its first hop
    texts = svg_texts(data)
    assert "req 3: encapsulated vxlan vni 1 192.168.1.11->192.168.1.12" in texts  # node1's box says so
    assert "req 5: decapsulated" in texts
    assert "req 3: encapsulated vxlan vni 1 192.168.1.11->192.168.1.12 (in node1)" in texts  # and so does the arrow
    assert "rep 2 (not seen)" in texts and "rep 1" in texts


def test_capture_points_are_numbered_by_when_the_traffic_reached_them() -> None:
    got = steps.from_captures([("b", "eth0", 2.0), ("a", "eth0", 1.0), ("c", "eth0", None)])
    assert [(s.name, s.at[0], s.seen) for s in got] == [("1", "a", True), ("2", "b", True), ("3", "c", False)]
    assert all(isinstance(s, Step) and s.direction == "capture" for s in got)


@needs_dot
def test_render_writes_the_format_the_suffix_names(tmp_path: Path) -> None:
    graph = from_plan(planned("docker0"))
    assert dot.render(graph, tmp_path / "lab.svg").read_bytes().lstrip().startswith(b"<?xml")
    assert dot.render(graph, tmp_path / "lab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert dot.render(graph, tmp_path / "lab.dot").read_text().startswith("digraph docker0 {")
    assert dot.render(graph, tmp_path / "new" / "dir" / "lab.svg").exists()


def test_an_unknown_suffix_is_refused_before_any_work() -> None:
    with pytest.raises(UsageError, match=r"\.svg, \.png or \.dot"):
        dot.output_format("lab.jpg")
    with pytest.raises(UsageError):
        dot.output_format("lab")


def test_veth_peers_are_found_by_their_ifindex_and_the_netns_id_only_when_ambiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    from netlab.kernel.inspect import Inspector, Link
    from netlab.observe.graph import live

    def veth(name: str, index: int, peer: int, nsid: int | None) -> Link:
        return Link(name, index, "veth", peer, nsid, None, "", ())

    # two nodes whose pod veths have the same ifindexes (ifindexes are per namespace), and one that differs
    links = {
        "n1": [veth("vethA", 10, 2, 0)], "n2": [veth("vethB", 10, 2, 0), veth("vethC", 11, 3, 1)],
        "p1": [veth("eth0", 2, 10, 0)], "p2": [veth("eth0", 2, 10, 0)], "p3": [veth("eth0", 3, 11, 0)],
    }
    asked: list[tuple[str, list[str]]] = []
    nsid_of = {"n1": {0: "p1"}, "n2": {0: "p2", 1: "p3"}, "p1": {0: "n1"}, "p2": {0: "n2"}, "p3": {0: "n2"}}

    def nsids(self: Inspector, ns: str, candidates: list[str]) -> dict[int, str]:
        asked.append((ns, sorted(candidates)))
        return {k: v for k, v in nsid_of[ns].items() if v in candidates}

    monkeypatch.setattr(Inspector, "links", lambda self, ns: links[ns])
    monkeypatch.setattr(Inspector, "nsids", nsids)
    wires = live._dedupe(live._veth_wires(Inspector(), {ns: {link.name for link in ls} for ns, ls in links.items()}))
    assert {frozenset((w.a, w.b)) for w in wires} == {
        frozenset({("n1", "vethA"), ("p1", "eth0")}), frozenset({("n2", "vethB"), ("p2", "eth0")}), frozenset({("n2", "vethC"), ("p3", "eth0")}),
    }
    # only the ambiguous ends were asked, and only about their candidates; vethC and p3 were not asked at all
    assert sorted(asked) == [("n1", ["p1", "p2"]), ("n2", ["p1", "p2"]), ("p1", ["n1", "n2"]), ("p2", ["n1", "n2"])]


def test_a_large_labs_trace_keeps_the_namespaces_around_its_path() -> None:
    graph = from_plan(planned("flannel-vxlan"))
    near = graph.around(["flannel-vxlan-client"])
    assert {b.label for b in near.boxes} == {"client", "node1"}  # the pod, and its node it is wired to
    assert all(w.a[0] in {"flannel-vxlan-client", "flannel-vxlan-node1"} and w.b[0] in {"flannel-vxlan-client", "flannel-vxlan-node1"}
               for w in near.wires)
    assert ("flannel-vxlan-node1", "cni0") in {p.id for p in near.ports}


def test_the_readmes_example_picture_is_of_the_flannel_vxlan_topology() -> None:
    """docs/img/flannel-vxlan.svg is `netlab graph topologies/flannel-vxlan.yaml -o docs/img/flannel-vxlan.svg`:
    regenerate it when the plan or the drawing changes (this fails when an interface or address moved)."""
    picture = TOPOLOGIES.parent / "docs" / "img" / "flannel-vxlan.svg"
    plan = planned("flannel-vxlan")
    texts = svg_texts(picture.read_bytes())
    assert {f"netns {ns}" for ns in plan.namespaces} <= set(texts)
    ids = {g.get("id") for g in ET.fromstring(picture.read_bytes()).iter(f"{SVG}g")}
    assert {f"port:{ns}/{iface}" for ns, iface in interfaces(plan)} <= ids
    addresses = {op.address.with_prefixlen for op in plan.operations if isinstance(op, p.AddAddress)}
    assert addresses <= set(texts)
