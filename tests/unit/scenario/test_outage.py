"""The outage a bgp_outage step reports, computed from which probes got a reply."""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab.errors import TopologyError
from netlab.scenario.measure import outage_of
from netlab.scenario.spec import load_scenario

SCENARIOS = Path(__file__).resolve().parents[3] / "scenarios"


def test_the_longest_unanswered_run_is_the_outage() -> None:
    sent = [i * 0.01 for i in range(100)]
    answered = set(range(100)) - set(range(40, 70)) - {10}  # one stray loss, then 30 probes in a row
    outage = outage_of(sent, answered)
    assert outage.sent == 100 and outage.lost == 31
    assert outage.seconds == pytest.approx(0.30) and outage.first_lost == pytest.approx(0.40) and outage.recovered == pytest.approx(0.70)


def test_no_loss_is_no_outage_and_a_run_at_the_end_counts_to_the_last_probe() -> None:
    assert outage_of([0.0, 0.01], {0, 1}).seconds == 0.0
    tail = outage_of([0.0, 0.01, 0.02, 0.03], {0, 1})
    assert tail.seconds == pytest.approx(0.01) and tail.recovered is None and tail.lost == 2


def test_the_outage_scenario_loads() -> None:
    scenario, labs = load_scenario(SCENARIOS / "calico-bgp-outage.yaml")
    step = scenario.steps[1].spec
    assert [lab.topology.network.cni for lab in labs] == ["calico"]
    assert (step.node, step.down, step.interval) == ("node2", "2s", "10ms")


def test_bgp_outage_on_a_lab_without_calico_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        f"name: s\nlabs:\n  - {{file: {SCENARIOS.parent / 'topologies' / 'host-gw.yaml'}, name: s-hg}}\n"
        "steps:\n  - bgp_outage: {from: web-1, to: web-2, node: node2}\n"
    )
    with pytest.raises(TopologyError) as err:
        load_scenario(path)
    assert err.value.field == "steps[0].bgp_outage.labs" and "needs cni calico" in err.value.message


def test_the_capture_during_an_outage_is_sorted_into_phases_by_next_hop() -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    from netlab.observe.capture import Seen
    from netlab.scenario import outage

    node2, gateway, node1 = "02:00:00:00:00:02", "02:00:00:00:00:01", "02:00:00:00:00:0b"
    owners = {node2: "node2", gateway: "gateway", node1: "node1"}

    def frame(t: float, out: bool, kind: int, dst_mac: str, src: str = "10.244.1.2") -> Seen:
        return Seen(Ether(src=node1, dst=dst_mac) / IP(src=src, dst="10.244.2.2") / ICMP(type=kind), t, out)

    frames = [
        frame(1.0, True, 8, node2), frame(1.001, False, 0, node1),      # before: to node2, answered
        frame(2.5, True, 8, gateway), frame(2.6, True, 8, gateway),       # during: only the default route
        frame(2.601, False, 3, node1, src="192.168.1.1"),                 # the gateway: unreachable
        frame(5.0, True, 8, node2), frame(5.001, False, 0, node1),      # after: node2 again
    ]
    summary = outage.summarize(frames, stop=2.0, relearned=4.0, owners=owners)
    assert summary == {
        "before": {"requests to node2": 1, "replies": 1},
        "during": {"requests to gateway": 2, "unreachable from 192.168.1.1": 1},
        "after": {"requests to node2": 1, "replies": 1},
    }
    assert outage.describe(summary, "node1:eth0") == (
        "at node1:eth0: before: 1 requests to node2, 1 replies; during: 2 requests to gateway, "
        "1 unreachable from 192.168.1.1; after: 1 requests to node2, 1 replies"
    )
