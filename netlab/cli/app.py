"""``netlab``'s entry point: parse, check what the command needs, run its handler, map errors
to exit codes. rich stays in :mod:`netlab.cli`.

Exit codes: 0 ok, 1 a check failed, 2 bad input, 3 environment (not root, missing feature).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from netlab import lab, locks
from netlab.cli.parser import COMMAND, Command, build_parser
from netlab.errors import NetlabError
from netlab.lessons.runner import WIDTH


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """Run one ``netlab`` command; returns its exit code (argparse exits 2 itself on bad syntax)."""
    out = console or Console()
    err = Console(stderr=True) if console is None else console
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, COMMAND, None)
    if command is None:
        parser.print_help()
        return 2
    try:
        return run_command(command, args, out)
    except NetlabError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)  # the message quotes user text
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130


def run_command(command: Command, args: argparse.Namespace, out: Console) -> int:
    """What every command goes through, in this order: its input, the root check, the lab's
    lock (commands that change it), the running lab, its handler."""
    if command.prepare is not None:
        command.prepare(args)
    if command.needs_root:
        lab.require_root()
    if command.changes_lab:
        name = args.plan.lab if getattr(args, "plan", None) is not None else args.lab

        def waiting(who: str) -> None:
            out.print(f"lab {name} is being changed by {who}: waiting for it (Ctrl-C to stop waiting)", highlight=False, markup=False)

        with locks.hold(name, wait=args.wait, on_wait=waiting):
            return _handle(command, args, out)
    return _handle(command, args, out)


def _handle(command: Command, args: argparse.Namespace, out: Console) -> int:
    if command.needs_lab:
        state = lab.running(args.lab) if args.lab is not None else None
        return int(command.handler(args, out, state) or 0)
    return int(command.handler(args, out) or 0)


def main_entry() -> None:
    """The ``netlab`` console script."""
    sys.exit(main())


def run_captured(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``netlab ARGS`` in this process, as a terminal of the checked width would show it.

    Its output and that of the processes it starts (``exec``'s command) are captured together
    at the file descriptors, in the order they were written. Saves a Python start-up a command.
    """
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
                console = Console(file=stream, width=int(WIDTH), no_color=True)
                try:
                    code = main(args, console=console)
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
