"""The public API on a real lab: the README's snippet, step by step, with what it observes.

Labs go through ``netlab.up`` itself (not ``lab_up``), so this test checks what ``lab_up``
would: after the ``with`` block nothing of the lab is left and the host is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import netlab
from netlab.errors import ExpectationFailed, LabNotFound, UsageError
from netlab.state import LabState
from tests.conftest import TOPOLOGIES, lab_leftovers


def test_the_readme_snippet_builds_probes_and_tears_down(root: None, host_guard: None, tmp_path: Path) -> None:
    with netlab.up(TOPOLOGIES / "flannel-vxlan.yaml", name="apl-api") as lab:
        assert LabState.load("apl-api") is not None and netlab.attach("apl-api").name == "apl-api"
        web2 = next(h for h in lab.state.host_objects() if h.name == "web-2")
        done = lab.exec("client", ["ping", "-c1", "-W2", str(web2.ip)])
        assert done.returncode == 0 and "1 received" in done.stdout, done.stdout + done.stderr
        t = lab.trace("client", "web-2")
        assert t.replied and t.encapsulation == "vxlan" and not t.nat, t.text()
        assert lab.last_trace is t and "echo-request" in t.text()
        with lab.capture("node2:eth0", bpf="udp port 8472") as cap:
            lab.exec("client", ["ping", "-c1", "-W2", str(web2.ip)])
        assert cap.packets and cap.packets[0]["VXLAN"].vni == 1
        assert {p["IP"].dst for p in cap.packets if p["IP"].src == "192.168.1.11"} == {"192.168.1.12"}
        cap.write(str(tmp_path / "vxlan.pcap"))
        assert (tmp_path / "vxlan.pcap").stat().st_size > 24
        report = lab.check()
        assert report.raise_for_failures() is report and report.ok and len(report.results) > 0
        status = lab.status()
        assert status["lab"] == "apl-api" and any(v["ns"] == "apl-api-node1" and v["present"] for v in status["namespaces"])
        with pytest.raises(UsageError, match="no node or pod named 'nobody'"):
            lab.exec("nobody", ["true"])
    assert LabState.load("apl-api") is None and lab_leftovers("apl-api") == []
    with pytest.raises(LabNotFound):
        netlab.attach("apl-api")


def test_an_error_inside_the_block_still_tears_down_and_a_failing_check_says_why(root: None, host_guard: None) -> None:
    topology = {
        "name": "apl-api2", "network": {"cni": "docker0", "internet": "203.0.113.0/24"},
        "nodes": [{"name": "host1", "pods": [{"name": "web"}, {"name": "client"}]}],
    }
    with pytest.raises(ExpectationFailed) as info:
        with netlab.up(topology) as lab:
            # break the bridge: pods on docker0 no longer reach each other or anything else
            assert lab.exec("host1", ["ip", "link", "set", "docker0", "down"]).returncode == 0
            lab.check().raise_for_failures()
    assert "lab apl-api2" in str(info.value) and "client -> web" in str(info.value) and "no reply" in str(info.value)
    assert LabState.load("apl-api2") is None and lab_leftovers("apl-api2") == []
