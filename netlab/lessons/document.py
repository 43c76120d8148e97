"""A lesson file: Markdown prose and ``console`` blocks, split into steps.

A lesson is ``docs/lessons/NN-<topic>.md``. Each fenced block whose info string is
``console`` holds commands, each on a line starting with ``$ ``, followed by the output that
command prints (see :mod:`netlab.lessons.expect` for placeholders, ``...`` and ``[exit N]``).
Only ``netlab`` commands may appear (``sudo`` and a path such as ``.venv/bin/`` in front are
allowed): they are what the lesson checks. Other fences (``yaml``, ``text``) are prose.

An HTML comment ``<!-- requires: ipip, ipvs -->`` names the kernel features the lesson needs
(``netlab doctor``'s names); the lessons' check runs such a lesson in the VM tier where this
kernel lacks one.

The Markdown is read by markdown-it-py (CommonMark, the parser rich itself renders with), so
fences are found exactly as a Markdown viewer finds them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

from netlab.errors import TopologyError

LESSONS = Path(__file__).resolve().parents[2] / "docs" / "lessons"
PROMPT = "$ "
REQUIRES = re.compile(r"<!--\s*requires:\s*([a-z0-9_, ]+?)\s*-->")
FILE_NAME = re.compile(r"^(\d{2})-[a-z0-9-]+\.md$")


@dataclass(frozen=True)
class Command:
    """One ``$ netlab ...`` line of a console block and the output shown under it."""

    line: int  # 1-based line of the ``$`` in the lesson file
    text: str  # as the lesson shows it, after the prompt
    args: tuple[str, ...]  # netlab's arguments (after ``netlab``)
    expected: tuple[str, ...]  # the output lines shown under it


@dataclass(frozen=True)
class Step:
    """The prose before a console block, and the block's commands."""

    prose: str
    commands: tuple[Command, ...]


@dataclass(frozen=True)
class Lesson:
    path: Path
    title: str
    requires: tuple[str, ...]
    steps: tuple[Step, ...]
    outro: str  # the prose after the last console block ("try this")

    @property
    def commands(self) -> tuple[Command, ...]:
        return tuple(c for s in self.steps for c in s.commands)


def all_lessons(directory: Path = LESSONS) -> list[Path]:
    """The lesson files of ``directory``, in order."""
    return sorted(p for p in directory.glob("*.md") if FILE_NAME.match(p.name))


def find(which: str, directory: Path = LESSONS) -> Path:
    """Lesson ``N`` (its number) or a lesson file's path."""
    if which.isdigit():
        for path in all_lessons(directory):
            match = FILE_NAME.match(path.name)
            if match and int(match.group(1)) == int(which):
                return path
        known = ", ".join(str(int(p.name[:2])) for p in all_lessons(directory))
        raise TopologyError(str(directory), "", f"no lesson {which}: the lessons are {known or 'none'}")
    path = Path(which)
    if not path.is_file():
        raise TopologyError(which, "", "no such lesson file: give a lesson number or a docs/lessons/NN-<topic>.md file")
    return path


def load(path: Path) -> Lesson:
    """Read and check a lesson file (exit 2 naming the file and line when it is not one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopologyError(str(path), "", f"cannot read the lesson: {exc}") from None
    return parse(text, str(path), path)


def parse(text: str, source: str, path: Path | None = None) -> Lesson:
    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").parse(text)
    title, requires, steps = "", [], []
    prose_from = 0
    for token in tokens:
        if token.type == "inline" and not title and token.map and lines[token.map[0]].startswith("# "):
            title = token.content
        if token.type == "html_block":
            for match in REQUIRES.finditer(token.content):
                requires += [f.strip() for f in match.group(1).split(",") if f.strip()]
        if token.type == "fence" and token.info.strip() == "console" and token.map:
            start, end = token.map
            prose = "\n".join(lines[prose_from:start]).strip()
            steps.append(Step(prose, _commands(token.content, source, start + 2)))
            prose_from = end
    if not title:
        raise TopologyError(source, "line 1", "a lesson starts with its title: '# Lesson N: topic'")
    if not steps:
        raise TopologyError(source, "", "no ```console block: a lesson shows commands and their output")
    outro = "\n".join(lines[prose_from:]).strip()
    return Lesson(path or Path(source), title, tuple(requires), tuple(steps), outro)


def _commands(block: str, source: str, first_line: int) -> tuple[Command, ...]:
    commands: list[Command] = []
    current: tuple[int, str, tuple[str, ...]] | None = None
    expected: list[str] = []
    for offset, line in enumerate(block.splitlines()):
        number = first_line + offset
        if line.startswith(PROMPT):
            if current is not None:
                commands.append(Command(*current, tuple(expected)))
            text = line[len(PROMPT):].strip()
            current, expected = (number, text, _netlab_args(text, source, number)), []
        elif current is None:
            if line.strip():
                raise TopologyError(source, f"line {number}", "a console block starts with a '$ netlab ...' command")
        else:
            expected.append(line)
    if current is not None:
        commands.append(Command(*current, tuple(expected)))
    return tuple(commands)


def _netlab_args(text: str, source: str, number: int) -> tuple[str, ...]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise TopologyError(source, f"line {number}", f"cannot split the command: {exc}") from None
    if argv[:1] == ["sudo"]:
        argv = argv[1:]
    if not argv or Path(argv[0]).name != "netlab" or len(argv) < 2:
        raise TopologyError(source, f"line {number}", f"only 'netlab ...' commands can be checked, not {text!r}")
    return tuple(argv[1:])
