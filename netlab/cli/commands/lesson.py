"""``netlab lesson N|FILE [--check]``: walk through a lesson, or check its outputs unattended."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from netlab.lessons import document, expect, runner


def read_lesson(args: argparse.Namespace) -> None:
    """The lesson, read before the root check: a bad file exits 2 whoever runs it."""
    args.lesson_doc = document.load(document.find(args.lesson))


def cmd_lesson(args: argparse.Namespace, out: Console) -> int:
    lesson: document.Lesson = args.lesson_doc
    if args.check:
        return _check(lesson, out)
    return _walk(lesson, out, pause=not args.no_pause and sys.stdin.isatty())


def _check(lesson: document.Lesson, out: Console) -> int:
    out.print(f"checking {escape(str(lesson.path))}: {escape(lesson.title)}", highlight=False)

    def show(result: runner.Result) -> None:
        where = f"line {result.command.line}: $ netlab {escape(' '.join(result.command.args))}"
        if result.problem is None:
            out.print(f"[green]ok[/] {where}", highlight=False)
        else:
            out.print(f"[red]differs[/] {where}\n{escape(result.problem)}", highlight=False)

    # a netlab process per command, as a person runs them (tests/kernel/test_lessons.py runs them in
    # its own process with netlab.cli.app.run_captured: this handler cannot import app, which imports it)
    results = runner.check(lesson, show)
    failed = sum(1 for r in results if r.problem is not None)
    verdict = "[green]every output matches[/]" if not failed else f"[red]{failed} of {len(results)} outputs differ[/]"
    out.print(f"{len(results)} commands: {verdict}")
    return 1 if failed else 0


def _walk(lesson: document.Lesson, out: Console, pause: bool) -> int:
    session = runner.Session(runner.repository(lesson), rename=False)
    try:
        for number, step in enumerate(lesson.steps, 1):
            out.rule(f"{escape(lesson.title)} · step {number} of {len(lesson.steps)}")
            out.print(Markdown(step.prose))
            for command in step.commands:
                out.print(f"\n[bold]$ {escape(command.text)}[/]", highlight=False)
                if pause and input("  (Enter runs it, q quits) ").strip().lower() == "q":
                    return 0
                code = session.stream(command)
                want = expect.expected(command.expected).exit_code
                if code != want:
                    out.print(f"[red]this command exited {code}; the lesson expects {want}[/]: stopping here")
                    return 1
        if lesson.outro:
            out.rule("try this")
            out.print(Markdown(lesson.outro))
        return 0
    finally:
        for name in session.close():
            out.print(f"lab {name} taken down")

