"""Experiment 2 on a real kernel: two Docker hosts on one LAN, both containers 172.17.0.2.

Each container reaches its own host and the internet (as its host's address); a published
port crosses hosts; but 172.17.0.2 always means the local container, so a container on
host1 can never reach host2's: its packets for 172.17.0.2 never leave host1.
"""

from __future__ import annotations

from netlab.observe.capture import capture
from tests.conftest import ns_run
from tests.kernel.datapaths.test_docker0 import endpoints, tcp_get, tcp_server


def test_containers_reach_their_host_and_the_internet_as_their_host(lab_up) -> None:
    state = lab_up("docker-2hosts.yaml", name="t2-2hosts")
    eps = endpoints(state)
    for pod, host_ip in (("web1", "192.168.1.11"), ("web2", "192.168.1.12")):
        ns = eps[pod].ns
        for target in ("172.17.0.1", host_ip):  # own host: its docker0 and its LAN address
            ping = ns_run(ns, "ping", "-c1", "-W2", target)
            assert ping.returncode == 0, f"{pod} -> {target}: {ping.stdout}{ping.stderr}"
        with capture(eps["internet"].ns, "eth0", bpf="icmp", count=2, timeout=5) as seen:
            ping = ns_run(ns, "ping", "-c1", "-W2", "203.0.113.1")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        requests = [p for p in seen.packets if p["ICMP"].type == 8]
        assert requests and {p["IP"].src for p in requests} == {host_ip}, f"{pod} must appear as its host {host_ip}"


def test_published_port_crosses_hosts(lab_up) -> None:
    """host2 -> host1:8080 reaches web1 (host1's container), never web2."""
    state = lab_up("docker-2hosts.yaml", name="t2-2hosts")
    eps = endpoints(state)
    with tcp_server(eps["web1"].ns, "web1"), tcp_server(eps["web2"].ns, "web2"):
        assert tcp_get(eps["host2"].ns, "192.168.1.11", 8080) == "web1 sees 192.168.1.12"
        assert tcp_get(eps["host1"].ns, "192.168.1.12", 8080) == "web2 sees 192.168.1.11"
        assert tcp_get(eps["web2"].ns, "192.168.1.11", 8080) == "web1 sees 192.168.1.12"  # web2 SNATed to host2
        assert tcp_get(eps["internet"].ns, "192.168.1.12", 8080) == "web2 sees 203.0.113.1"


def test_172_17_0_2_is_always_the_local_container(lab_up) -> None:
    """From host1 (and its container) 172.17.0.2 is web1; nothing for it ever reaches the LAN."""
    state = lab_up("docker-2hosts.yaml", name="t2-2hosts")
    eps = endpoints(state)
    underlay = eps["underlay"].ns
    with tcp_server(eps["web1"].ns, "web1"), tcp_server(eps["web2"].ns, "web2"):
        # everything leaving host1 passes its port on the underlay bridge
        with capture(underlay, "host1-eth0", bpf="ip", timeout=4) as seen:
            assert tcp_get(eps["web1"].ns, "172.17.0.2", 80) == "web1 sees 172.17.0.2"  # itself
            assert tcp_get(eps["host1"].ns, "172.17.0.2", 80) == "web1 sees 172.17.0.1"  # its host's container
            ping = ns_run(eps["web1"].ns, "ping", "-c2", "-W1", "-i0.2", "172.17.0.2")
            assert ping.returncode == 0
            control = ns_run(eps["web1"].ns, "ping", "-c1", "-W2", "203.0.113.1")  # proves the capture sees host1's traffic
            assert control.returncode == 0
        ips = [(p["IP"].src, p["IP"].dst) for p in seen.packets]
        assert ("192.168.1.11", "203.0.113.1") in ips, f"capture on host1-eth0 saw nothing: {ips}"
        assert not [pair for pair in ips if "172.17.0.2" in pair], f"172.17.0.2 traffic left host1: {ips}"
        assert tcp_get(eps["host2"].ns, "172.17.0.2", 80) == "web2 sees 172.17.0.1"  # and host2's is its own
