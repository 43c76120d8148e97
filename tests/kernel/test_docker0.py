"""Experiment 1 on a real kernel: docker0, SNAT to the internet, a published port."""

from __future__ import annotations

from tests.conftest import ns_run


def test_container_reaches_internet_through_snat(lab_up) -> None:
    from netlab.capture import capture

    state = lab_up("docker0.yaml", name="t2-docker0")
    eps = {e.name: e for e in state.endpoint_objects()}
    with capture(eps["internet"].ns, "eth0", bpf="icmp", count=2, timeout=5) as seen:
        ping = ns_run(eps["client"].ns, "ping", "-c1", "-W2", "203.0.113.1")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    requests = [p for p in seen.packets if p["ICMP"].type == 8]
    assert requests, "no echo request reached the internet host"
    assert {p["IP"].src for p in requests} == {"192.168.1.11"}, "source must be the host's address (MASQUERADE)"
