"""Every lesson (docs/lessons/NN-*.md) run against a real lab, its outputs compared with the
lesson's console blocks: a lesson whose output drifts from the code fails here.

Why not a Markdown test plugin: pytest-markdown-docs, phmdoctest and mktestdocs run Python (or
shell) code blocks and do not compare a command's printed output with the block;
cram-style tools (prysk, pytest-cram) compare output, but in their own indented ``.t`` format,
not in the Markdown a learner reads. So the lessons are read with markdown-it-py (the CommonMark
parser rich uses), and :mod:`netlab.lessons.expect` does the comparison with placeholders; the
same machinery is ``netlab lesson N --check``. The commands run in this process
(:func:`netlab.cli.app.run_captured`): a ``netlab`` process per command would cost
its start-up each time.

Each lesson runs under lab names of its own (``les`` + hex digits, see
:mod:`netlab.lessons.runner`), so it never touches a lab a person has up. A lesson that needs a
kernel feature (``<!-- requires: ipip -->``) is marked so, and runs in the VM tier where this
kernel lacks it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab.cli.app import run_captured
from netlab.lessons import document, runner
from tests.conftest import lab_leftovers


def _params() -> list[object]:
    params = []
    for path in document.all_lessons():
        lesson = document.load(path)
        marks = [pytest.mark.requires(*lesson.requires)] if lesson.requires else []
        params.append(pytest.param(path, marks=marks, id=path.stem))
    return params


@pytest.mark.parametrize("path", _params())
def test_lesson_outputs_match(path: Path, root: None, host_guard: None) -> None:
    lesson = document.load(path)
    session = runner.Session(runner.repository(lesson), rename=True, execute=run_captured)
    results = runner.check(lesson, session=session)
    failures = [
        f"{path.name} line {r.command.line}: $ netlab {' '.join(r.command.args)}\n{r.problem}\n--- real output:\n{r.output}"
        for r in results if r.problem is not None
    ]
    assert not failures, "\n\n".join(failures)
    assert len(results) == len(lesson.commands)
    for alias in session.aliases.values():
        assert lab_leftovers(alias) == [], f"lab {alias} left things behind"


def test_a_drifted_output_fails_and_the_lab_is_still_taken_down(root: None, host_guard: None, tmp_path: Path) -> None:
    lesson_file = tmp_path / "01-drift.md"
    lesson_file.write_text(
        "# Lesson 1: drift\n\n```console\n"
        "$ netlab up topologies/docker0.yaml\n...\n"
        "$ netlab exec docker0 host1 -- iptables -t nat -S POSTROUTING\n"
        "-P POSTROUTING ACCEPT\n-A POSTROUTING -s 172.18.0.0/16 ! -o docker0 -j MASQUERADE\n"
        "```\n"  # no `down`: the session takes the lab down itself
    )
    lesson = document.load(lesson_file)
    session = runner.Session(Path(__file__).resolve().parents[2], rename=True, execute=run_captured)
    up, rules = runner.check(lesson, session=session)
    assert up.problem is None
    assert rules.problem is not None and "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE" in rules.problem
    assert session.up == []
    (alias,) = session.aliases.values()
    assert lab_leftovers(alias) == []
