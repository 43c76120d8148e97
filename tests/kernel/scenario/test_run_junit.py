"""`netlab run --junit` on a real kernel: a passing and a failing testcase, read back from the file."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from netlab import cli
from tests.conftest import ROOT, assert_host_unchanged, host_snapshot, lab_leftovers

STEPS = (
    "  - ping: {from: web1, to: host2}\n"
    "  - capture:\n"
    "      probe: {from: web1, to: internet, count: 1}\n"
    "      expect:\n"
    "        - at: internet:eth0\n"
    "          packet: {src: web1, dst: internet, proto: icmp}\n"  # wrong: SNAT hides web1 behind host1
)


def test_junit_has_the_passing_ping_and_the_failing_capture_with_its_packets(root: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    before = host_snapshot()
    topo = tmp_path / "topo.yaml"
    topo.write_text((ROOT / "topologies" / "docker-2hosts.yaml").read_text().replace("name: docker-2hosts", "name: cjd-ju"))
    path = tmp_path / "junit-run.yaml"
    path.write_text(f"name: ju\nlabs: [{{file: {topo}}}]\nsteps:\n{STEPS}")
    buf = io.StringIO()
    code = cli.main(["run", str(path), "--junit", str(tmp_path / "junit.xml")], console=Console(file=buf, width=200))
    out = buf.getvalue()
    assert code == 1, out
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    ping, capture = suite.findall("testcase")
    assert (ping.get("classname"), ping.get("name")) == ("ju/cjd-ju", "step 1: ping web1 -> host2")
    assert ping.find("failure") is None and float(ping.get("time", "0")) > 0
    out_text = ping.findtext("system-out") or ""
    assert "replies" in out_text
    failure = capture.find("failure")
    assert capture.get("name") == "step 2: capture icmp web1 -> internet" and failure is not None
    text = failure.text or ""
    assert text.startswith(f"{path}:5\n")  # the step's line in the scenario file
    assert "FAILED at internet:eth0" in text and "192.168.1.11 > 203.0.113.1" in text, text  # the packet seen: SNATed to host1
    # and the same failure as a GitHub annotation at that line
    assert any(line.startswith("::error ") and ",line=5," in line and "192.168.1.11 > 203.0.113.1" in line for line in out.splitlines()), out
    assert lab_leftovers("cjd-ju") == []
    assert_host_unchanged(before)
