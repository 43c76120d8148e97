"""A run as GitHub Actions workflow commands (``netlab run`` prints them when ``GITHUB_ACTIONS=true``).

The runner reads lines of the form ``::command key=value,key=value::message`` from a step's
output (GitHub Docs, "Workflow commands for GitHub Actions"):

- ``::error file=F,line=L,title=T::M`` for every failed step on a lab: an annotation on the
  scenario file at the step's line, with the expectation and the packets seen;
- ``::warning file=F,line=L,title=T::M`` for every optional lab that was skipped, at its entry;
- ``::group::TITLE`` ... ``::endgroup::`` around each lab's steps, folded in the log. What a
  step printed may quote what a lab sent (a pod's answer, a packet), so each group's body sits
  between ``::stop-commands::TOKEN`` and ``::TOKEN::``, the runner's documented way to print
  text without acting on workflow commands in it.

Messages and properties are escaped the way the Actions toolkit does it
(actions/toolkit, packages/core/src/command.ts: ``escapeData``, ``escapeProperty``): ``%``,
CR and LF in both, and ``:`` and ``,`` in properties, so a multi-line failure stays one command
and text from a packet or a file cannot end the command or start another.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from netlab.scenario.cases import Case, counts

_MARK = {"pass": "ok", "fail": "FAILED", "error": "ERROR", "skipped": "skipped"}
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")  # terminal escapes and the like, from captured text


def plain(text: str) -> str:
    """``text`` without control characters (an ESC from a payload would colour the log)."""
    return _CONTROL.sub("\ufffd", text)


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """True inside a GitHub Actions job (the runner sets ``GITHUB_ACTIONS=true``)."""
    return (environ if environ is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    """A command's message: ``%``, CR and LF percent-encoded (other control characters replaced)."""
    return plain(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def escape_property(text: str) -> str:
    """A command's property value: as a message, and ``:`` and ``,`` too."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **properties: str | int | None) -> str:
    """One workflow command line; properties that are None are left out."""
    props = ",".join(f"{key}={escape_property(str(value))}" for key, value in properties.items() if value is not None)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def repo_path(source: str, environ: Mapping[str, str] | None = None) -> str:
    """The scenario file as GitHub links annotations: relative to the checkout (``GITHUB_WORKSPACE``,
    else the current directory) when it lies inside it; otherwise as given."""
    env = environ if environ is not None else os.environ
    path = Path(source)
    base = Path(env.get("GITHUB_WORKSPACE") or Path.cwd())
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except (ValueError, OSError):
        return source


def groups(cases: Sequence[Case], token: str | None = None) -> list[str]:
    """Every lab's cases in a folded group: one line per step with its verdict and time, then
    what netlab printed about it, indented; commands are stopped inside (``token``: the word
    that starts them again, random by default)."""
    token = token or secrets.token_hex(16)
    labs: dict[str, list[Case]] = {}
    for case in cases:
        labs.setdefault(case.lab or "(run)", []).append(case)
    lines: list[str] = []
    for lab, mine in labs.items():
        n = counts(mine)
        summary = ", ".join(f"{count} {status}" for status, count in n.items() if count)
        lines.append(f"::group::{escape_data(f'netlab: {mine[0].scenario}/{lab}: {summary}')}")
        lines.append(f"::stop-commands::{token}")
        for case in mine:
            lines.append(plain(f"{_MARK[case.status]:7} {case.name} ({case.seconds:.1f} s)"))
            body = case.text.splitlines()[1:] if case.status != "skipped" else [case.message]
            lines += [plain(f"        {line}") for line in body]
        lines += [f"::{token}::", "::endgroup::"]
    return lines


def annotation_lines(cases: Sequence[Case], source: str, lab_lines: Mapping[str, int] | None = None) -> list[str]:
    """``::error`` for each failed or errored case (at the step's line), ``::warning`` once per
    skipped lab (at its entry under ``labs:`` when ``lab_lines`` knows it)."""
    lab_lines = lab_lines or {}
    lines: list[str] = []
    warned: set[str] = set()
    for case in cases:
        where = case.classname
        if case.status in ("fail", "error"):
            what = "failed" if case.status == "fail" else "could not run"
            title = f"netlab run: {case.name} {what} in {where}"
            lines.append(command("error", case.text or case.message, file=source, line=case.line, title=title))
        elif case.status == "skipped" and case.lab not in warned:
            warned.add(case.lab)
            line = lab_lines.get(case.lab, case.line)
            lines.append(command("warning", case.message, file=source, line=line, title=f"netlab run: lab {where} skipped"))
    return lines


def render(cases: Sequence[Case], source: str, lab_lines: Mapping[str, int] | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """Everything to print for a run in a GitHub Actions job: the groups, then the annotations."""
    return groups(cases) + annotation_lines(cases, repo_path(source, environ), lab_lines)
