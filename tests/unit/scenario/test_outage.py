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
