"""CLI exit codes and messages (0 ok, 1 a check failed, 2 bad input, 3 environment). No root needed:
nothing here reaches the kernel (validation, root checks and lab lookups come first)."""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest
from rich.console import Console

from netlab import cli, datapaths, lab
from netlab.errors import UsageError
from netlab.model import parse_topology
from netlab.state import LabState

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"


def run(*argv: str) -> tuple[int, str]:
    """Exit code and output; rich wraps at 120 columns, so line breaks are taken out again."""
    out = io.StringIO()
    code = cli.main(list(argv), console=Console(file=out, width=120))
    return code, out.getvalue().replace("\n", "")


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NETLAB_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend to be root; the tests using it stop before anything would touch the kernel."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend not to be root; should the root check be skipped, building or removing a lab fails the test."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for name in ("up", "down", "clean"):
        monkeypatch.setattr(lab, name, lambda *a, _name=name, **k: pytest.fail(f"lab.{_name} ran without root"))


def another_lab_up() -> None:
    state = LabState(lab="t2-other", cni="docker0", source="x.yaml", status="up", namespaces=["t2-other-host1"],
                     hosts=[{"name": "host1", "kind": "node", "ns": "t2-other-host1", "ip": "192.168.1.11"},
                                {"name": "web", "kind": "pod", "ns": "t2-other-web", "ip": "172.17.0.2", "node": "host1"}])
    state.save()


# ----------------------------------------------------------------------------- bad input: 2
@pytest.mark.parametrize("command", ["plan", "up"])
def test_invalid_file_exits_2_naming_file_and_field(tmp_path: Path, command: str, not_root: None) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((TOPOLOGIES / "docker0.yaml").read_text().replace("ports: [\"8080:80\"]", "ports: [\"8080\"]"))
    code, text = run(command, str(bad))
    assert code == 2
    assert f"error: {bad}: nodes[0].pods[0].ports: malformed port '8080'" in text
    assert "needs root" not in text  # validated before anything else: nothing is built


def test_unknown_key_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnetwork: {cni: docker0, colour: blue}\nnodes: [{name: host1}]\n")
    code, text = run("plan", str(bad))
    assert code == 2 and f"{bad}: network.colour: unknown key 'colour'; valid keys:" in text


def test_missing_file_exits_2(tmp_path: Path) -> None:
    code, text = run("plan", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read the file" in text


def test_not_implemented_cni_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datapaths, "DATAPATHS", {"docker0": datapaths.DATAPATHS["docker0"]})
    path = tmp_path / "later.yaml"
    path.write_text("name: later\nnetwork: {cni: host-gw}\nnodes: [{name: node1}]\n")
    code, text = run("plan", str(path))
    assert code == 2 and f"{path}: network.cni: cni 'host-gw' is not implemented yet; implemented: docker0" in text


def test_exec_without_a_command_exits_2(as_root: None) -> None:
    code, text = run("exec", "t2-other", "web", "--")
    assert code == 2 and "nothing to run" in text


def test_no_command_prints_help_and_exits_2() -> None:
    code, _text = run()
    assert code == 2


def test_argparse_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as caught:
        run("up")  # FILE missing
    assert caught.value.code == 2


# ----------------------------------------------------------------------------- environment: 3
@pytest.mark.parametrize(
    "argv",
    [["up", str(TOPOLOGIES / "docker0.yaml")], ["down", "docker0"], ["clean"], ["status"], ["exec", "docker0", "client", "--", "true"]],
)
def test_not_root_exits_3_with_what_to_do(argv: list[str], not_root: None) -> None:
    code, text = run(*argv)
    assert code == 3
    assert "netlab needs root to create network namespaces: run it with sudo" in text


# ----------------------------------------------------------------------------- lifecycle conflicts: 1
@pytest.mark.parametrize("argv", [["down", "nope"], ["status", "nope"], ["exec", "nope", "web", "--", "true"]])
def test_unknown_lab_lists_the_labs_that_are_up(argv: list[str], as_root: None) -> None:
    another_lab_up()
    code, text = run(*argv)
    assert code == 1
    assert "no lab named 'nope' is up (labs up: t2-other)" in text


def test_unknown_lab_when_none_is_up(as_root: None) -> None:
    code, text = run("down", "nope")
    assert code == 1 and "(labs up: none)" in text


def test_exec_unknown_target_lists_the_valid_ones(as_root: None) -> None:
    another_lab_up()
    code, text = run("exec", "t2-other", "db", "--", "true")
    assert code == 2 and "lab 't2-other' has no node or pod named 'db'; valid: host1, web" in text


def test_status_lists_labs(as_root: None) -> None:
    code, text = run("status")
    assert code == 0 and "no labs are up" in text
    another_lab_up()
    code, text = run("status", "--json")
    assert code == 0
    assert json.loads(text) == [{"lab": "t2-other", "cni": "docker0", "status": "up", "source": "x.yaml", "namespaces": 1}]


def test_plan_exits_0() -> None:
    code, text = run("plan", str(TOPOLOGIES / "docker-2hosts.yaml"))
    assert code == 0 and text.startswith("# netlab plan for lab 'docker-2hosts' (cni docker0)")


# ----------------------------------------------------------------------------- issue 11: hostile arguments exit 2
def argparse_exit(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """argparse refuses the command line itself: exit 2, its message on stderr."""
    with pytest.raises(SystemExit) as caught:
        run(*argv)
    assert caught.value.code == 2, argv
    return capsys.readouterr().err


def test_down_with_a_path_for_a_lab_touches_nothing_outside_the_state_dir(
    tmp_path: Path, private_state: Path, as_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`netlab down ../../<dir>/b` deleted <dir>/b.json (issue 11)."""
    victim = tmp_path / "x" / "b.json"
    victim.parent.mkdir()
    victim.write_text("{}")
    private_state.mkdir()
    err = argparse_exit(capsys, "down", "../x/b")
    assert "argument lab: invalid lab name '../x/b'" in err
    assert victim.exists()
    with pytest.raises(UsageError, match="invalid lab name"):  # and below the CLI: no path is ever made of it
        lab.down("../x/b")
    for path_for in (LabState.path_for, LabState.journal_for, LabState.files_journal_for):
        with pytest.raises(UsageError):
            path_for("../x/b")
    assert victim.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["down", "[/]x"], ["status", "Lab"], ["exec", "a/b", "web", "--", "true"], ["capture", "x" * 17, "web:eth0"],
        ["trace", "1lab", "a", "b"], ["check", "a_b"], ["apply", "a\nb", "-f", "m.yaml"], ["scale", "..", "web", "1"],
        ["requests", "a b", "web", "http://web"],
    ],
)
def test_every_lab_argument_is_a_lab_name(argv: list[str], as_root: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert "argument lab: " in argparse_exit(capsys, *argv)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["capture", "lab", "web:eth0", "--count", "-5"], "argument --count: expected an integer of at least 1 (got '-5')"),
        (["capture", "lab", "web:eth0", "--count", "0"], "argument --count"),
        (["capture", "lab", "web:eth0", "--timeout", "-1"], "argument --timeout: expected a number of seconds"),
        (["capture", "lab", "web:eth0", "--timeout", "nan"], "argument --timeout"),
        (["capture", "lab", "web:eth0", "--timeout", "1e400"], "argument --timeout"),
        (["trace", "lab", "a", "b", "--port", "70000"], "argument --port: expected an integer from 1 to 65535 (got '70000')"),
        (["trace", "lab", "a", "b", "--port", "0"], "argument --port"),
        (["trace", "lab", "a", "b", "--timeout", "0"], "argument --timeout"),
        (["requests", "lab", "web", "http://web", "-n", "-3"], "argument -n/--count: expected an integer of at least 1"),
        (["scale", "lab", "web", "-1"], "argument replicas: expected an integer of at least 0 (got '-1')"),
        (["scale", "lab", "web", "two"], "argument replicas"),
        (["check", "lab", "--workers", "0"], "argument --workers"),
        (["run", "s.yaml", "--samples", "0"], "argument --samples: expected an integer from 10 to 200000"),
        (["vm", "--cpus", "0", "--", "netlab", "doctor"], "argument --cpus"),
    ],
)
def test_out_of_range_numbers_exit_2(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert words in argparse_exit(capsys, *argv)


def test_numbers_in_range_are_accepted(as_root: None) -> None:
    assert run("scale", "nope", "web", "0")[0] == 1  # parsed: the lab lookup is what fails
    assert run("trace", "nope", "a", "b", "--port", "65535", "--timeout", "0.5")[0] == 1


def test_rich_markup_in_user_text_is_printed_not_interpreted(as_root: None) -> None:
    """`[/]` in a name reached rich's markup parser (MarkupError traceback)."""
    another_lab_up()
    code, text = run("exec", "t2-other", "[/]x", "--", "true")
    assert code == 2 and "lab 't2-other' has no node or pod named '[/]x'" in text
    code, text = run("plan", "[bold]no-such-file[/].yaml")
    assert code == 2 and "[bold]no-such-file[/].yaml: cannot read the file" in text


@pytest.mark.parametrize("command", ["plan", "run", "apply"])
def test_a_file_that_is_not_utf8_exits_2_naming_it(tmp_path: Path, command: str, as_root: None) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    another_lab_up()
    argv = ["apply", "t2-other", "-f", str(path)] if command == "apply" else [command, str(path)]
    code, text = run(*argv)
    assert code == 2, text
    assert f"error: {path}: line 1: not UTF-8 text (byte 0xe9 at offset 9)" in text


# ----------------------------------------------------------------------------- check: which pairs
def hostgw_lab_up(nodes: int = 3, pods: int = 4) -> None:
    """A host-gw lab's record (as `up` leaves it), built from a generated topology's plan."""
    topology = parse_topology({"name": "t2-chk", "network": {"cni": "host-gw", "podCIDR": "10.244.0.0/16",
                               "subnets": [{"name": "lan", "cidr": "192.168.1.0/24"}], "internet": "203.0.113.0/24"},
                               "nodes": [{"name": f"node{n}", "pods": [{"name": f"p{n}-{i}"} for i in range(pods)]} for n in range(1, nodes + 1)]},
                              "<test>")
    plan = datapaths.make_plan(topology)
    hosts = [{**asdict(h), "ip": str(h.ip) if h.ip else None} for h in plan.hosts]
    LabState(lab="t2-chk", cni="host-gw", source="<test>", status="up", namespaces=list(plan.namespaces), hosts=hosts).save()


def test_check_probes_a_representative_set_and_all_of_them_with_all(as_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from netlab.cli.commands import observe
    from netlab.observe import check

    pinged: list[tuple[str, str]] = []
    monkeypatch.setattr(check, "ping", lambda ns, ip, wait=1: (pinged.append((ns, ip)), (True, 0.1))[1])
    monkeypatch.setattr(check, "echo_requests", lambda ns: 0)
    hostgw_lab_up()
    sources = 3 + 3 * 4
    possible = sources * (sources + 1) - sources  # every source to every target but itself
    code, text = run("check", "t2-chk", "--json")
    data = json.loads(text)
    assert code == 0 and data["ok"]
    assert (data["probed"], data["possible"]) == (9 * 9, possible) == (len(pinged), possible)  # 3 nodes + 2 pods each -> 9 x (9 + internet - itself)
    assert data["selection"].startswith("representative: every node pair, 2 pods of each kind per node, every path type")
    code, text = run("check", "t2-chk")
    assert code == 0 and f"--all for all {possible}" in text and "all 81 paths as expected" in text
    pinged.clear()
    monkeypatch.setattr(observe, "CHECK_PROGRESS_AFTER", 10)  # the bar's path too
    code, text = run("check", "t2-chk", "--all")
    assert code == 0 and f"pairs: every pair ({possible})" in text and f"all {possible} paths as expected" in text
    assert len(pinged) == possible and "ARP table" not in text


def test_check_says_at_once_when_the_arp_table_overflows(as_root: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from netlab.cli.commands import observe
    from netlab.kernel import inspect
    from netlab.observe import check

    monkeypatch.setattr(check, "ping", lambda ns, ip, wait=1: (True, 0.1))
    monkeypatch.setattr(check, "echo_requests", lambda ns: 0)
    overflows = iter(range(0, 10_000, 7))
    table = lambda: inspect.NeighbourTable(next(overflows), 1024)  # noqa: E731
    monkeypatch.setattr(inspect, "neighbour_table", table)
    monkeypatch.setattr(check, "neighbour_table", table)
    monkeypatch.setattr(observe, "CHECK_PROGRESS_AFTER", 10)
    monkeypatch.setattr(observe._ArpWatch, "every", 0.0)
    hostgw_lab_up()
    code, text = run("check", "t2-chk", "--all")
    assert code == 0  # every path answered: the warning explains failures, it is not one
    assert text.count("is full: paths are failing for want of an entry") == 1
    assert "warning: the kernel's ARP table was full" in text
