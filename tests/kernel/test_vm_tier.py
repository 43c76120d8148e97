"""The VM tier's own proof: features this kernel may lack work in a lab, wherever they run.

Each test names the kernel features it needs. On a kernel that has them (a CI runner with
the modules loaded) they run here; on one that lacks them they run inside the stock-kernel
VM (netlab/testing/vmtier.py) and their results come back into this session's report.
"""

from __future__ import annotations

import io
import json
import re
import subprocess

import pytest
from rich.console import Console

from tests.conftest import ns_run


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.stdout}{done.stderr}"
    return done.stdout


def _rtts(ping_output: str) -> list[float]:
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", ping_output)]


@pytest.mark.requires("ipip")
def test_ipip_tunnel_carries_traffic_between_lab_nodes(lab_up) -> None:
    from netlab.observe.capture import capture

    state = lab_up("docker-2hosts.yaml", name="t6-vm-ipip")
    eps = {e.name: e for e in state.host_objects()}
    h1, h2 = eps["host1"], eps["host2"]
    for me, peer, mine, theirs in ((h1, h2, "10.99.0.1", "10.99.0.2"), (h2, h1, "10.99.0.2", "10.99.0.1")):
        _ok(ns_run(me.ns, "ip", "link", "add", "tun-t6", "type", "ipip", "local", str(me.ip), "remote", str(peer.ip)))
        _ok(ns_run(me.ns, "ip", "addr", "add", f"{mine}/32", "dev", "tun-t6"))
        _ok(ns_run(me.ns, "ip", "link", "set", "tun-t6", "up"))
        _ok(ns_run(me.ns, "ip", "route", "add", f"{theirs}/32", "dev", "tun-t6", "src", mine))

    with capture(h2.ns, "eth0", bpf="ip proto 4", count=2, timeout=10) as seen:
        ping = ns_run(h1.ns, "ping", "-c1", "-W5", "10.99.0.2")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert seen.packets, "no IP-in-IP packet on host2's eth0"
    outer = {(p["IP"].src, p["IP"].dst, p["IP"].proto) for p in seen.packets}
    assert outer == {("192.168.1.11", "192.168.1.12", 4), ("192.168.1.12", "192.168.1.11", 4)}
    inner = {(p.getlayer("IP", nb=2).src, p.getlayer("IP", nb=2).dst) for p in seen.packets}
    assert inner == {("10.99.0.1", "10.99.0.2"), ("10.99.0.2", "10.99.0.1")}, "the inner packets are the ping's"


@pytest.mark.requires("netem")
def test_netem_delay_on_a_lab_interface(lab_up) -> None:
    state = lab_up("docker0.yaml", name="t6-vm-netem")
    eps = {e.name: e for e in state.host_objects()}
    host, gateway = eps["host1"], eps["gateway"]

    before = _rtts(_ok(ns_run(host.ns, "ping", "-c3", "-i0.2", "-W5", str(gateway.ip))))
    _ok(ns_run(host.ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "150ms"))
    assert "netem" in _ok(ns_run(host.ns, "tc", "qdisc", "show", "dev", "eth0"))
    after = _rtts(_ok(ns_run(host.ns, "ping", "-c3", "-i0.2", "-W5", str(gateway.ip))))

    assert len(before) == 3 and len(after) == 3
    assert min(after) >= 150, f"netem's 150 ms delay is not in the round trips: {after}"
    assert min(after) - min(before) >= 140, f"before {before}, after {after}"


@pytest.mark.requires("ipip", "netem", "ipvs")
def test_doctor_reports_the_full_kernel_features(root) -> None:
    from netlab.cli import main

    out = io.StringIO()
    code = main(["doctor", "--json"], console=Console(file=out, width=200))
    assert code in (0, 1), out.getvalue()  # 1: an optional tool is missing
    checks = {c["name"]: c for c in json.loads(out.getvalue())}
    for feature in ("ipip", "netem", "ipvs", "vxlan", "tbf"):
        assert checks[feature]["ok"], f"{feature}: {checks[feature]['detail']}"
