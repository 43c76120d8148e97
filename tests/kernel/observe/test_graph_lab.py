"""``netlab graph`` and ``trace --graph`` on a real lab: the picture names what the kernel has,
and a traced path is drawn over it hop by hop, in the order the probe crossed the hops."""

from __future__ import annotations

import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from netlab import cli
from tests.conftest import ROOT, assert_host_unchanged, host_snapshot, lab_leftovers

SVG = "{http://www.w3.org/2000/svg}"
pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt install graphviz)")


def run(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = cli.main(list(argv), console=Console(file=buf, width=300))
    return code, buf.getvalue()


def texts(path: Path) -> list[str]:
    return [t.text or "" for t in ET.parse(path).getroot().iter(f"{SVG}text")]


def step_heads(path: Path) -> list[str]:
    """The interface each numbered step arrow points at (its SVG title is ``from->to``), in step order."""
    steps = []
    for g in ET.parse(path).getroot().iter(f"{SVG}g"):
        if (g.get("id") or "").startswith("step:"):
            title = g.find(f"{SVG}title")
            steps.append((int(g.get("id", "")[5:]), (title.text or "").partition("->")[2]))
    return [head for _, head in sorted(steps)]


def test_graph_of_a_running_lab_names_every_namespace_interface_and_veth_pair(lab_up, tmp_path: Path) -> None:
    from netlab.datapaths import make_plan
    from netlab.model import load_topology
    from netlab.observe.graph import from_plan
    from netlab.observe.graph.live import from_kernel

    state = lab_up("flannel-vxlan.yaml", name="grp-vx")
    code, out = run("graph", state.lab, "-o", str(tmp_path / "lab.svg"))
    assert code == 0, out
    shown = texts(tmp_path / "lab.svg")
    for ns in state.namespaces:
        assert f"netns {ns}" in shown
    topology = load_topology(ROOT / "topologies" / "flannel-vxlan.yaml").model_copy(update={"name": "grp-vx"})
    planned = from_plan(make_plan(topology))
    live = from_kernel(state)
    assert {p.id for p in planned.ports} <= {p.id for p in live.ports}
    names = {t.split(" (")[0] for t in shown}
    assert {p.name for p in live.ports} <= names
    assert {a for p in planned.ports for a in p.addresses} <= set(shown)
    veth = {frozenset((w.a, w.b)) for w in live.wires if w.kind == "veth"}
    assert veth == {frozenset((w.a, w.b)) for w in planned.wires if w.kind == "veth"}, "each veth pair, both ends, read from IFLA_LINK"
    assert {(w.a, w.b) for w in live.wires if w.kind == "bridge"} == {(w.a, w.b) for w in planned.wires if w.kind == "bridge"}


def test_trace_graph_draws_each_hop_in_order_with_the_encapsulation(lab_up, tmp_path: Path) -> None:
    state = lab_up("flannel-vxlan.yaml", name="grp-tr")
    picture = tmp_path / "trace.svg"
    code, out = run("trace", state.lab, "client", "web-2", "--json", "--graph", str(picture))
    assert code == 0, out
    data = json.loads(out)
    assert data["graph"] == str(picture)
    assert step_heads(picture) == [f"{r['ns']}/{r['iface']}" for r in data["rows"]]
    assert [r["direction"] for r in data["rows"]][0] == "request" and data["rows"][-1]["direction"] == "reply"
    encap = next(i for i, r in enumerate(data["rows"], 1) if any(c.startswith("encapsulated VXLAN") for c in r["changes"]))
    shown = texts(picture)
    assert f"req {encap}: encapsulated VXLAN VNI 1 192.168.1.11->192.168.1.12" in shown, "node1's box says where it was encapsulated"
    assert f"req {encap}: encapsulated VXLAN VNI 1 192.168.1.11->192.168.1.12 (in node1)" in shown, "and so does the arrow"
    code, out = run("trace", state.lab, "client", "web-2", "--graph", str(tmp_path / "trace.gif"))
    assert code == 2 and ".svg, .png or .dot" in out


def test_a_scenarios_capture_step_writes_a_picture(root: None, tmp_path: Path) -> None:
    before = host_snapshot()
    topo = tmp_path / "topo.yaml"
    topo.write_text((ROOT / "topologies" / "docker-2hosts.yaml").read_text().replace("name: docker-2hosts", "name: grp-sc"))
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        f"name: test\nlabs: [{{file: {topo}}}]\nsteps:\n"
        "  - capture:\n"
        "      probe: {from: web1, to: internet, count: 1}\n"
        "      expect:\n"
        "        - at: host1:eth0\n"
        "          packet: {src: host1, dst: internet, proto: icmp}\n"
        "        - at: internet:eth0\n"
        "          packet: {src: host1, dst: internet, proto: icmp}\n"
    )
    code, out = run("run", str(scenario), "-o", str(tmp_path / "out"))
    assert code == 0, out
    picture = tmp_path / "out" / "step1-grp-sc.svg"
    assert step_heads(picture) == ["grp-sc-host1/eth0", "grp-sc-internet/eth0"], "numbered in the order the ping reached them"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["steps"][0]["data"]["graph"] == str(picture)
    assert lab_leftovers("grp-sc") == []
    assert_host_unchanged(before)


@pytest.mark.requires("ipip")
def test_graph_of_calico_ipip_shows_tunl0_up_with_its_address_and_no_idle_fallback_devices(lab_up, tmp_path: Path) -> None:
    from netlab.observe.graph.live import from_kernel

    state = lab_up("calico-ipip.yaml", name="grp-ipip")
    graph = from_kernel(state)
    tunnels = {p.id: p for p in graph.ports if p.name == "tunl0"}
    assert set(tunnels) == {("grp-ipip-node1", "tunl0"), ("grp-ipip-node2", "tunl0")}, "tunl0 where Calico set it up, nowhere else"
    assert all(p.kind == "ipip" and p.addresses for p in tunnels.values())
    assert ("grp-ipip-node1", "eth0") in {w.b for w in graph.wires if w.kind == "tunnel" and w.a == ("grp-ipip-node1", "tunl0")}
    picture = tmp_path / "trace.svg"
    code, out = run("trace", state.lab, "client", "web-2", "--json", "--graph", str(picture))
    assert code == 0, out
    assert step_heads(picture) == [f"{r['ns']}/{r['iface']}" for r in json.loads(out)["rows"]]
