"""Run a lesson's commands against a real lab.

Each command runs as its own ``netlab`` process (``python -m netlab.cli``, an argv list,
never a shell), as the person following the lesson runs it, with the repository as the
working directory so ``topologies/...`` paths resolve.

Checking (``rename=True``) must never touch a lab a person has up under the lesson's name:
``netlab up FILE`` gets ``--name`` with another name of the same length (``les`` and hex
digits, so tables keep their widths), every command's LAB argument is rewritten to it, and
the output is read back with the lesson's name in its place. Every lab the session built and
did not take down is taken down by :meth:`Session.close` (also after Ctrl-C or a failure).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netlab.lessons import expect
from netlab.lessons.document import Command, Lesson
from netlab.model import load_topology

TIMEOUT = 180.0  # seconds one command may take (a lab with nginx and DNS builds in a few)
WIDTH = "100"  # the terminal width outputs are checked at
Execute = Callable[[list[str], Path], tuple[int, str]]  # (netlab's arguments, working directory) -> (exit code, output)
LAB_FIRST = {"down", "status", "exec", "capture", "trace", "check", "apply", "delete", "scale", "requests"}


@dataclass(frozen=True)
class Result:
    command: Command
    exit_code: int
    output: str  # with the lesson's lab names (stdout and stderr together)
    problem: str | None  # None: matches the lesson


def repository(lesson: Lesson) -> Path:
    """Where a lesson's commands run: the checkout holding docs/lessons/ (else the current directory)."""
    folder = lesson.path.resolve().parent
    if folder.name == "lessons" and folder.parent.name == "docs":
        return folder.parent.parent
    return Path.cwd()


class Session:
    """The labs of one lesson run; ``close()`` takes down what is still up."""

    def __init__(self, cwd: Path, rename: bool, execute: Execute | None = None) -> None:
        self.cwd = cwd
        self.rename = rename
        self.execute = execute or self._subprocess
        self.aliases: dict[str, str] = {}  # lesson's lab name -> the name it runs under
        self.up: list[str] = []  # names (as run) of labs this session built and has not taken down

    def argv(self, command: Command) -> list[str]:
        args = list(command.args)
        verb = args[0]
        if verb == "up" and self.rename and len(args) > 1:
            name = load_topology(self.cwd / args[1]).name
            self.aliases[name] = _alias(name, set(self.aliases.values()))
            args += ["--name", self.aliases[name]]
        position = 1 if verb in LAB_FIRST else 2 if verb == "node" else None
        if position is not None and len(args) > position and args[position] in self.aliases:
            args[position] = self.aliases[args[position]]
        return [sys.executable, "-m", "netlab.cli", *args]

    def lab_of(self, argv: list[str]) -> str | None:
        """The lab (as run) that an ``up`` built, or a ``down`` removed."""
        args = argv[3:]
        if args[0] == "up":
            return args[args.index("--name") + 1] if "--name" in args else load_topology(self.cwd / args[1]).name
        return args[1] if args[0] == "down" and len(args) > 1 else None

    def env(self) -> dict[str, str]:
        return {**os.environ, "COLUMNS": WIDTH, "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"}

    def run(self, command: Command) -> Result:
        """Run a command, capture its output, compare it with the lesson's."""
        argv = self.argv(command)
        code, output = self.execute(argv[3:], self.cwd)
        self._track(argv, code)
        output = self._as_lesson(output)
        return Result(command, code, output, expect.mismatch(command.expected, output, code))

    def _subprocess(self, args: list[str], cwd: Path) -> tuple[int, str]:
        """Run ``netlab ARGS`` as its own process; its exit code and output (stdout and stderr together)."""
        try:
            done = subprocess.run([sys.executable, "-m", "netlab.cli", *args], cwd=cwd, env=self.env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT, check=False)
            return done.returncode, done.stdout
        except subprocess.TimeoutExpired as exc:
            partial = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output or ""
            return -1, f"{partial}\n(timed out after {TIMEOUT:.0f} s)"

    def stream(self, command: Command) -> int:
        """Run a command with its output going straight to this terminal (a person following along)."""
        argv = self.argv(command)
        code = subprocess.run(argv, cwd=self.cwd, check=False).returncode
        self._track(argv, code)
        return code

    def close(self) -> list[str]:
        """Take down every lab this session built and left up; the names taken down."""
        done = []
        for name in list(self.up):
            self.execute(["down", name], self.cwd)
            self.up.remove(name)
            done.append(name)
        return done

    def _track(self, argv: list[str], code: int) -> None:
        lab = self.lab_of(argv)
        if lab is None or code != 0:
            return
        if argv[3] == "up":
            self.up.append(lab)
        elif lab in self.up:
            self.up.remove(lab)

    def _as_lesson(self, output: str) -> str:
        for name, alias in self.aliases.items():
            output = output.replace(alias, name)
        return output


def _alias(name: str, taken: set[str]) -> str:
    while True:
        alias = "les" + secrets.token_hex(8)[: max(len(name) - 3, 3)]
        if alias not in taken:
            return alias


def check(lesson: Lesson, on_result: Callable[[Result], None] | None = None, session: Session | None = None) -> list[Result]:
    """Run every command of a lesson unattended, under other lab names; take its labs down at the end.

    ``session`` (optional) runs the commands, e.g. in this process (``netlab lesson --check``
    does: a ``netlab`` process per command costs its start-up time each time)."""
    session = session or Session(repository(lesson), rename=True)
    results = []
    try:
        for command in lesson.commands:
            results.append(session.run(command))
            if on_result is not None:
                on_result(results[-1])
    finally:
        session.close()
    return results
