"""A scenario's artifacts: ``report.json``, a latency CDF per rtt step and a bar chart of the
overhead per path (PNG, with matplotlib if it is installed: the ``plot`` extra); per http step
its table (``http-stepN.md``) and its p50/p99 per path with 95% CIs (``http-stepN.png``).

matplotlib is imported only when plots are written: it is slow to import and optional.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from netlab.scenario.results import ScenarioReport, StepResult, http_rows, markdown


def _baseline(steps: list[StepResult]) -> str:
    return next((str(s.data["baseline"]) for s in steps if s.data.get("baseline")), "")


def write(samples_by_step: dict[str, dict[str, list[float]]], report: ScenarioReport, out_dir: Path) -> list[Path]:
    """Write report.json, a latency CDF per path and a bar chart of the overhead (PNG)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "report.json"]
    files[0].write_text(json.dumps(report.to_json(), indent=1, default=str))
    http_steps: dict[int, list[StepResult]] = {}
    for result in report.steps:
        if result.kind == "http" and result.data.get("url"):
            http_steps.setdefault(result.index, []).append(result)
    for index, steps in http_steps.items():
        table = out_dir / f"http-step{index + 1}.md"
        table.write_text(f"# {report.scenario}: step {index + 1}, {steps[0].title.split(' -> ')[0]}\n\n" + markdown(http_rows(steps), baseline=_baseline(steps)))
        files.append(table)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return files
    for step, samples in samples_by_step.items():
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, values in samples.items():
            data = np.sort(np.asarray(values))
            ax.plot(data, np.arange(1, len(data) + 1) / len(data), label=f"{name} (p50 {np.median(data):.0f} µs)")
        ax.set_xscale("log")
        ax.set_xlabel("round-trip time (µs, log scale)")
        ax.set_ylabel("fraction of samples")
        ax.set_title(f"{report.scenario}: RTT CDF")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
        path = out_dir / f"rtt-cdf-{step}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    over = [s for s in report.steps if s.kind == "rtt" and s.data.get("vs_baseline")]
    if over:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        names = [s.lab for s in over]
        diffs = [s.data["vs_baseline"]["diff_p50"] for s in over]
        lows = [d - s.data["vs_baseline"]["diff_ci"][0] for d, s in zip(diffs, over, strict=True)]
        highs = [s.data["vs_baseline"]["diff_ci"][1] - d for d, s in zip(diffs, over, strict=True)]
        ax.bar(names, diffs, yerr=[lows, highs], capsize=6, color="#4c72b0")
        ax.set_ylabel("p50 RTT overhead vs underlay (µs)")
        ax.set_title(f"{report.scenario}: overhead per mode (95% CI)")
        ax.grid(True, axis="y", alpha=0.3)
        path = out_dir / "rtt-overhead.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    for index, steps in http_steps.items():
        measured = [s for s in steps if "stats" in s.data]
        if not measured:
            continue
        fig, ax = plt.subplots(figsize=(9, 0.6 * len(measured) + 1.8))
        y = np.arange(len(measured))
        for offset, key, color in ((-0.2, "p50", "#4c72b0"), (0.2, "p99", "#dd8452")):
            values = [s.data["stats"][key] for s in measured]
            low = [v - s.data[f"{key}_ci"][0] for v, s in zip(values, measured, strict=True)]
            high = [s.data[f"{key}_ci"][1] - v for v, s in zip(values, measured, strict=True)]
            ax.barh(y + offset, values, height=0.38, xerr=[low, high], capsize=4, color=color, label=key)
        ax.set_yticks(y, [f"{s.lab} ({'?' if s.data.get('hops') is None else s.data['hops']} hops)" for s in measured])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("HTTP request latency, a new connection each (µs, log scale; whiskers: 95% CI)")
        ax.set_title(f"{report.scenario}: step {index + 1}, paths sampled interleaved")
        ax.grid(True, axis="x", which="both", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        path = out_dir / f"http-step{index + 1}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files
