"""Does a command's real output match the output a lesson shows?

The lesson's lines are the pattern, line by line, with three kinds of give:

- **placeholders** stand for what changes from run to run (``<ms>`` a latency, ``<n>`` a
  count, ``<port>`` a source port, ``<pid>``, ``<mac>``, ``<hex>`` a random hash,
  ``<time>`` a clock time, ``<ip>`` an address picked at random, ``<any>`` any text). Any
  other ``<word>`` is literal text;
- a line ``...`` stands for any number of lines (output a lesson leaves out);
- spacing: runs of spaces count as one, trailing spaces and blank lines are ignored, and a
  run of one table-border character (``━━━``) counts as one, so a table whose column grows by
  a placeholder's width still matches.

A last line ``[exit N]`` says the command exits with N (otherwise it must exit 0).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

PLACEHOLDERS: dict[str, str] = {
    "ms": r"\d+(?:\.\d+)?",
    "n": r"\d+",
    "port": r"\d{1,5}",
    "pid": r"\d+",
    "mac": r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}",
    "hex": r"[0-9a-f]+",
    "time": r"\d{1,2}:\d{2}:\d{2}(?:\.\d+)?",
    "ip": r"\d{1,3}(?:\.\d{1,3}){3}",
    "any": r".*?",
}
ELLIPSIS = "..."
EXIT = re.compile(r"^\[exit (\d{1,3})\]$")
_PLACEHOLDER = re.compile("<(" + "|".join(PLACEHOLDERS) + ")>")
_BORDER = re.compile(r"([─━═│┃┏┓┗┛┡┩└┘┌┐╇╈┳┻┼╋├┤])\1+")


@dataclass(frozen=True)
class Expected:
    lines: tuple[str, ...]  # normalized, blank lines dropped
    exit_code: int


def normalize(line: str) -> str:
    return _BORDER.sub(r"\1", " ".join(line.split()))


def expected(lines: Sequence[str]) -> Expected:
    kept = [normalize(line) for line in lines if line.strip()]
    code = 0
    if kept and (match := EXIT.match(kept[-1])):
        code, kept = int(match.group(1)), kept[:-1]
    return Expected(tuple(kept), code)


def line_pattern(line: str) -> re.Pattern[str]:
    parts, last = [], 0
    for match in _PLACEHOLDER.finditer(line):
        parts += [re.escape(line[last:match.start()]), PLACEHOLDERS[match.group(1)]]
        last = match.end()
    parts.append(re.escape(line[last:]))
    return re.compile("".join(parts))


def matches(want: Sequence[str], got: Sequence[str]) -> bool:
    """Whether the output lines ``got`` match the lesson's lines ``want`` (both normalized)."""
    patterns = [None if w == ELLIPSIS else line_pattern(w) for w in want]
    # reachable[j]: the first i patterns can match the first j lines
    reachable = [True] + [False] * len(got)
    for pattern in patterns:
        step = [False] * (len(got) + 1)
        for j in range(len(got) + 1):
            if pattern is None:
                step[j] = reachable[j] or (j > 0 and step[j - 1])
            elif j > 0 and reachable[j - 1] and pattern.fullmatch(got[j - 1]):
                step[j] = True
        reachable = step
    return reachable[len(got)]


def mismatch(lesson_lines: Sequence[str], output: str, exit_code: int) -> str | None:
    """None when the output matches; otherwise what differs, as a diff (lesson ``-``, real ``+``)."""
    want = expected(lesson_lines)
    got = [normalize(line) for line in output.splitlines() if line.strip()]
    problems = []
    if exit_code != want.exit_code:
        problems.append(f"exit code {exit_code}, the lesson shows {want.exit_code}")
    if not matches(want.lines, got):
        diff = difflib.unified_diff(list(want.lines), got, "lesson", "real output", lineterm="", n=2)
        problems.append("output differs:\n" + "\n".join(diff))
    return "\n".join(problems) or None
