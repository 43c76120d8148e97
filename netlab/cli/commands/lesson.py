"""``netlab lesson N|FILE [--check]``: walk through a lesson, or check its outputs unattended."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import traceback
from pathlib import Path

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

    results = runner.check(lesson, show, runner.Session(runner.repository(lesson), rename=True, execute=in_process))
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


def in_process(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``netlab ARGS`` in this process, as a terminal of the checked width would show it.

    Its output and that of the processes it starts (``exec``'s command) are captured together
    at the file descriptors, in the order they were written. Saves a Python start-up a command.
    """
    from netlab.cli import app  # the command table imports this module

    sys.stdout.flush()
    sys.stderr.flush()
    saved, here = (os.dup(1), os.dup(2)), os.getcwd()
    with tempfile.TemporaryFile() as capture:
        try:
            os.dup2(capture.fileno(), 1)
            os.dup2(capture.fileno(), 2)
            os.chdir(cwd)
            with open(os.dup(1), "w", encoding="utf-8") as stream, \
                    contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                console = Console(file=stream, width=int(runner.WIDTH), no_color=True)
                try:
                    code = app.main(args, console=console)
                except SystemExit as exc:  # argparse's own errors
                    code = exc.code if isinstance(exc.code, int) else 2
                except Exception:  # a crash is a lesson failure to show, not the end of the check
                    stream.write(traceback.format_exc())
                    code = 1
                stream.flush()
        finally:
            os.chdir(here)
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
        capture.seek(0)
        return code, capture.read().decode(errors="replace")
