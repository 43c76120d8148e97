"""Captures on a real kernel: pcaps tcpdump opens, clean stops (also Ctrl-C), expectations."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, interruptible, ns_run


def fds() -> frozenset[str]:
    """Open descriptors as 'number->target', after a collection so garbage is not counted."""
    gc.collect()
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass  # listdir's own descriptor, closed by now
    return frozenset(out)


def leaked(before: frozenset[str]) -> set[str]:
    """Descriptors opened since ``before`` and still open (ones closed meanwhile are fine)."""
    return set(fds() - before)


def lab_view(state: object) -> object:
    """What a capture must not change: every namespace's interfaces, addresses and routes.

    (Operational state is left out: it settles on its own just after a lab is built.)
    """
    from netlab.observe import status

    return [
        (v.ns, [(i.name, i.kind, i.mtu, i.mac, i.master, i.addresses) for i in v.interfaces], v.routes)
        for v in status.collect(state)  # type: ignore[arg-type]
    ]


def tcpdump(path: Path) -> str:
    done = subprocess.run(["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pcap_opens_with_tcpdump_and_filter_and_count_bound(lab_up, tmp_path: Path) -> None:
    from netlab.observe.capture import capture

    state = lab_up("docker0.yaml", name="t4-cap")
    eps = {e.name: e for e in state.host_objects()}
    threads, files, view = len(threading.enumerate()), fds(), lab_view(state)
    started = time.monotonic()
    with capture(eps["host1"].ns, "eth0", bpf="icmp", count=2, timeout=10) as cap:
        ping = ns_run(eps["client"].ns, "ping", "-c3", "-i0.2", "-W2", "203.0.113.1")
    assert ping.returncode == 0, ping.stdout
    assert time.monotonic() - started < 5, "count=2 must stop the capture early, not at the timeout"
    assert len(cap.packets) == 2
    assert all(p.haslayer("ICMP") for p in cap.packets), "the BPF filter lets only ICMP through"
    request = next(f for f in cap.frames if f.outgoing)
    assert request["IP"].src == "192.168.1.11" and request["IP"].dst == "203.0.113.1"
    path = tmp_path / "host1-eth0.pcap"
    cap.write(str(path))
    text = tcpdump(path)
    assert "192.168.1.11 > 203.0.113.1: ICMP echo request" in text
    assert "203.0.113.1 > 192.168.1.11: ICMP echo reply" in text
    assert len(threading.enumerate()) == threads and not leaked(files), leaked(files)
    assert lab_view(state) == view


def test_timeout_bound_and_keyboard_interrupt_leave_nothing_running(lab_up) -> None:
    from netlab.observe.capture import capture

    state = lab_up("docker0.yaml", name="t4-capint")
    eps = {e.name: e for e in state.host_objects()}
    threads, files, view = len(threading.enumerate()), fds(), lab_view(state)
    started = time.monotonic()
    with capture(eps["internet"].ns, "eth0", bpf="udp port 9", timeout=0.5) as cap:
        pass
    assert 0.4 < time.monotonic() - started < 3 and cap.packets == []
    with pytest.raises(KeyboardInterrupt):
        with capture(eps["internet"].ns, "eth0", timeout=30) as cap:
            ns_run(eps["client"].ns, "ping", "-c1", "-W2", "203.0.113.1")
            raise KeyboardInterrupt
    assert cap.done and cap._socket is None
    assert any(f.packet.haslayer("ICMP") for f in cap.frames), "frames seen before Ctrl-C are kept"
    assert len(threading.enumerate()) == threads and not leaked(files), leaked(files)
    assert lab_view(state) == view


def test_netlab_capture_cli_stops_cleanly_on_sigint(lab_up, tmp_path: Path) -> None:
    state = lab_up("docker0.yaml", name="t4-capcli")
    eps = {e.name: e for e in state.host_objects()}
    view = lab_view(state)
    pcap = tmp_path / "out.pcap"
    from netlab.kernel import netns

    running = [p for ns in state.namespaces for p in netns.pids_in(ns)]  # the lab's own (docker-proxy)
    argv = [sys.executable, "-m", "netlab.cli", "capture", state.lab, "host1:eth0", "--filter", "icmp", "-w", str(pcap)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, COLUMNS="200"),
                            preexec_fn=interruptible)
    try:
        assert proc.stdout is not None
        assert "capturing on host1:eth0" in proc.stdout.readline()
        ping = ns_run(eps["client"].ns, "ping", "-c2", "-i0.2", "-W2", "203.0.113.1")
        assert ping.returncode == 0
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "192.168.1.11 > 203.0.113.1 icmp echo-request" in out
    assert "4 packet(s) captured on host1:eth0 (interrupted), written to" in out
    assert tcpdump(pcap).count("ICMP echo") == 4
    assert [p for ns in state.namespaces for p in netns.pids_in(ns)] == running, "no process left in the lab"
    assert lab_view(state) == view


def test_expectations_on_a_real_capture_pass_and_fail_with_the_packets_seen(lab_up) -> None:
    from netlab.observe.expect import ExpectationFailed, load_expectations, watching

    state = lab_up("docker0.yaml", name="t4-expect")
    eps = {e.name: e for e in state.host_objects()}
    threads, files = len(threading.enumerate()), fds()
    good = load_expectations(
        [
            {"at": "internet:eth0", "packet": {"src": "host1", "dst": "internet", "proto": "icmp", "direction": "in"}, "absent": {"src": "client"}},
            {"at": "client:eth0", "packet": {"src": "client", "dst": "internet", "ttl": 64, "encap": "none"}},
        ]
    )
    with watching(state, good, timeout=10) as watch:
        ns_run(eps["client"].ns, "ping", "-c1", "-W2", "203.0.113.1")
    assert watch.ok, "\n".join(r.message for r in watch.results)
    # negative: the pod's own address must NOT reach the internet; claiming it does fails
    bad = load_expectations([{"at": "internet:eth0", "packet": {"src": "client"}, "absent": {"src": "host1"}}])
    with watching(state, bad, timeout=10) as watch:
        ns_run(eps["client"].ns, "ping", "-c1", "-W2", "203.0.113.1")
    assert not watch.ok
    with pytest.raises(ExpectationFailed) as info:
        watch.raise_for_failures()
    text = str(info.value)
    assert "FAILED at internet:eth0" in text
    assert "expected a packet: src=client(172.17.0.3)  -> 0 matched" in text
    assert "expected no packet: src=host1(192.168.1.11)  -> 1 matched" in text
    assert "in  192.168.1.11 > 203.0.113.1 icmp echo-request" in text, "the message shows the packets actually seen"
    assert "out 203.0.113.1 > 192.168.1.11 icmp echo-reply" in text
    assert len(threading.enumerate()) == threads and not leaked(files), leaked(files)
