"""Experiment 1 on a real kernel: docker0, SNAT to the internet, direct L2 between containers,
a published port DNATed to a container."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import ns_run

# A tiny TCP server: answers every connection with "<name> sees <peer address>".
SERVER = r"""
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(16)
srv.settimeout(60)
print("ready", flush=True)
while True:
    try:
        conn, peer = srv.accept()
    except socket.timeout:
        break
    conn.sendall(f"{name} sees {peer[0]}\n".encode())
    conn.close()
"""
CLIENT = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
        print(s.makefile().readline().strip())
except OSError as e:
    print(f"error: {e}")
    sys.exit(1)
"""


@contextmanager
def tcp_server(ns: str, name: str, port: int = 80) -> Iterator[subprocess.Popen[str]]:
    """Run SERVER inside namespace ``ns`` for the block; always stopped afterwards."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, name, str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "ready", f"server in {ns} did not start: {line} {proc.stderr.read() if proc.stderr else ''}"
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


def tcp_get(ns: str, host: str, port: int) -> str:
    """Connect from namespace ``ns``; return the server's line (or 'error: ...')."""
    return ns_run(ns, sys.executable, "-c", CLIENT, host, str(port)).stdout.strip()


def endpoints(state: object) -> dict[str, object]:
    return {e.name: e for e in state.host_objects()}  # type: ignore[attr-defined]


def test_container_reaches_internet_through_snat(lab_up) -> None:
    from netlab.observe.capture import capture

    state = lab_up("docker0.yaml", name="t2-docker0")
    eps = endpoints(state)
    with capture(eps["internet"].ns, "eth0", bpf="icmp", count=2, timeout=5) as seen:
        ping = ns_run(eps["client"].ns, "ping", "-c1", "-W2", "203.0.113.1")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    requests = [p for p in seen.packets if p["ICMP"].type == 8]
    assert requests, "no echo request reached the internet host"
    assert {p["IP"].src for p in requests} == {"192.168.1.11"}, "source must be the host's address (MASQUERADE)"


def test_containers_talk_directly_over_docker0(lab_up) -> None:
    """client -> web: same L2 segment, so the frame arrives from client's own MAC and IP (no routing, no NAT)."""
    from netlab.observe.capture import capture

    state = lab_up("docker0.yaml", name="t2-docker0")
    eps = endpoints(state)
    with capture(eps["web"].ns, "eth0", bpf="icmp", count=2, timeout=5) as seen:
        ping = ns_run(eps["client"].ns, "ping", "-c1", "-W2", "172.17.0.2")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    requests = [p for p in seen.packets if p["ICMP"].type == 8]
    replies = [p for p in seen.packets if p["ICMP"].type == 0]
    assert requests and replies
    assert (requests[0]["IP"].src, requests[0]["IP"].dst) == ("172.17.0.3", "172.17.0.2")
    assert (requests[0]["Ether"].src, requests[0]["Ether"].dst) == ("02:42:ac:11:00:03", "02:42:ac:11:00:02")
    assert requests[0]["IP"].ttl == 64, "one L2 hop: nothing routed it"


def test_published_port_is_dnated_to_the_container(lab_up) -> None:
    """internet -> host1:8080 reaches web:80; the container sees the real client (DNAT only, no SNAT)."""
    from netlab.observe.capture import capture

    state = lab_up("docker0.yaml", name="t2-docker0")
    eps = endpoints(state)
    with tcp_server(eps["web"].ns, "web"):
        with capture(eps["web"].ns, "eth0", bpf="tcp port 80 and tcp[tcpflags] & tcp-syn != 0", count=2, timeout=5) as seen:
            answer = tcp_get(eps["internet"].ns, "192.168.1.11", 8080)
        assert answer == "web sees 203.0.113.1"
        syn = [p for p in seen.packets if p["TCP"].flags == "S"]
        assert syn and (syn[0]["IP"].src, syn[0]["IP"].dst, syn[0]["TCP"].dport) == ("203.0.113.1", "172.17.0.2", 80)
        # from the host itself too (OUTPUT chain), and nothing listens on 8080 anywhere else
        assert tcp_get(eps["host1"].ns, "192.168.1.11", 8080) == "web sees 192.168.1.11"
        assert tcp_get(eps["internet"].ns, "192.168.1.11", 8081).startswith("error: [Errno 111]")


def test_the_printed_plan_pasted_into_a_shell_builds_the_same_lab(lab_up, tmp_path) -> None:
    """`netlab plan` is a tutorial: its commands, run by bash, give the lab netlab builds."""
    from netlab.datapaths import make_plan
    from netlab.kernel import inspect
    from netlab.model import load_topology
    from tests.conftest import TOPOLOGIES

    pasted = make_plan(load_topology(TOPOLOGIES / "docker0.yaml").model_copy(update={"name": "t2-paste"}))
    script = tmp_path / "plan.sh"
    script.write_text("set -e\n" + pasted.render())
    try:
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        state = lab_up("docker0.yaml", name="t2-docker0")

        def view(lab: str, ns: str) -> tuple[object, ...]:
            interfaces, routes = inspect.inspect_namespace(f"{lab}-{ns}")
            return (
                sorted((i.name, i.kind, i.mtu, i.master, tuple(i.addresses), i.mac if i.mac.startswith("02:42") else "")
                       for i in interfaces),
                sorted(str(r) for r in routes),
            )

        for ns in ("underlay", "host1", "gateway", "internet", "web", "client"):
            assert view("t2-paste", ns) == view("t2-docker0", ns), ns
        nat = ns_run("t2-paste-host1", "iptables-save", "-t", "nat").stdout
        assert "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80" in nat
        ping = ns_run("t2-paste-client", "ping", "-c1", "-W2", "203.0.113.1")
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert endpoints(state)["client"].ns == "t2-docker0-client"
    finally:
        for ns in pasted.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    from netlab.kernel import netns

    assert not [n for n in netns.list_names() if n.startswith("t2-paste-")]
