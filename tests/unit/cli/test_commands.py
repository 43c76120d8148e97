"""The table of commands: every command has a handler and help, and the table's needs (root,
a running lab, input read first) are what the dispatcher enforces, with today's messages and
exit codes. No root needed: nothing here reaches the kernel."""

from __future__ import annotations

import inspect
import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from netlab import cli, lab
from netlab.cli.parser import COMMANDS, build_parser
from netlab.state import LabState

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"
NOT_ROOT = "netlab needs root to create network namespaces: run it with sudo (e.g. sudo .venv/bin/netlab ...)"
UNKNOWN_LAB = "no lab named 'nope' is up (labs up: t2-other); start it with `netlab up FILE`"

# a valid command line per command, naming the lab 'nope' where one is wanted
EXAMPLES: dict[str, list[str]] = {
    "up": ["up", str(TOPOLOGIES / "docker0.yaml")],
    "down": ["down", "nope"],
    "status": ["status", "nope"],
    "exec": ["exec", "nope", "web", "--", "true"],
    "plan": ["plan", str(TOPOLOGIES / "docker0.yaml")],
    "run": ["run", "scenario.yaml"],
    "lesson": ["lesson", "1", "--check"],
    "capture": ["capture", "nope", "web:eth0"],
    "trace": ["trace", "nope", "web", "internet"],
    "graph": ["graph", "topologies/flannel-vxlan.yaml", "-o", "lab.svg"],
    "check": ["check", "nope"],
    "apply": ["apply", "nope", "-f", "manifests.yaml"],
    "delete": ["delete", "nope", "service/web"],
    "scale": ["scale", "nope", "web", "2"],
    "node": ["node", "stop", "nope", "node1"],
    "requests": ["requests", "nope", "web", "http://web"],
    "clean": ["clean"],
    "doctor": ["doctor"],
    "versions": ["versions", "--json"],
    "vm": ["vm", "--", "netlab", "doctor"],
}
NEEDS_ROOT = {"up", "down", "status", "exec", "capture", "trace", "check", "apply", "delete", "scale", "requests", "clean", "node", "lesson"}
NEEDS_LAB = {"status", "exec", "capture", "trace", "check", "apply", "delete", "scale", "requests", "node"}


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(argv), console=Console(file=out, width=400))
    return code, out.getvalue()


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETLAB_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend not to be root. The tests may really run as root: should the root check ever be
    skipped, building or removing a lab fails the test instead of touching the kernel."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for name in ("up", "down", "clean"):
        monkeypatch.setattr(lab, name, lambda *a, _name=name, **k: pytest.fail(f"lab.{_name} ran without root"))


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend to be root; the tests using it stop at the lab lookup, before anything touches the kernel."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    LabState(lab="t2-other", cni="docker0", source="x.yaml", status="up", namespaces=["t2-other-host1"],
             hosts=[{"name": "host1", "kind": "node", "ns": "t2-other-host1", "ip": "192.168.1.11"}]).save()


def test_every_command_has_a_handler_help_and_an_example() -> None:
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    assert set(names) == set(EXAMPLES), "add an example command line for a new command"
    for command in COMMANDS:
        assert callable(command.handler) and command.help, command.name
        wanted = ["args", "out", "state"] if command.needs_lab else ["args", "out"]
        assert list(inspect.signature(command.handler).parameters) == wanted, f"{command.name}: the handler's parameters"
        if command.needs_lab:
            assert any(a.names == ("lab",) for a in command.args), f"{command.name} needs a lab but takes no LAB argument"
    parser = build_parser()
    for name, argv in EXAMPLES.items():
        args = parser.parse_args(argv)
        assert args._netlab_command.name == name


def test_the_table_says_which_commands_need_root_and_a_running_lab() -> None:
    assert {c.name for c in COMMANDS if c.needs_root} == NEEDS_ROOT
    assert {c.name for c in COMMANDS if c.needs_lab} == NEEDS_LAB


def test_help_lists_every_command_with_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for command in COMMANDS:
        assert f"{command.name} {' '.join(command.help.split())}" in text


@pytest.mark.parametrize("name", sorted(NEEDS_ROOT))
def test_needs_root_refuses_without_root(name: str, not_root: None) -> None:
    code, text = run(*EXAMPLES[name])
    assert code == 3
    assert f"error: {NOT_ROOT}" in " ".join(text.split())


@pytest.mark.parametrize("name", sorted(NEEDS_LAB))
def test_needs_lab_reports_an_unknown_lab(name: str, as_root: None) -> None:
    code, text = run(*EXAMPLES[name])
    assert code == 1
    assert f"error: {UNKNOWN_LAB}" in " ".join(text.split())


def test_status_without_a_lab_lists_the_labs(as_root: None) -> None:
    code, text = run("status")
    assert code == 0 and "t2-other" in text


def test_input_is_checked_before_root(tmp_path: Path, not_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnetwork: {cni: docker0, colour: blue}\nnodes: [{name: host1}]\n")
    assert run("up", str(bad))[0] == 2
    code, text = run("exec", "nope", "web", "--")
    assert code == 2 and "nothing to run: netlab exec LAB TARGET -- COMMAND ..." in text
    monkeypatch.setattr(lab, "running", lambda name: pytest.fail("the lab is looked up after the root check"))
    assert run(*EXAMPLES["check"])[0] == 3
