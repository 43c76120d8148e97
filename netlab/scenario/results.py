"""What a scenario run produces: one :class:`StepResult` per step and lab, one
:class:`LabOutcome` per lab, gathered in a :class:`ScenarioReport`.

Plain data: :mod:`netlab.scenario.plots` writes it to files, :mod:`netlab.cli` renders it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class StepResult:
    """One step on one lab (or the baseline path): its verdict, a one-line detail and its figures."""

    index: int
    kind: str
    lab: str
    title: str
    status: str  # pass | fail | error | skipped
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # how long it took (steps that measure labs interleaved: the whole step)


@dataclass
class LabOutcome:
    """Whether a scenario's lab was built (up), skipped (optional and unbuildable) or failed."""

    name: str
    cni: str
    status: str  # up | skipped | failed
    reason: str = ""


@dataclass
class ScenarioReport:
    """A whole run: its labs, its steps and the conditions they ran under (kernel, CPU, MTUs, offloads)."""

    scenario: str
    source: str
    started: float
    conditions: dict[str, Any]
    labs: list[LabOutcome] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    duration: float = 0.0
    artifacts: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(s.status in ("pass", "skipped") for s in self.steps) and not any(o.status == "failed" for o in self.labs)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


HTTP_COLUMNS = ("path", "connects to", "pod saw (client)", "X-Forwarded-For", "hops", "n", "p50 µs [95% CI]", "p99 µs [95% CI]", "p50 vs baseline [95% CI]")


def http_rows(steps: list[StepResult]) -> list[dict[str, str]]:
    """One row of text per path of an ``http`` step (:data:`HTTP_COLUMNS`), for the console and
    the table file alike. Addresses the pods reported are followed by the role they were expected
    to have and ``✓`` (or ``✗`` when one is not)."""
    rows = []
    for step in steps:
        d = step.data
        rows.append({
            "path": step.lab,
            "connects to": d.get("connect", ""),
            "pod saw (client)": _seen(d.get("clients", {}), d.get("expect", {}).get("client")),
            "X-Forwarded-For": _seen(d.get("x_forwarded_for", {}), d.get("expect", {}).get("x-forwarded-for"), hide_none=True),
            "hops": "?" if d.get("hops") is None else str(d["hops"]),
            "n": str(d["stats"]["n"]) if "stats" in d else "0",
            "p50 µs [95% CI]": _ci(d.get("stats", {}).get("p50"), d.get("p50_ci")),
            "p99 µs [95% CI]": _ci(d.get("stats", {}).get("p99"), d.get("p99_ci")),
            "p50 vs baseline [95% CI]": _vs(d),
        })
    return rows


def _seen(counts: dict[str, int], expected: dict[str, Any] | None, hide_none: bool = False) -> str:
    shown = [a for a in sorted(counts) if a != "-"]
    if not shown:
        return "-" if hide_none and expected is None else "none" + (f" (want {_role(expected['role'])}) ✗" if expected else "")
    text = ", ".join(shown) + (" (and none)" if "-" in counts else "")
    if expected is None:
        return text
    ok = all(a in expected["addresses"] for a in shown) and "-" not in counts
    return f"{text} = {_role(expected['role'])} {'✓' if ok else '✗'}"


def _role(role: str) -> str:
    """``service:NS/NAME`` as ``pod of NAME`` (the table stays narrow); other roles as they are."""
    return f"pod of {role.rsplit('/', 1)[1]}" if role.startswith("service:") else role


def _ci(value: float | None, ci: Any) -> str:
    if value is None or not ci:
        return "-"
    return f"{value:.0f} [{ci[0]:.0f}, {ci[1]:.0f}]"


def _vs(data: dict[str, Any]) -> str:
    vs = data.get("vs_baseline")
    if not vs:
        return "baseline" if "stats" in data else "-"
    return f"{vs['diff_p50']:+.0f} [{vs['diff_ci'][0]:+.0f}, {vs['diff_ci'][1]:+.0f}] x{vs['ratio_p50']:.2f}"


def markdown(rows: list[dict[str, str]], columns: tuple[str, ...] = HTTP_COLUMNS, baseline: str = "") -> str:
    """``rows`` as a Markdown table (``baseline``: the name of the path the others are compared with)."""
    header = [c.replace("baseline", baseline) if baseline and c.startswith("p50 vs") else c for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
