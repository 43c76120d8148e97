"""GitHub Actions output of `netlab run` (GITHUB_ACTIONS=true): ::error at the failed step's line,
::warning for a skipped optional lab, ::group:: per lab; escaping keeps each command one line."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from netlab import cli
from netlab.scenario import github_actions
from netlab.scenario.results import ScenarioReport
from netlab.scenario.runner import Runner
from tests.unit.scenario.test_junit import SCENARIO, a_run, scenario_file

COMMAND = re.compile(r"^::(error|warning|group|endgroup)( [^:]*)?::(.*)$")


def unescape(text: str) -> str:
    return text.replace("%0A", "\n").replace("%0D", "\r").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def properties(line: str) -> dict[str, str]:
    match = COMMAND.match(line)
    assert match, line
    props = (match.group(2) or "").strip()
    return {k: unescape(v) for k, v in (p.split("=", 1) for p in props.split(",") if p)}


def test_enabled_only_when_the_runner_says_so() -> None:
    assert github_actions.enabled({"GITHUB_ACTIONS": "true"})
    assert not github_actions.enabled({"GITHUB_ACTIONS": "false"}) and not github_actions.enabled({})


def test_escaping_keeps_a_command_on_one_line() -> None:
    line = github_actions.command("error", "50%\nseen::x\r", file="a,b:c.yaml", line=3, title=None)
    assert line == "::error file=a%2Cb%3Ac.yaml,line=3::50%25%0Aseen::x%0D"
    assert github_actions.command("warning", "plain") == "::warning::plain"


def test_error_at_the_failed_steps_line_with_the_packets_seen(tmp_path: Path) -> None:
    path, cs, _report = a_run(tmp_path)
    lines = github_actions.render(cs, str(path), {"cjd-b": 4}, environ={"GITHUB_WORKSPACE": str(tmp_path)})
    errors = [line for line in lines if line.startswith("::error")]
    assert len(errors) == 1 and "\n" not in errors[0]
    props = properties(errors[0])
    assert props["file"] == "ci.yaml", "relative to the checkout, as GitHub links it"
    assert props["line"] == str(SCENARIO.splitlines().index("  - capture:") + 1)
    assert props["title"] == "netlab run: step 2: capture icmp web1 -> internet failed in ci/cjd-a"
    message = unescape(errors[0].split("::", 2)[2])
    assert "FAILED at internet:eth0" in message and "in  192.168.1.11 > 203.0.113.1 icmp echo-request" in message


def test_one_warning_per_skipped_lab_at_its_entry(tmp_path: Path) -> None:
    path, cs, _report = a_run(tmp_path)
    warnings = [line for line in github_actions.render(cs, str(path), {"cjd-b": 4}) if line.startswith("::warning")]
    assert len(warnings) == 1
    props = properties(warnings[0])
    assert props["line"] == "4" and props["title"] == "netlab run: lab ci/cjd-b skipped"
    assert unescape(warnings[0].split("::", 2)[2]) == "lab cjd-b was skipped: the kernel has no ipip module: modprobe ipip"


def test_groups_per_lab_balanced_with_each_step_verdict(tmp_path: Path) -> None:
    _path, cs, _report = a_run(tmp_path)
    lines = github_actions.groups(cs, token="t0k")
    opened = [line for line in lines if line.startswith("::group::")]
    assert opened == ["::group::netlab: ci/cjd-a: 3 pass, 1 fail", "::group::netlab: ci/cjd-b: 4 skipped"]
    assert lines.count("::endgroup::") == 2
    first = lines[: lines.index("::endgroup::") + 1]
    assert first[1] == "::stop-commands::t0k" and first[-2:] == ["::t0k::", "::endgroup::"]
    assert "FAILED  step 2: capture icmp web1 -> internet (1.2 s)" in first
    assert "          expected a packet: src web1 (10.1.0.2) dst internet (203.0.113.1) icmp  -> 0 matched" in first
    assert not any("\x1b" in line for line in lines), "a payload's terminal escape is not passed to the log"


def test_text_from_a_lab_cannot_issue_commands(tmp_path: Path) -> None:
    """A pod's answer quoted in a step's detail may contain a workflow command: inside a group it
    is between stop-commands and the token that resumes them, which is new every time."""
    from netlab.scenario.cases import Case

    case = Case("ci", "cjd-a", "step 1: http from internet: NodePort", "fail", "m", "title\n::error::pwned\n::add-mask::x")
    lines = github_actions.groups([case])
    stop = lines.index(next(line for line in lines if line.startswith("::stop-commands::")))
    token = lines[stop].split("::")[2]
    resume = lines.index(f"::{token}::")
    assert stop < lines.index("        ::error::pwned") < resume and len(token) == 32
    assert github_actions.groups([case])[stop] != lines[stop], "a new token every run"


# ---------------------------------------------------------------- the CLI, with the run faked


@pytest.fixture
def fake_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`netlab run` on the scenario above, its Runner.run returning the report of a_run (no root, no kernel)."""
    _path, _cs, report = a_run(tmp_path)

    def run(self: Runner) -> ScenarioReport:
        self.report = report
        return report

    monkeypatch.setattr(Runner, "run", run)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return scenario_file(tmp_path)


def main(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = cli.main(list(argv), console=Console(file=buf, width=100))
    return code, buf.getvalue()


def test_cli_writes_junit_and_no_workflow_commands_outside_github(fake_run: Path, tmp_path: Path) -> None:
    code, out = main("run", str(fake_run), "--junit", str(tmp_path / "j" / "junit.xml"))
    assert code == 1, out
    root = ET.parse(tmp_path / "j" / "junit.xml").getroot()
    assert root.get("tests") == "8" and root.get("failures") == "1"
    assert "::" not in "".join(line[:2] for line in out.splitlines())


def test_cli_prints_groups_and_annotations_in_github_actions(fake_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out = main("run", str(fake_run))
    assert code == 1
    lines = out.splitlines()
    assert sum(line.startswith("::group::") for line in lines) == 2 and lines.count("::endgroup::") == 2
    assert sum(line.startswith("::stop-commands::") for line in lines) == 2
    assert sum(line.startswith("::error ") for line in lines) == 1 and sum(line.startswith("::warning ") for line in lines) == 1
    error = next(line for line in lines if line.startswith("::error "))
    assert properties(error)["line"] == str(SCENARIO.splitlines().index("  - capture:") + 1), "not wrapped by the console"


def test_cli_json_stays_json_in_github_actions(fake_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out = main("run", str(fake_run), "--json")
    assert code == 1
    assert json.loads(out)["passed"] is False  # the workflow commands went to stderr


def test_cli_refuses_a_junit_path_that_is_a_directory_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(self: Runner) -> ScenarioReport:
        raise AssertionError("nothing may run")

    monkeypatch.setattr(Runner, "run", never)
    code, out = main("run", str(scenario_file(tmp_path)), "--junit", str(tmp_path))
    assert code == 2 and "--junit" in out and "is a directory" in out


def test_cli_refuses_a_junit_path_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    code, out = main("run", str(scenario_file(tmp_path)), "--junit", str(tmp_path / "plain" / "junit.xml"))
    assert code == 2 and "is not a directory" in out


def test_cli_writes_junit_and_an_annotation_when_a_lab_cannot_be_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netlab.errors import EnvironmentProblem

    def run(self: Runner) -> ScenarioReport:
        self.report = ScenarioReport("ci", str(self.source), 0.0, {})
        self.building = "cjd-a"
        raise EnvironmentProblem("this kernel has no vxlan module: modprobe vxlan")

    monkeypatch.setattr(Runner, "run", run)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out = main("run", str(scenario_file(tmp_path)), "--junit", str(tmp_path / "junit.xml"))
    assert code == 3, out
    case = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase")
    assert case is not None and case.get("classname") == "ci/cjd-a" and case.get("name") == "build lab cjd-a"
    error = case.find("error")
    assert error is not None and error.get("message") == "this kernel has no vxlan module: modprobe vxlan"
    annotation = next(line for line in out.splitlines() if line.startswith("::error "))
    assert properties(annotation)["line"] == "3", "the lab's entry under labs:"
