"""`netlab run` on a real kernel: a passing scenario, a failing expectation, teardown always."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from netlab import cli
from netlab.kernel import netns
from tests.conftest import ROOT, assert_host_unchanged, host_snapshot, interruptible, lab_leftovers


def scenario(tmp_path: Path, lab: str, steps: str) -> Path:
    topo = tmp_path / "topo.yaml"
    topo.write_text((ROOT / "topologies" / "docker-2hosts.yaml").read_text().replace("name: docker-2hosts", f"name: {lab}"))
    path = tmp_path / "scenario.yaml"
    path.write_text(f"name: test\nlabs: [{{file: {topo}}}]\nsteps:\n{steps}")
    return path


def run(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = cli.main(list(argv), console=Console(file=buf, width=200))
    return code, buf.getvalue()


def test_docker_multihost_scenario_passes_and_leaves_nothing(root: None, tmp_path: Path) -> None:
    before = host_snapshot()
    text = (ROOT / "scenarios" / "docker-multihost.yaml").read_text()
    topo = tmp_path / "topo.yaml"
    topo.write_text((ROOT / "topologies" / "docker-2hosts.yaml").read_text().replace("name: docker-2hosts", "name: t5-dm"))
    path = tmp_path / "dm.yaml"
    path.write_text(text.replace("../topologies/docker-2hosts.yaml", str(topo)))
    code, out = run("run", str(path), "-o", str(tmp_path / "out"))
    assert code == 0, out
    assert "PASSED" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["passed"] and {s["kind"] for s in report["steps"]} == {"ping", "capture"}
    assert list((tmp_path / "out").glob("*.pcap")), "capture steps keep one pcap per point"
    assert lab_leftovers("t5-dm") == []
    assert_host_unchanged(before)


def test_failing_expectation_exits_1_and_shows_what_was_seen(root: None, tmp_path: Path) -> None:
    before = host_snapshot()
    steps = (
        "  - capture:\n"
        "      probe: {from: web1, to: internet, count: 1}\n"
        "      expect:\n"
        "        - at: internet:eth0\n"
        "          packet: {src: web1, dst: internet, proto: icmp}\n"  # wrong: SNAT hides web1
    )
    code, out = run("run", str(scenario(tmp_path, "t5-fail", steps)))
    assert code == 1, out
    assert "FAILED" in out and "seen there" in out and "192.168.1.11 > 203.0.113.1" in out
    assert lab_leftovers("t5-fail") == []
    assert_host_unchanged(before)


def test_measurements_and_rate_impairment(root: None, tmp_path: Path) -> None:
    before = host_snapshot()
    steps = (
        "  - rtt: {from: web1, to: host2, baseline: {from: host1, to: host2}, samples: 300, warmup: 20}\n"
        "  - impair: {at: host1:eth0, rate: 50mbit}\n"
        "  - throughput: {from: web1, to: host2, seconds: 1, streams: [1]}\n"
        "  - impair: {at: host1:eth0, clear: true}\n"
    )
    code, out = run("run", str(scenario(tmp_path, "t5-meas", steps)), "--json")
    assert code == 0, out
    report = json.loads(out)
    rtt = [s for s in report["steps"] if s["kind"] == "rtt"]
    assert [s["data"]["stats"]["n"] for s in rtt] == [300, 300]
    assert "vs_baseline" in rtt[1]["data"]
    gbps = next(s for s in report["steps"] if s["kind"] == "throughput")["data"]["gbps"]["1"]
    assert 0.02 < gbps < 0.06, f"a 50mbit tbf must cap throughput, got {gbps} Gbit/s"
    assert lab_leftovers("t5-meas") == []
    assert_host_unchanged(before)


def test_ctrl_c_during_a_run_tears_every_lab_down(root: None, tmp_path: Path) -> None:
    before = host_snapshot()
    steps = "  - rtt: {from: web1, to: host2, samples: 100000, interval: 0.001}\n"
    path = scenario(tmp_path, "t5-int", steps)
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "netlab.cli", "run", str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=interruptible)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(n.startswith("t5-int-") for n in netns.list_names()):
        time.sleep(0.1)
    time.sleep(2)  # inside the rtt step
    assert any(n.startswith("t5-int-") for n in netns.list_names()), "the lab never came up"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    assert lab_leftovers("t5-int") == []
    assert_host_unchanged(before)
