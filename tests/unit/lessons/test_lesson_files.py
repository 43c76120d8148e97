"""Lesson files: the console blocks are found and split into commands; bad lessons exit 2
naming the file and line; every lesson in docs/lessons/ reads; ``netlab lesson`` argument handling."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from rich.console import Console

from netlab import cli
from netlab.errors import TopologyError
from netlab.lessons import document, runner

LESSON = """# Lesson 9: a test

<!-- requires: ipip, ipvs -->

Some prose.

```console
$ sudo .venv/bin/netlab up topologies/docker0.yaml
lab docker0 is up

$ netlab exec docker0 client -- ping -c1 172.17.0.2
64 bytes from 172.17.0.2: time=<ms> ms
```

```yaml
$ not a command: yaml blocks are prose
```

More prose.

```console
$ netlab down docker0
```

## Try this

- something else
"""


def test_blocks_become_steps_with_commands_and_their_output() -> None:
    lesson = document.parse(LESSON, "l.md")
    assert lesson.title == "Lesson 9: a test"
    assert lesson.requires == ("ipip", "ipvs")
    assert [len(s.commands) for s in lesson.steps] == [2, 1]
    up, ping, down = lesson.commands
    assert up.args == ("up", "topologies/docker0.yaml") and up.expected == ("lab docker0 is up", "")
    assert up.line == 8 and ping.line == 11 and down.line == 22
    assert ping.args[:4] == ("exec", "docker0", "client", "--")
    assert lesson.steps[0].prose.endswith("Some prose.")
    assert "yaml blocks are prose" in lesson.steps[1].prose
    assert lesson.outro.startswith("## Try this")


@pytest.mark.parametrize(("text", "where", "what"), [
    ("# L\n\n```console\n$ curl http://x\n```\n", "line 4", "only 'netlab ...' commands"),
    ("# L\n\n```console\noutput first\n$ netlab status\n```\n", "line 4", "starts with a '$ netlab"),
    ("# L\n\n```console\n$ netlab exec 'x\n```\n", "line 4", "cannot split"),
    ("no title\n\n```console\n$ netlab status\n```\n", "line 1", "title"),
    ("# L\n\nno blocks\n", "", "no ```console block"),
])
def test_bad_lessons_name_the_file_and_line(text: str, where: str, what: str) -> None:
    with pytest.raises(TopologyError) as caught:
        document.parse(text, "bad.md")
    assert caught.value.source == "bad.md" and caught.value.field == where and what in caught.value.message


def test_every_lesson_reads_and_runs_only_netlab_commands() -> None:
    paths = document.all_lessons()
    assert len(paths) >= 10
    numbers = [int(p.name[:2]) for p in paths]
    assert numbers == sorted(set(numbers)), "lesson numbers are unique"
    for path in paths:
        lesson = document.load(path)
        assert lesson.title.startswith(f"Lesson {int(path.name[:2])}:"), path
        ups = sum(1 for c in lesson.commands if c.args[0] == "up")
        downs = sum(1 for c in lesson.commands if c.args[0] == "down")
        assert ups >= 1 and ups == downs, f"{path}: a lesson builds its lab and takes down every lab it builds"
        assert "Try this" in lesson.outro, f"{path}: a lesson ends with 'Try this' variations"


def test_find_by_number_or_file(tmp_path: Path) -> None:
    (tmp_path / "03-x.md").write_text("# Lesson 3: x\n")
    assert document.find("3", tmp_path) == tmp_path / "03-x.md"
    assert document.find(str(tmp_path / "03-x.md"), tmp_path) == tmp_path / "03-x.md"
    with pytest.raises(TopologyError, match="no lesson 4: the lessons are 3"):
        document.find("4", tmp_path)
    with pytest.raises(TopologyError, match="no such lesson file"):
        document.find(str(tmp_path / "nope.md"), tmp_path)


def test_checking_renames_the_lab_in_every_lab_argument_only() -> None:
    session = runner.Session(Path(__file__).resolve().parents[3], rename=True)
    lesson = document.parse(LESSON + "\n```console\n$ netlab node stop docker0 docker0\n$ netlab down docker0\n```\n", "l.md")
    up, ping, down, node, _ = lesson.commands
    argv = session.argv(up)
    assert argv[:3] == [sys.executable, "-m", "netlab.cli"] and argv[3:5] == ["up", "topologies/docker0.yaml"]
    alias = argv[argv.index("--name") + 1]
    assert alias.startswith("les") and len(alias) == len("docker0") and alias != "docker0"
    assert session.argv(ping)[3:] == ["exec", alias, "client", "--", "ping", "-c1", "172.17.0.2"]
    assert session.argv(node)[3:] == ["node", "stop", alias, "docker0"]  # the LAB argument, not the node
    assert session.argv(down)[3:] == ["down", alias]
    assert session._as_lesson(f"lab {alias} is up: netns {alias}-host1") == "lab docker0 is up: netns docker0-host1"


def test_walking_keeps_the_lessons_lab_names() -> None:
    session = runner.Session(Path(__file__).resolve().parents[3], rename=False)
    up, ping, *_ = document.parse(LESSON, "l.md").commands
    assert session.argv(up)[3:] == ["up", "topologies/docker0.yaml"]
    assert session.argv(ping)[4] == "docker0"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(argv), console=Console(file=out, width=200))
    return code, out.getvalue()


def test_lesson_command_bad_input_exits_2_before_the_root_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, out = run("lesson", "99")
    assert code == 2 and "no lesson 99" in out
    code, out = run("lesson", "/nonexistent/lesson.md")
    assert code == 2 and "no such lesson file" in out


def test_lesson_command_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, _ = run("lesson", "1", "--check")
    assert code == 3


def test_walking_shows_each_step_runs_its_commands_and_takes_the_lab_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lesson_file = tmp_path / "09-a-test.md"
    lesson_file.write_text(LESSON)
    ran: list[tuple[str, ...]] = []
    closed: list[bool] = []
    monkeypatch.setattr(runner.Session, "stream", lambda self, command: ran.append(command.args) or 0)
    monkeypatch.setattr(runner.Session, "close", lambda self: closed.append(True) or ["docker0"])
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    code, out = run("lesson", str(lesson_file), "--no-pause")
    assert code == 0
    assert [a[0] for a in ran] == ["up", "exec", "down"]
    assert "step 1 of 2" in out and "Some prose." in out and "$ netlab down docker0" in out and "Try this" in out
    assert closed == [True] and "lab docker0 taken down" in out


def test_walking_stops_when_a_command_fails_and_still_takes_the_lab_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lesson_file = tmp_path / "09-a-test.md"
    lesson_file.write_text(LESSON)
    monkeypatch.setattr(runner.Session, "stream", lambda self, command: 1 if command.args[0] == "exec" else 0)
    closed: list[bool] = []
    monkeypatch.setattr(runner.Session, "close", lambda self: closed.append(True) or [])
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    code, out = run("lesson", str(lesson_file), "--no-pause")
    assert code == 1 and "exited 1; the lesson expects 0" in out and closed == [True]
