"""kube-proxy's details that change what a user sees, on real labs (issue 13, points 1 and 4).

- hairpin: a pod reaching itself through its own Service gets answers from itself, in every
  pod network (Flannel's cni0 ports have hairpin mode on; routed CNIs need none) and in both
  proxy modes (IPVS: kube-proxy's KUBE-LOOP-BACK ipset masquerade);
- localhost NodePorts: ``curl 127.0.0.1:<nodePort>`` inside a node answers (route_localnet=1,
  KUBE-FIREWALL keeps other hosts from using it);
- ``KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP`` drops (its counter goes up);
- UDP: when an endpoint goes away, its conntrack entries are deleted, so a client's next
  datagram reaches a live endpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from netlab import lab
from netlab.kernel import conntrack, ipset, netns
from netlab.model import Topology, parse_topology
from netlab.services import cluster
from netlab.services.processes import program
from netlab.state import LabState

PODNETS: dict[str, dict[str, Any]] = {
    "host-gw": {"cni": "host-gw", "podCIDR": "10.244.0.0/16"},
    "vxlan": {"cni": "vxlan", "podCIDR": "10.244.0.0/16"},
    # Calico's hairpin does not depend on its encapsulation: BGP-only runs without the ipip module
    "calico": {"cni": "calico", "calico": {"ipipMode": "Never"}, "podCIDR": "10.244.0.0/16"},
    "vpc-native": {"cni": "vpc-native", "externalSNAT": False},
}


def topology(name: str, cni: str, proxy_mode: str = "iptables", web: int = 2) -> Topology:
    """Two nodes; web-1 (and the client) on node1, the other web pods on node2."""
    network = {**PODNETS[cni], "serviceCIDR": "10.96.0.0/12", "proxyMode": proxy_mode,
               "subnets": [{"name": "lan", "cidr": "192.168.1.0/24"}]}
    second = [{"name": f"web-{i}", "labels": {"app": "web"}} for i in range(2, web + 1)]
    spec = {
        "name": name,
        "network": network,
        "nodes": [
            {"name": "node1", "pods": [{"name": "web-1", "labels": {"app": "web"}}, {"name": "client", "labels": {"app": "client"}}]},
            {"name": "node2", "pods": second},
        ],
        "services": [
            {"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            {"name": "web-np", "type": "NodePort", "selector": {"app": "web"},
             "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]},
            {"name": "echo-udp", "selector": {"app": "web"}, "ports": [{"port": 53, "targetPort": 5353, "protocol": "UDP"}]},
        ],
    }
    if cni == "vpc-native":
        for node in spec["nodes"]:
            node["instanceType"] = "t3.medium"
    return parse_topology(spec)


def requests(ns: str, url: str, n: int) -> dict[str, Any]:
    argv = netns.exec_argv(ns, [sys.executable, *program("client"), url, "-n", str(n), "--timeout", "2"])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120 + n * 2)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ns_of(state: LabState, name: str) -> str:
    return lab.host(state, name).ns


def _hairpin(lab_up: Any, name: str, cni: str, mode: str) -> None:
    state = lab_up(topology(name, cni, mode))
    web1 = ns_of(state, "web-1")
    seen = requests(web1, "http://web", 100)
    assert seen["errors"] == 0, seen  # no request to itself timed out
    assert set(seen["answers"]) == {"web-1", "web-2"}, seen
    assert seen["answers"]["web-1"] >= 25, seen  # about half (binomial(100, 1/2) < 25: p < 1e-6): the caller itself


@pytest.mark.parametrize("cni", ["host-gw", "vxlan", "vpc-native"])
def test_a_pod_reaches_itself_through_its_service(lab_up: Any, cni: str) -> None:
    _hairpin(lab_up, f"fkp-hp-{cni.replace('-', '')[:6]}", cni, "iptables")


def test_a_pod_reaches_itself_through_its_service_on_calico(lab_up: Any) -> None:
    _hairpin(lab_up, "fkp-hp-calico", "calico", "iptables")


@pytest.mark.requires("ipvs")
@pytest.mark.parametrize("cni", ["host-gw", "vxlan", "vpc-native"])
def test_a_pod_reaches_itself_through_its_service_in_ipvs_mode(lab_up: Any, cni: str) -> None:
    """IPVS mode: KUBE-LOOP-BACK holds web-1's entry on node1, and its masquerade makes the reply work."""
    name = f"fkp-hv-{cni.replace('-', '')[:6]}"
    _hairpin(lab_up, name, cni, "ipvs")
    state = LabState.load(name)
    assert state is not None
    web1 = str(lab.host(state, "web-1").ip)
    node1 = ns_of(state, "node1")
    assert _loop_back_has(node1, web1)
    assert "--match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE" in run(node1, "iptables-save", "-t", "nat")


@pytest.mark.requires("ipvs")
def test_a_pod_reaches_itself_through_its_service_on_calico_in_ipvs_mode(lab_up: Any) -> None:
    _hairpin(lab_up, "fkp-hv-calico", "calico", "ipvs")


def _loop_back_has(ns: str, ip: str) -> bool:
    """Whether ``ip`` is in the node's KUBE-LOOP-BACK set (asked over netlink: no ipset binary needed)."""
    return any(e.ip == ip and e.ip2 == ip for e in ipset.entries(ns, "KUBE-LOOP-BACK"))


# ----------------------------------------------------------------------------- localhost NodePorts
def test_node_port_answers_on_localhost_inside_a_node(lab_up: Any) -> None:
    """kube-proxy sets route_localnet=1 and sends 127.0.0.1:<nodePort> to the Service, like the
    node's own address; KUBE-FIREWALL guards 127/8 against other hosts."""
    state = lab_up(topology("fkp-lh", "host-gw"))
    for node in ("node1", "node2"):
        ns = ns_of(state, node)
        seen = requests(ns, "http://127.0.0.1:30080", 40)
        assert seen["errors"] == 0, seen
        assert set(seen["answers"]) == {"web-1", "web-2"}, seen
        assert netns.run_in(ns, lambda: netns.read_sysctl("net/ipv4/conf/all/route_localnet")) == "1"
        rules = run(ns, "iptables-save", "-t", "filter")
        assert '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" ' in rules


# ----------------------------------------------------------------------------- INVALID drop
def invalid_drops(ns: str) -> int:
    """Packets counted by KUBE-FORWARD's INVALID drop in ``ns``."""
    for line in run(ns, "iptables-save", "-c", "-t", "filter").splitlines():
        if line.endswith("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP"):
            return int(line[1:].split(":", 1)[0])
    raise AssertionError("no INVALID drop rule in KUBE-FORWARD")


def test_forwarded_invalid_packet_is_dropped(lab_up: Any) -> None:
    """A TCP segment conntrack calls INVALID (SYN+FIN) from a pod to a pod on another node is
    dropped by node1's KUBE-FORWARD, before the pod network's FLANNEL-FWD would accept it."""
    state = lab_up(topology("fkp-inv", "host-gw"))
    node1, client = ns_of(state, "node1"), ns_of(state, "client")
    web2 = str(lab.host(state, "web-2").ip)
    forward = [r for r in run(node1, "iptables", "-S", "FORWARD").splitlines() if r.startswith("-A FORWARD")]
    assert forward[1].endswith("-j KUBE-FORWARD") and forward[-1].endswith("-j FLANNEL-FWD"), forward
    before = invalid_drops(node1)
    send = (
        "from scapy.all import IP, TCP, send; "
        f"send(IP(dst='{web2}')/TCP(sport=40123, dport=8080, flags='SF'), count=3, verbose=0)"
    )
    done = subprocess.run(netns.exec_argv(client, [sys.executable, "-c", send]), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert invalid_drops(node1) - before == 3


# ----------------------------------------------------------------------------- UDP conntrack
UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
s.settimeout(2)
s.sendto(b"hi", (sys.argv[1], 53))
try:
    print(s.recv(200).decode().split(":")[0])
except TimeoutError:
    print("timeout")
"""


def udp_ask(ns: str, ip: str, sport: int) -> str:
    done = subprocess.run(netns.exec_argv(ns, [sys.executable, "-c", UDP_CLIENT, ip, str(sport)]), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_udp_flow_moves_to_a_live_endpoint_when_its_endpoint_is_deleted(lab_up: Any) -> None:
    """A UDP client keeps its source port; its flow was NATed to web-2. After web-2 is deleted
    (scale down), kube-proxy deletes the flow's conntrack entry, so the next datagram is NATed
    afresh and web-1 answers (without the cleanup it would go on to web-2's old address)."""
    state = lab_up(topology("fkp-udp", "host-gw"))
    client, node1 = ns_of(state, "client"), ns_of(state, "node1")
    ip = next(str(s.cluster_ip) for s in cluster.services_of(state) if s.key == "default/echo-udp")
    port = next(p for p in range(41000, 41100) if udp_ask(client, ip, p) == "web-2")  # a flow that went to web-2
    assert udp_ask(client, ip, port) == "web-2"  # sticks: the conntrack entry
    web2 = str(lab.host(state, "web-2").ip)
    assert any(f.sport == port and f.reply_src == web2 for f in conntrack.udp_flows(node1))
    cluster.scale(state, "web", 1)
    assert not any(f.sport == port and f.reply_src == web2 for f in conntrack.udp_flows(node1))
    assert udp_ask(client, ip, port) == "web-1"


def run(ns: str, *argv: str) -> str:
    done = subprocess.run(netns.exec_argv(ns, list(argv)), capture_output=True, text=True, timeout=30)
    return done.stdout


def test_loop_back_ipset_holds_exactly_what_it_is_given(lab_up: Any) -> None:
    """The kernel side of KUBE-LOOP-BACK (IPVS mode runs in the VM tier): created once, refilled
    to exactly the new entries, and matchable by iptables' set match, in a node of a real lab."""
    from netlab.kernel.ipset import IpPortIp, set_entries
    from netlab.services.ipvs import LOOP_BACK_SET

    state = lab_up(topology("fkp-ips", "host-gw"))
    node1 = ns_of(state, "node1")
    web1, web2 = str(lab.host(state, "web-1").ip), str(lab.host(state, "web-2").ip)
    set_entries(node1, LOOP_BACK_SET, [IpPortIp(web1, "tcp", 8080, web1), IpPortIp(web2, "udp", 53, web2)])
    set_entries(node1, LOOP_BACK_SET, [IpPortIp(web1, "tcp", 8080, web1)])
    assert [e.render() for e in ipset.entries(node1, LOOP_BACK_SET)] == [f"{web1},tcp:8080,{web1}"]
    done = subprocess.run(
        netns.exec_argv(node1, ["iptables", "-t", "nat", "-C", "POSTROUTING", "-m", "set", "--match-set", LOOP_BACK_SET, "dst,dst,src", "-j", "RETURN"]),
        capture_output=True, text=True, timeout=30,
    )
    assert "does a matching rule exist" in done.stderr or done.returncode == 1, done.stderr  # the set match loads; no such rule yet
