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
