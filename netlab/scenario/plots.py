"""A scenario's artifacts: ``report.json``, a latency CDF per rtt step and a bar chart of the
overhead per path (PNG, with matplotlib if it is installed: the ``plot`` extra).

matplotlib is imported only when plots are written: it is slow to import and optional.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from netlab.scenario.results import ScenarioReport


def write(samples_by_step: dict[str, dict[str, list[float]]], report: ScenarioReport, out_dir: Path) -> list[Path]:
    """Write report.json, a latency CDF per path and a bar chart of the overhead (PNG)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "report.json"]
    files[0].write_text(json.dumps(report.to_json(), indent=1, default=str))
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
    return files
