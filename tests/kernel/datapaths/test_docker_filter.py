"""Docker Engine 28.5.2's filter and raw tables, docker-proxy and hairpin NAT on a real kernel.

- routed access to a container's own address is dropped (raw PREROUTING, per container);
  its published port through the host's address is reachable;
- with the userland proxy (the default) a docker-proxy per published port answers the
  host's loopback and a container asking for its host's address, runs in the lab's cgroup
  with dockerd's argv, and goes with ``down``;
- with ``userlandProxy: false`` the same requests go through hairpin NAT instead;
- a user's DOCKER-USER rule blocks a source, and ``trace`` names the rule.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from netlab.kernel import cgroup
from netlab.model import load_topology
from tests.conftest import TOPOLOGIES, ns_run
from tests.kernel.datapaths.test_docker0 import endpoints, tcp_get, tcp_server


def cli(*argv: str) -> tuple[int, str]:
    """Run the netlab command line in this process; its exit code and what it printed."""
    from rich.console import Console

    from netlab.cli import main

    console = Console(file=io.StringIO(), width=250, color_system=None)
    code = main(list(argv), console=console)
    return code, console.file.getvalue()  # type: ignore[attr-defined]


def counter(ns: str, table: str, rule: str) -> int:
    """The packet counter of ``rule`` (as iptables -S prints it) in ``ns``'s ``table``."""
    saved = ns_run(ns, "iptables-save", "-c", "-t", table).stdout
    for line in saved.splitlines():
        match = re.fullmatch(r"\[(\d+):\d+\] (.*)", line)
        if match and match.group(2) == rule:
            return int(match.group(1))
    raise AssertionError(f"{rule!r} not in {ns}'s {table} table:\n{saved}")


def proxies(lab: str) -> list[list[str]]:
    """The argv of every docker-proxy in the lab's cgroup."""
    out = []
    for pid in cgroup.pids(lab):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(b"docker_proxy.py") for arg in argv):
            out.append([a.decode() for a in argv if a])
    return out


def test_routed_access_to_a_container_is_dropped_unless_through_a_published_port(lab_up) -> None:
    """The gateway routes 172.17.0.0/16 to host1 (as a neighbour could): a container's own
    address is dropped in raw PREROUTING; host1:8080 still reaches web."""
    from netlab.observe.trace import trace

    state = lab_up("docker0.yaml", name="fdk-route")
    eps = endpoints(state)
    gw, host1 = eps["gateway"].ns, eps["host1"].ns
    done = ns_run(gw, "ip", "route", "add", "172.17.0.0/16", "via", "192.168.1.11")
    assert done.returncode == 0, done.stderr
    raw_web = "-A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j DROP"
    with tcp_server(eps["web"].ns, "web"):
        before = counter(host1, "raw", raw_web)
        assert tcp_get(gw, "172.17.0.2", 80).startswith("error: timed out")
        assert counter(host1, "raw", raw_web) > before, "the direct-access DROP counted the SYNs"
        assert tcp_get(gw, "192.168.1.11", 8080) == "web sees 192.168.1.1"
        accept = "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
        assert counter(host1, "filter", accept) >= 1, "the published port's ACCEPT let it through"
    ping = ns_run(gw, "ping", "-c1", "-W1", "172.17.0.3")
    assert ping.returncode != 0, "the unpublished container answered a routed ping"
    t = trace(state, "gateway", "client", timeout=1.5)
    assert not t.probe.replied
    assert t.drops[0] == "host1: -t raw -A PREROUTING -d 172.17.0.3/32 ! -i docker0 -j DROP"
    assert t.verdict.endswith("dropped at host1: -t raw -A PREROUTING -d 172.17.0.3/32 ! -i docker0 -j DROP")


def test_docker_proxy_answers_the_hosts_loopback_and_its_containers(lab_up) -> None:
    state = lab_up("docker0.yaml", name="fdk-proxy")
    eps = endpoints(state)
    assert proxies("fdk-proxy") and [p[-10:] for p in proxies("fdk-proxy")] == [
        ["-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", "8080", "-container-ip", "172.17.0.2", "-container-port", "80"]
    ]
    with tcp_server(eps["web"].ns, "web"):
        # nat OUTPUT skips 127.0.0.0/8 and DOCKER skips -i docker0: the proxy connects, from docker0's address
        assert tcp_get(eps["host1"].ns, "127.0.0.1", 8080) == "web sees 172.17.0.1"
        assert tcp_get(eps["client"].ns, "192.168.1.11", 8080) == "web sees 172.17.0.1"
        assert tcp_get(eps["web"].ns, "192.168.1.11", 8080) == "web sees 172.17.0.1"
        # from outside the DNAT still wins: the container sees the real client
        assert tcp_get(eps["internet"].ns, "192.168.1.11", 8080) == "web sees 203.0.113.1"
    # nothing listens behind the proxy: the connection is accepted, then closed
    assert not tcp_get(eps["host1"].ns, "127.0.0.1", 8080).startswith("web")
    # lab_up's teardown proves the proxies are gone with the lab


def test_without_the_userland_proxy_hairpin_nat_answers_instead(lab_up) -> None:
    topology = load_topology(TOPOLOGIES / "docker0.yaml")
    topology = topology.model_copy(update={"network": topology.network.model_copy(update={"userland_proxy": False})})
    state = lab_up(topology, name="fdk-hairpin")
    eps = endpoints(state)
    host1 = eps["host1"].ns
    assert proxies("fdk-hairpin") == []
    assert ns_run(host1, "sysctl", "-n", "net.ipv4.conf.docker0.route_localnet").stdout.strip() == "1"
    assert "hairpin on" in ns_run(host1, "bridge", "-d", "link", "show").stdout
    with tcp_server(eps["web"].ns, "web"):
        # OUTPUT DNAT without "! -d 127.0.0.0/8"; route_localnet lets 127.0.0.1 leave; MASQ LOCAL HOST
        assert tcp_get(host1, "127.0.0.1", 8080) == "web sees 172.17.0.1"
        # a container reaching itself: DNAT back out of its own bridge port (hairpin), masqueraded
        masq = "-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE"
        before = counter(host1, "nat", masq)
        assert tcp_get(eps["web"].ns, "192.168.1.11", 8080) == "web sees 172.17.0.1"
        assert counter(host1, "nat", masq) == before + 1
        assert tcp_get(eps["internet"].ns, "192.168.1.11", 8080) == "web sees 203.0.113.1"


def test_a_docker_user_rule_blocks_a_source_and_trace_names_it(lab_up) -> None:
    from netlab.observe.trace import trace

    state = lab_up("docker0.yaml", name="fdk-user")
    eps = endpoints(state)
    host1 = eps["host1"].ns
    assert cli("exec", "fdk-user", "host1", "--", "iptables", "-I", "DOCKER-USER", "-s", "203.0.113.1", "-j", "DROP")[0] == 0
    assert "-A DOCKER-USER -s 203.0.113.1/32 -j DROP" in ns_run(host1, "iptables", "-S", "DOCKER-USER").stdout
    with tcp_server(eps["web"].ns, "web"):
        assert tcp_get(eps["internet"].ns, "192.168.1.11", 8080).startswith("error: timed out")
        assert tcp_get(eps["gateway"].ns, "192.168.1.11", 8080) == "web sees 192.168.1.1", "only that source is blocked"
    t = trace(state, "internet", "host1", proto="tcp", port=8080, timeout=1.5)
    assert not t.probe.replied
    assert t.drops == ["host1: -A DOCKER-USER -s 203.0.113.1/32 -j DROP"]
    assert t.verdict.endswith(", dropped at host1: -A DOCKER-USER -s 203.0.113.1/32 -j DROP")
    assert t.as_dict()["dropped_by"] == t.drops
    _code, out = cli("trace", "fdk-user", "internet", "host1", "--proto", "tcp", "--port", "8080", "--timeout", "1.5")
    assert "dropped at host1: -A DOCKER-USER -s 203.0.113.1/32 -j DROP" in out


UDP_ECHO = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
s.settimeout(30)
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data + b" from " + peer[0].encode(), peer)
"""
UDP_ASK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
print(s.recv(2048).decode())
"""


def test_docker_proxy_relays_udp(lab_up) -> None:
    import subprocess
    import sys

    from netlab.model import parse_topology

    topology = parse_topology(
        "name: fdk-udp\nnetwork: {cni: docker0}\nnodes:\n  - name: host1\n    pods:\n"
        "      - {name: dns, ports: ['5353:53/udp']}\n      - {name: client}\n",
        "t.yaml",
    )
    state = lab_up(topology)
    eps = endpoints(state)
    assert [p[-10:] for p in proxies("fdk-udp")] == [
        ["-proto", "udp", "-host-ip", "0.0.0.0", "-host-port", "5353", "-container-ip", "172.17.0.2", "-container-port", "53"]
    ]
    server = subprocess.Popen(["ip", "netns", "exec", eps["dns"].ns, sys.executable, "-c", UDP_ECHO],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        ask = ns_run(eps["host1"].ns, sys.executable, "-c", UDP_ASK, "127.0.0.1", "5353")
        assert ask.stdout.strip() == "hi from 172.17.0.1", ask.stderr
        ask = ns_run(eps["client"].ns, sys.executable, "-c", UDP_ASK, "192.168.1.11", "5353")
        assert ask.stdout.strip() == "hi from 172.17.0.1", ask.stderr
    finally:
        server.kill()
        server.wait(5)
