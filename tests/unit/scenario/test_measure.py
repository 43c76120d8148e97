"""The statistics behind every latency figure."""

from __future__ import annotations

import io
from dataclasses import asdict

import numpy as np
from rich.console import Console

from netlab.cli.render import scenario as render
from netlab.scenario import measure
from netlab.scenario.results import LabOutcome, ScenarioReport, StepResult


def test_stats_percentiles() -> None:
    stats = measure.Stats.of(list(range(1, 101)))
    assert stats.n == 100 and stats.min == 1
    assert stats.p50 == 50.5 and 90 <= stats.p90 <= 91 and 99 <= stats.p99 <= 100


def test_compare_finds_a_known_shift_inside_its_interval() -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(50, 5, 2000)
    other = rng.normal(60, 5, 2000)
    cmp = measure.compare(base, other)
    low, high = cmp.diff_ci
    assert low < cmp.diff_p50 < high and high - low < 2 and cmp.significant
    assert abs(cmp.diff_p50 - 10) < 1
    assert cmp.ratio_ci[0] <= cmp.ratio_p50 <= cmp.ratio_ci[1] and abs(cmp.ratio_p50 - 1.2) < 0.03


def test_compare_same_distribution_is_not_significant() -> None:
    rng = np.random.default_rng(3)
    cmp = measure.compare(rng.normal(50, 5, 2000), rng.normal(50, 5, 2000))
    assert not cmp.significant


def test_round_drift_widens_the_interval() -> None:
    """Paired rounds: a machine that drifts from round to round must not give a narrow CI."""
    rng = np.random.default_rng(5)
    base, other = [], []
    for _round in range(20):
        shift = rng.normal(0, 3)  # this round's drift hits the other path only partly
        base.append(list(rng.normal(50, 1, 100)))
        other.append(list(rng.normal(55 + shift, 1, 100)))
    flat_ci = measure.compare(measure.flat(base), measure.flat(other)).diff_ci
    round_ci = measure.compare(base, other).diff_ci
    assert round_ci[1] - round_ci[0] > 2 * (flat_ci[1] - flat_ci[0])


def test_warnings_for_untrustworthy_results() -> None:
    few = measure.Stats.of([10.0] * 20)
    assert any("samples" in w for w in measure.warnings_for(few))
    tail = measure.Stats.of([10.0] * 980 + [500.0] * 20)
    assert any("heavy tail" in w for w in measure.warnings_for(tail))
    assert any("busy" in w for w in measure.warnings_for(measure.Stats.of([10.0] * 2000), cpu_busy=0.95))


def test_interleaving_rotates_order_and_takes_every_sample() -> None:
    calls: list[tuple[str, int]] = []

    def sampler(name: str):
        def take(n: int) -> list[float]:
            calls.append((name, n))
            return [1.0] * n

        return take

    out = measure.interleaved({"a": sampler("a"), "b": sampler("b")}, total=1000, chunk=100, warmup=10, seed=1)
    assert len(out["a"]) == len(out["b"]) == 10, "ten rounds of 100"
    assert len(measure.flat(out["a"])) == len(measure.flat(out["b"])) == 1000
    firsts = [calls[i][0] for i in range(2, len(calls), 2)]
    assert set(firsts) == {"a", "b"}, "the order of paths must change between rounds"


def test_report_renders_rtt_table_and_verdict() -> None:
    stats = measure.Stats.of([10.0, 11.0, 12.0] * 700)
    cmp = measure.compare([10.0, 11.0, 12.0] * 700, [20.0, 21.0, 22.0] * 700)
    report = ScenarioReport("demo", "s.yaml", 0.0, {"kernel": "6.1", "cpu": "x", "cores": 2, "emulated_vm": True})
    report.labs.append(LabOutcome("ovn-ipip", "ipip", "skipped", "this kernel lacks ipip"))
    report.steps.append(StepResult(0, "rtt", "baseline", "rtt underlay node1->node2", "pass", "", {"stats": asdict(stats)}))
    report.steps.append(StepResult(0, "rtt", "ovn-vxlan", "rtt a -> b", "pass", "", {"stats": asdict(stats), "vs_baseline": asdict(cmp)}))
    buf = io.StringIO()
    render.render(report, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "ovn-vxlan" in text and "+10.0" in text and "PASSED" in text
    assert "emulated VM" in text and "skipped" in text and "lacks ipip" in text
