"""A scenario run as CI systems count it: one :class:`Case` per step and lab.

:mod:`netlab.scenario.junit` writes the cases as JUnit XML, :mod:`netlab.scenario.github_actions`
as GitHub Actions workflow commands. Both need the same answers, so they are made once here:

- every step that ran on a lab is a case, named after the step (``step 2: ping client -> web-2``)
  and classed under ``SCENARIO/LAB``; an ``http`` step has one case per path, an ``rtt`` step
  with a baseline one more for the baseline path;
- a lab that was skipped (``optional: true`` and this kernel cannot build it) makes every step
  that would have run on it a skipped case, with the reason;
- a step that failed carries the expectation and what was seen: the text ``netlab run`` prints
  (for a capture, each failed expectation and the packets seen at its point);
- a run that stopped with an error (a lab that is not optional could not be built, this machine
  cannot run it) is one more case in error, classed under the lab being built if it was one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netlab.scenario.results import ScenarioReport, StepResult
from netlab.scenario.spec import Scenario, SourceLines, Step

STATUSES = ("pass", "fail", "error", "skipped")


@dataclass(frozen=True)
class Case:
    """One testcase: a step on a lab, its verdict, why, and how long it took."""

    scenario: str
    lab: str  # "" for an error of the run as a whole
    name: str
    status: str  # pass | fail | error | skipped
    message: str  # one line: what happened
    text: str = ""  # everything netlab printed about it (expectations and packets seen)
    seconds: float = 0.0
    step: int | None = None  # 0-based index in the scenario's steps
    line: int | None = None  # where the step (or the lab entry) starts in the scenario file

    @property
    def classname(self) -> str:
        return f"{self.scenario}/{self.lab}" if self.lab else self.scenario


def step_name(index: int, step: Step) -> str:
    """A step's name, the same on every lab and in every run (no addresses): ``step 3: capture icmp client -> web-2``."""
    spec = step.spec
    what = ""
    if step.kind == "capture":
        what = f"{spec.probe.proto} {spec.probe.src} -> {spec.probe.dst}"
    elif step.kind == "impair":
        what = "clear " + spec.at if spec.clear else spec.at
    elif step.kind == "http":
        what = f"from {spec.src}"
    elif hasattr(spec, "src") and hasattr(spec, "dst"):
        what = f"{spec.src} -> {spec.dst}"
    return f"step {index + 1}: {step.kind}" + (f" {what}" if what else "")


def build_cases(
    report: ScenarioReport,
    scenario: Scenario,
    lines: SourceLines | None = None,
    lab_lines: Mapping[str, int] | None = None,
    error: str | None = None,
    failed_lab: str | None = None,
) -> list[Case]:
    """The cases of a run, in step order.

    ``lines``: where the steps start in the scenario file; ``lab_lines``: where each lab's entry
    starts; ``error``: why the run stopped, when it raised instead of finishing, and
    ``failed_lab`` the lab it was building then (None: it stopped elsewhere).
    """
    lines = lines or SourceLines()
    skipped = {o.name: o.reason for o in report.labs if o.status == "skipped"}
    by_step: dict[int, list[StepResult]] = {}
    for result in report.steps:
        by_step.setdefault(result.index, []).append(result)
    cases: list[Case] = []
    if error is not None:
        first = error.strip().splitlines()[0] if error.strip() else "error"
        if failed_lab:
            line = (lab_lines or {}).get(failed_lab)
            cases.append(Case(report.scenario, failed_lab, f"build lab {failed_lab}", "error", first, error, line=line))
        else:
            cases.append(Case(report.scenario, "", "run", "error", first, error))
    for index, step in enumerate(scenario.steps):
        name = step_name(index, step)
        line = lines.steps[index] if index < len(lines.steps) else None
        for result in by_step.get(index, []):
            cases += _result_cases(report.scenario, name, line, step, result, skipped)
        for lab, reason in skipped.items():
            if step.spec.labs is None or lab in step.spec.labs:
                cases.append(Case(report.scenario, lab, name, "skipped", f"lab {lab} was skipped: {reason}", step=index, line=line))
    return cases


def _result_cases(scenario: str, name: str, line: int | None, step: Step, result: StepResult, skipped: dict[str, str]) -> list[Case]:
    data: dict[str, Any] = result.data
    if result.status == "skipped" and result.detail == "none of its labs is up":
        labs = [lab.strip() for lab in result.lab.split(",") if lab.strip() not in ("", "-")]
        if all(lab in skipped for lab in labs):
            return []  # each of its labs has a skipped case already, with the lab's reason
        return [Case(scenario, lab, name, "skipped", result.detail, step=result.index, line=line) for lab in labs if lab not in skipped]
    if result.kind == "http":
        path = str(data.get("path", result.lab))
        lab = str(data.get("lab", ""))
        name = f"{name}: {path.removeprefix(f'{lab}: ')}"
    elif result.kind == "rtt" and result.lab == "baseline" and step.spec.baseline is not None:
        lab = str(data.get("lab", result.lab))
        name = f"{name} (baseline {step.spec.baseline.src} -> {step.spec.baseline.dst})"
    else:
        lab = str(data.get("lab", result.lab))
    text = f"{result.title}\n{result.detail}".rstrip()
    first = result.detail.strip().splitlines()[0] if result.detail.strip() else result.status
    message = first if result.status == "pass" else f"{result.title}: {first}"
    labs = [part for part in lab.split(",") if part] if result.status == "error" else [lab]  # an error may span several labs
    return [Case(scenario, one, name, result.status, message, text, result.seconds, result.index, line) for one in labs]


def counts(cases: Sequence[Case]) -> dict[str, int]:
    """How many cases have each status (every status present, zero or more)."""
    return {status: sum(1 for c in cases if c.status == status) for status in STATUSES}
