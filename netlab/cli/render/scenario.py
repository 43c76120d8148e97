"""``netlab run``'s report on the terminal: the conditions, the labs, RTT and throughput
tables, a bar chart of p50 RTT, every step's verdict. (The files a run keeps, report.json and
PNG plots, are :mod:`netlab.scenario.plots`.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from netlab.scenario.results import ScenarioReport, StepResult

_STYLE = {"pass": "green", "fail": "bold red", "error": "bold red", "skipped": "yellow"}


def render(report: ScenarioReport, console: Console, terminal_plot: bool = True) -> None:
    """The whole report; ``terminal_plot`` adds the bar chart (when no PNGs are kept)."""
    console.print(f"[bold]scenario {escape(report.scenario)}[/] · {escape(report.source)} · {report.duration:.1f}s")
    cond = report.conditions
    vm = " · [yellow]figures from an emulated VM: absolute latencies are not representative[/]" if cond.get("emulated_vm") else ""
    console.print(escape(f"kernel {cond.get('kernel')} · {cond.get('cpu')} · {cond.get('cores')} cores") + vm, highlight=False)
    labs = Table("lab", "cni", "status", "note", title="labs", title_justify="left")
    for outcome in report.labs:
        labs.add_row(escape(outcome.name), escape(outcome.cni), Text(outcome.status, style="green" if outcome.status == "up" else "yellow"), Text(outcome.reason))
    console.print(labs)
    rtt = [s for s in report.steps if s.kind == "rtt" and "stats" in s.data]
    if rtt:
        console.print(rtt_table(rtt))
        if terminal_plot:
            console.print(overhead_bars(rtt))
    http: dict[int, list[StepResult]] = {}
    for result in report.steps:
        if result.kind == "http" and result.data.get("url"):
            http.setdefault(result.index, []).append(result)
    for index, results in http.items():
        console.print(http_table(index, results))
    tput = [s for s in report.steps if s.kind == "throughput"]
    if tput:
        table = Table("lab", "streams", "Gbit/s", title="throughput (iperf3, TCP)", title_justify="left")
        for step in tput:
            for streams, gbps in step.data.get("gbps", {}).items():
                table.add_row(escape(step.lab), escape(str(streams)), f"{gbps:.2f}")
        console.print(table)
    steps = Table("#", "step", "result", "detail", title="steps", title_justify="left")
    for step in report.steps:
        steps.add_row(str(step.index + 1), Text(step.title), Text(step.status, style=_STYLE.get(step.status, "")), Text(step.detail))
    console.print(steps)
    failed = [s for s in report.steps if s.status in ("fail", "error")]
    verdict = "[bold green]PASSED[/]" if report.passed else f"[bold red]FAILED[/]: {len(failed)} step(s)"
    console.print(f"{verdict} · labs torn down")
    for artifact in report.artifacts:
        console.print(f"  artifact: {artifact}", highlight=False, markup=False)


def http_table(index: int, steps: list[StepResult]) -> Table:
    """An http step: per path the address it connects to, the client address the pods saw
    (✓ when it is the expected one), X-Forwarded-For, hops, latency p50/p99 with 95% CIs."""
    from netlab.scenario.results import HTTP_COLUMNS, http_rows

    base = next((s.data.get("baseline") for s in steps if s.data.get("baseline")), "")
    columns = [c.replace("baseline", escape(base)) if c.startswith("p50 vs") and base else c for c in HTTP_COLUMNS]
    title = f"step {index + 1}: HTTP requests, a new connection each, paths interleaved (latency in µs)"
    table = Table(*columns, title=title, title_justify="left")
    for step, row in zip(steps, http_rows(steps), strict=True):
        cells = [Text(row[c]) for c in HTTP_COLUMNS]
        cells[2].stylize("green" if row["pod saw (client)"].endswith("✓") else "bold red" if row["pod saw (client)"].endswith("✗") else "")
        table.add_row(*cells)
        for warning in step.data.get("warnings", []):
            table.add_row("", "", "", "", "", "", Text(f"warning: {warning}", style="yellow"), "", "")
    return table


def rtt_table(steps: list[StepResult]) -> Table:
    """RTT statistics per path, with the overhead and ratio against the baseline (95% CI)."""
    table = Table(
        "path", "n", "min", "p50", "p90", "p99", "mean", "stddev", "p50 overhead vs underlay [95% CI]", "ratio [95% CI]",
        title="round-trip time, µs (ICMP echo answered by the target's kernel)", title_justify="left",
    )
    for step in steps:
        s = step.data["stats"]
        vs = step.data.get("vs_baseline")
        over = f"{vs['diff_p50']:+.1f} [{vs['diff_ci'][0]:+.1f}, {vs['diff_ci'][1]:+.1f}]" if vs else "baseline"
        ratio = f"{vs['ratio_p50']:.2f} [{vs['ratio_ci'][0]:.2f}, {vs['ratio_ci'][1]:.2f}]" if vs else ""
        name = step.lab if step.lab != "baseline" else step.title.removeprefix("rtt ")
        table.add_row(escape(name), str(s["n"]), f"{s['min']:.0f}", f"{s['p50']:.0f}", f"{s['p90']:.0f}", f"{s['p99']:.0f}",
                      f"{s['mean']:.1f}", f"{s['stddev']:.1f}", over, ratio)
        for warning in step.data.get("warnings", []):
            table.add_row("", "", "", "", "", "", "", "", Text(f"warning: {warning}", style="yellow"), "")
    return table


def overhead_bars(steps: list[StepResult], width: int = 40) -> Group:
    """A terminal bar chart of p50 RTT per path."""
    rows = [(s.lab if s.lab != "baseline" else "underlay", s.data["stats"]["p50"]) for s in steps]
    top = max(v for _n, v in rows) or 1.0
    lines = [Text("p50 RTT (µs)", style="bold")]
    for name, value in rows:
        bar = "█" * max(1, round(width * value / top))
        lines.append(Text(f"{name:>16} {bar} {value:.0f}"))
    return Group(*lines)
