"""Calico's dynamics on a real kernel (BGP-only, so any kernel runs it).

- ``netlab node add``: a node joins a running lab, claims the next block, its BIRD joins the
  mesh, and the others learn its block ``proto bird`` (and it learns theirs): packets flow both
  ways between it and the other nodes' pods; ``down`` removes it with the rest.
- the ``bgp_outage`` scenario step: pings every 10 ms across a BIRD stop and start; the
  reported outage comes from probes that got no reply.
"""

from __future__ import annotations

import io

import yaml
from rich.console import Console

from tests.conftest import TOPOLOGIES, lab_leftovers, ns_run


def calico_bgp(name: str):
    from netlab.model import parse_topology

    data = yaml.safe_load((TOPOLOGIES / "calico-bgp.yaml").read_text())
    data["name"] = name
    return parse_topology(data, "<test>")


def bird_routes(ns: str) -> str:
    return ns_run(ns, "ip", "route", "show", "proto", "bird").stdout


def test_node_add_joins_the_mesh_and_its_block_is_learned(lab_up) -> None:
    from netlab import lab
    from netlab.cli import main
    from netlab.kernel import processes
    from netlab.state import LabState

    state = lab_up(calico_bgp("pc2-add"))
    eps = {e.name: e for e in state.host_objects()}
    console = Console(file=io.StringIO(), width=300)
    assert main(["node", "add", "pc2-add", "node3"], console=console) == 0, console.file.getvalue()
    assert "added node node3 (192.168.1.13): block 10.244.0.128/26" in console.file.getvalue()
    state = LabState.load("pc2-add")
    node3 = next(h for h in state.host_objects() if h.name == "node3")
    # the others learned node3's block by BGP, and node3 learned theirs
    for peer in ("node1", "node2"):
        assert "10.244.0.128/26 via 192.168.1.13 dev eth0" in bird_routes(eps[peer].ns), peer
    routes3 = bird_routes(node3.ns)
    assert "10.244.0.0/26 via 192.168.1.11 dev eth0" in routes3 and "10.244.0.64/26 via 192.168.1.12 dev eth0" in routes3
    assert "blackhole 10.244.0.128/26" in routes3
    # packets: node3 -> a pod on node1 and on node2 (only the BGP routes lead there)
    for pod in ("web-1", "web-2"):
        assert ns_run(node3.ns, "ping", "-c1", "-W2", str(eps[pod].ip)).returncode == 0, pod
    # calicoctl node status on node1 lists node3 as an Established mesh peer
    console = Console(file=io.StringIO(), width=300)
    assert main(["status", "pc2-add"], console=console) == 0
    assert any("192.168.1.13" in line and "Established" in line for line in console.file.getvalue().splitlines())
    pids = LabState.load("pc2-add").extra["bird"]
    assert len(pids) == 3 and all(processes.alive(pid) for pid in pids.values())
    lab.down("pc2-add")
    assert lab_leftovers("pc2-add") == [] and not any(processes.alive(pid) for pid in pids.values())


def test_node_add_is_refused_for_a_node_that_exists(lab_up) -> None:
    from netlab.cli import main

    lab_up(calico_bgp("pc2-dup"))
    console = Console(file=io.StringIO(), width=300)
    assert main(["node", "add", "pc2-dup", "node2"], console=console) == 2
    assert "node2" in console.file.getvalue() and "nothing was built" in console.file.getvalue()


def test_bgp_outage_step_measures_the_outage_from_packets(lab_up, tmp_path) -> None:
    from netlab.scenario.runner import Runner
    from netlab.scenario.spec import load_scenario

    path = tmp_path / "outage.yaml"
    path.write_text(
        f"name: pc2-outage\nlabs:\n  - {{file: {TOPOLOGIES / 'calico-bgp.yaml'}, name: pc2-out}}\n"
        "steps:\n  - bgp_outage: {from: client, to: web-2, node: node2, down: 1s, interval: 10ms}\n"
        "  - ping: {from: client, to: web-2}\n"
    )
    scenario, labs = load_scenario(path)
    report = Runner(scenario, labs, str(path)).run()
    outage, ping = report.steps
    assert outage.status == "pass" and ping.status == "pass", (outage.detail, ping.detail)
    data = outage.data
    assert data["lost"] > 0 and data["sent"] > data["lost"]  # replies before and after, none meanwhile
    # the pings failed from about the stop until the route was relearned (measured from packets)
    assert data["first_lost_s"] <= data["withdrawn_s"] + 0.05
    assert data["recovered_s"] is not None and data["recovered_s"] >= data["start_s"]
    assert data["outage_s"] >= 1.0 - 0.05  # at least the time BIRD was down
    assert lab_leftovers("pc2-out") == []
