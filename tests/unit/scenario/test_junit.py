"""`netlab run --junit`: one testcase per step and lab, read back and checked against the shape of
the JUnit schema CI systems read (Jenkins xUnit plugin's junit-10.xsd, which GitHub report
actions and GitLab also accept)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from netlab.scenario import cases, junit
from netlab.scenario.results import LabOutcome, ScenarioReport, StepResult
from netlab.scenario.spec import load_scenario, source_lines

ROOT = Path(__file__).resolve().parents[3]

# junit-10.xsd (jenkinsci/xunit-plugin, src/main/resources/org/jenkinsci/plugins/xunit/types/model/xsd/):
# the attributes each element may carry, those it must carry, and the children it may hold
ATTRIBUTES = {
    "testsuites": {"name", "time", "tests", "failures", "errors"},
    "testsuite": {"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp", "hostname", "id", "package", "file", "log", "url"},
    "testcase": {"name", "time", "classname", "group"},
    "failure": {"type", "message"},
    "error": {"type", "message"},
    "skipped": {"type", "message"},
    "properties": set(),
    "property": {"name", "value"},
    "system-out": set(),
    "system-err": set(),
}
REQUIRED = {"testsuite": {"name", "tests", "failures", "errors"}, "testcase": {"name"}, "property": {"name", "value"}}
CHILDREN = {
    "testsuites": {"testsuite"},
    "testsuite": {"testsuite", "properties", "testcase", "system-out", "system-err"},
    "testcase": {"skipped", "error", "failure", "system-out", "system-err"},
    "properties": {"property"},
}
SUREFIRE_TIME = re.compile(r"^(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?$")

SCENARIO = """\
name: ci
labs:
  - {file: TOPO, name: cjd-a}
  - file: TOPO
    name: cjd-b
    optional: true
steps:
  - ping: {from: web1, to: host2}
  - capture:
      probe: {from: web1, to: internet, count: 1}
      expect:
        - at: internet:eth0
          packet: {src: web1, dst: internet, proto: icmp}
  - rtt: {from: web1, to: host2, baseline: {from: host1, to: host2}, samples: 100}
  - ping: {labs: [cjd-b], from: web1, to: host1}
"""
FAILURE = (
    "FAILED at internet:eth0:\n"
    "  expected a packet: src web1 (10.1.0.2) dst internet (203.0.113.1) icmp  -> 0 matched\n"
    "  seen there (1 IPv4 packet):\n"
    "    in  192.168.1.11 > 203.0.113.1 icmp echo-request <&> \x1b[31m"
)


def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "ci.yaml"
    path.write_text(SCENARIO.replace("TOPO", str(ROOT / "topologies" / "docker-2hosts.yaml")))
    return path


def a_run(tmp_path: Path) -> tuple[Path, list[cases.Case], ScenarioReport]:
    path = scenario_file(tmp_path)
    scenario, _labs = load_scenario(path)
    report = ScenarioReport("ci", str(path), 1_700_000_000.0, {"kernel": "6.1.0", "cpu": "x", "cores": 2}, duration=3.5)
    report.labs = [LabOutcome("cjd-a", "docker", "up"), LabOutcome("cjd-b", "docker", "skipped", "the kernel has no ipip module: modprobe ipip")]
    report.steps = [
        StepResult(0, "ping", "cjd-a", "ping web1 -> host2 (192.168.1.12) in cjd-a", "pass", "replies", seconds=0.41),
        StepResult(1, "capture", "cjd-a", "capture icmp web1 -> internet in cjd-a", "fail", FAILURE, seconds=1.2),
        StepResult(2, "rtt", "baseline", "rtt underlay host1->host2", "pass", "p50 7 us, p99 50 us", {"lab": "cjd-a"}, seconds=2.0),
        StepResult(2, "rtt", "cjd-a", "rtt web1 -> host2 in cjd-a", "pass", "p50 9 us, p99 60 us", {"lab": "cjd-a"}, seconds=2.0),
        StepResult(3, "ping", "cjd-b", "ping in cjd-b", "skipped", "none of its labs is up"),
    ]
    lines = source_lines(path)
    return path, cases.build_cases(report, scenario, lines, {"cjd-a": lines.labs[0], "cjd-b": lines.labs[1]}), report


def check_schema(element: ET.Element) -> None:
    tag = element.tag
    assert tag in ATTRIBUTES, f"<{tag}> is not in the schema"
    assert set(element.attrib) <= ATTRIBUTES[tag], f"<{tag}> has attributes the schema lacks: {set(element.attrib) - ATTRIBUTES[tag]}"
    assert REQUIRED.get(tag, set()) <= set(element.attrib), f"<{tag}> misses {REQUIRED[tag] - set(element.attrib)}"
    if "time" in element.attrib:
        assert SUREFIRE_TIME.match(element.attrib["time"]), element.attrib["time"]
    for child in element:
        assert child.tag in CHILDREN.get(tag, set()), f"<{child.tag}> may not be inside <{tag}>"
        check_schema(child)


def parse(tmp_path: Path, cs: list[cases.Case], report: ScenarioReport) -> ET.Element:
    out = tmp_path / "out" / "junit.xml"
    junit.write(out, junit.render(cs, report.scenario, report.source, report.started, report.duration, report.conditions))
    text = out.read_bytes()
    assert text.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.fromstring(text)


def test_one_testcase_per_step_and_lab_read_back_in_the_schemas_shape(tmp_path: Path) -> None:
    path, cs, report = a_run(tmp_path)
    root = parse(tmp_path, cs, report)
    check_schema(root)
    assert root.tag == "testsuites"
    (suite,) = root
    testcases = suite.findall("testcase")
    got = [(t.get("classname"), t.get("name"), "failure" if t.find("failure") is not None else "skipped" if t.find("skipped") is not None else "pass")
           for t in testcases]
    assert got == [
        ("ci/cjd-a", "step 1: ping web1 -> host2", "pass"),
        ("ci/cjd-b", "step 1: ping web1 -> host2", "skipped"),
        ("ci/cjd-a", "step 2: capture icmp web1 -> internet", "failure"),
        ("ci/cjd-b", "step 2: capture icmp web1 -> internet", "skipped"),
        ("ci/cjd-a", "step 3: rtt web1 -> host2 (baseline host1 -> host2)", "pass"),
        ("ci/cjd-a", "step 3: rtt web1 -> host2", "pass"),
        ("ci/cjd-b", "step 3: rtt web1 -> host2", "skipped"),
        ("ci/cjd-b", "step 4: ping web1 -> host1", "skipped"),  # once, with the lab's reason
    ]
    # the counts agree with the cases, in the suite and in the whole document
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("8", "1", "0", "4")
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("8", "1", "0")
    assert suite.get("name") == "ci" and suite.get("time") == "3.500" and suite.get("timestamp", "").startswith("2023-11-1")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["source"] == str(path) and props["kernel"] == "6.1.0" and props["cores"] == "2"
    # timing per testcase
    assert [t.get("time") for t in testcases][:3] == ["0.410", "0.000", "1.200"]


def test_a_failure_carries_the_expectation_the_packets_seen_and_the_line(tmp_path: Path) -> None:
    path, cs, report = a_run(tmp_path)
    root = parse(tmp_path, cs, report)
    failed = next(t for t in root.iter("testcase") if t.find("failure") is not None)
    failure = failed.find("failure")
    assert failure is not None and failure.text is not None
    assert failure.get("message") == "capture icmp web1 -> internet in cjd-a: FAILED at internet:eth0:"
    line = SCENARIO.splitlines().index("  - capture:") + 1
    assert failure.text.splitlines()[0] == f"{path}:{line}"
    assert "expected a packet: src web1 (10.1.0.2) dst internet (203.0.113.1) icmp  -> 0 matched" in failure.text
    assert "in  192.168.1.11 > 203.0.113.1 icmp echo-request <&>" in failure.text  # markup escaped, read back as text
    assert "\x1b" not in failure.text and "\ufffd[31m" in failure.text  # a control character XML cannot carry is replaced
    out = failed.find("system-out")
    assert out is not None and out.text is not None and out.text.startswith("capture icmp web1 -> internet in cjd-a\nFAILED")


def test_a_skipped_lab_gives_its_reason(tmp_path: Path) -> None:
    _path, cs, report = a_run(tmp_path)
    root = parse(tmp_path, cs, report)
    reasons = {s.get("message") for s in root.iter("skipped")}
    assert reasons == {"lab cjd-b was skipped: the kernel has no ipip module: modprobe ipip"}


def test_a_run_that_stopped_building_a_lab_is_an_error_at_its_entry(tmp_path: Path) -> None:
    path = scenario_file(tmp_path)
    scenario, _labs = load_scenario(path)
    report = ScenarioReport("ci", str(path), 1_700_000_000.0, {})
    lines = source_lines(path)
    cs = cases.build_cases(report, scenario, lines, {"cjd-a": lines.labs[0]}, error="cannot build cjd-a: vxlan: no such module\nmore", failed_lab="cjd-a")
    root = parse(tmp_path, cs, report)
    check_schema(root)
    (case,) = root.iter("testcase")
    error = case.find("error")
    assert case.get("classname") == "ci/cjd-a" and case.get("name") == "build lab cjd-a"
    assert error is not None and error.get("message") == "cannot build cjd-a: vxlan: no such module"
    assert error.text is not None and error.text.startswith(f"{path}:3\n")  # the lab's entry under labs:
    assert root.get("errors") == "1"


def test_an_error_on_a_step_over_two_labs_is_one_case_per_lab(tmp_path: Path) -> None:
    path = scenario_file(tmp_path)
    scenario, _labs = load_scenario(path)
    report = ScenarioReport("ci", str(path), 0.0, {})
    report.labs = [LabOutcome("cjd-a", "docker", "up"), LabOutcome("cjd-b", "docker", "up")]
    report.steps = [StepResult(0, "ping", "cjd-a,cjd-b", "ping", "error", "UsageError: no such pod", seconds=0.1)]
    cs = cases.build_cases(report, scenario)
    assert [(c.classname, c.status, c.message) for c in cs] == [("ci/cjd-a", "error", "ping: UsageError: no such pod"), ("ci/cjd-b", "error", "ping: UsageError: no such pod")]
    assert cases.counts(cs) == {"pass": 0, "fail": 0, "error": 2, "skipped": 0}


def test_http_paths_are_cases_of_their_lab(tmp_path: Path) -> None:
    _path, _cs, report = a_run(tmp_path)
    scenario, _labs = load_scenario(ROOT / "scenarios" / "north-south.yaml")
    index = next(i for i, s in enumerate(scenario.steps) if s.kind == "http")
    report.labs = [LabOutcome("ns", "vpc-native", "up")]
    report.steps = [
        StepResult(index, "http", "NodePort", "http internet -> NodePort in ns", "pass", "pods saw 10.0.1.10", {"path": "NodePort", "lab": "ns"}),
        StepResult(index, "http", "ns2: NLB ip", "http internet -> ns2: NLB ip", "fail", "pods saw none — no answer", {"path": "ns2: NLB ip", "lab": "ns2"}),
    ]
    got = [(c.classname, c.name, c.status) for c in cases.build_cases(report, scenario) if c.step == index]
    http = scenario.steps[index].spec
    assert got == [("ci/ns", f"step {index + 1}: http from {http.src}: NodePort", "pass"), ("ci/ns2", f"step {index + 1}: http from {http.src}: NLB ip", "fail")]


def test_source_lines_point_at_each_step_and_lab(tmp_path: Path) -> None:
    lines = source_lines(scenario_file(tmp_path))
    text = SCENARIO.splitlines()
    assert lines.labs == (3, 4) and text[3].strip().startswith("- file:")
    assert [text[n - 1].strip().split(":")[0] for n in lines.steps] == ["- ping", "- capture", "- rtt", "- ping"]
    assert source_lines(tmp_path / "missing.yaml").steps == ()


@pytest.mark.parametrize("seconds", [0.0, 0.0004, 12.5, 86400.25])
def test_times_match_the_schemas_pattern(seconds: float) -> None:
    assert SUREFIRE_TIME.match(junit._seconds(seconds))
