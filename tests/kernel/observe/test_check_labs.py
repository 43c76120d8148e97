"""netlab check on real labs: all green on a pod network, docker's cross-host path blocked, a
broken path turns the check red (exit 1)."""

from __future__ import annotations

import io
import json

from rich.console import Console

from netlab.cli import main
from tests.conftest import ns_run


def run_cli(*argv: str) -> tuple[int, str]:
    console = Console(file=io.StringIO(), width=250, color_system=None)
    code = main(list(argv), console=console)
    return code, console.file.getvalue()  # type: ignore[attr-defined]


def test_check_pod_network_all_green(lab_up) -> None:
    lab_up("flannel-vxlan.yaml", name="t3-chk")
    code, out = run_cli("check", "t3-chk")
    assert code == 0, out
    assert "pod → pod, cross node" in out and "hostNetwork pod → pod, cross node" in out
    assert "all " in out and "paths as expected" in out
    code, out = run_cli("check", "t3-chk", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True
    pairs = {(r["src"], r["dst"]): r for r in data["results"]}
    assert pairs[("web-1", "db")]["reached"] and pairs[("web-1", "db")]["rtt_ms"] is not None
    assert pairs[("kube-proxy-1", "web-2")]["category"] == "hostNetwork pod → pod, cross node"


def test_check_docker_cross_host_must_fail(lab_up) -> None:
    lab_up("docker-2hosts.yaml", name="t3-chkd")
    code, out = run_cli("check", "t3-chkd", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"], out
    cross = [r for r in data["results"] if r["expect"] is False]
    assert {(r["src"], r["dst"]) for r in cross} == {("web1", "web2"), ("web2", "web1"), ("host1", "web2"), ("host2", "web1")}
    assert all(not r["reached"] for r in cross)
    # web1 pinging 172.17.0.2 gets an answer from itself: the check sees that it is not web2
    assert "not by web2" in next(r["detail"] for r in cross if (r["src"], r["dst"]) == ("web1", "web2"))


def test_check_fails_when_a_path_breaks(lab_up) -> None:
    state = lab_up("host-gw.yaml", name="t3-chkb")
    node1 = next(e for e in state.host_objects() if e.name == "node1")
    # break node1's route to node2's pods (inside the lab's own namespace)
    assert ns_run(node1.ns, "ip", "route", "del", "10.244.2.0/24").returncode == 0
    code, out = run_cli("check", "t3-chkb")
    assert code == 1
    assert "✗ web-1 → web-2 (10.244.2.2) should reach it: no reply" in out
    assert "not as expected" in out
