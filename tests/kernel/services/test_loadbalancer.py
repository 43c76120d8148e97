"""LoadBalancer Services on a real pod network: MetalLB-style layer 2, kube-proxy's LB rules, ExternalDNS.

Proven from packets (who answers ARP on the underlay) and from the workload's own answer
(which pod, and the client address it saw). Every lab is built by ``lab_up`` (nothing left
behind, host unchanged).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netlab import lab
from netlab.kernel import netns
from netlab.model import load_topology
from netlab.observe.capture import capture
from netlab.services import cluster, manifests
from netlab.services.processes import program
from netlab.state import LabState

ROOT = Path(__file__).resolve().parents[3]
TOPOLOGY = ROOT / "topologies" / "loadbalancer.yaml"
MANIFESTS = ROOT / "topologies" / "manifests"
HAS_DIG = subprocess.run(["which", "dig"], capture_output=True).returncode == 0


def requests(ns: str, url: str, n: int, timeout: float = 2.0) -> dict[str, Any]:
    argv = netns.exec_argv(ns, [sys.executable, *program("client"), url, "-n", str(n), "--timeout", str(timeout)])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120 + n * timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def run(ns: str, *argv: str) -> str:
    return subprocess.run(netns.exec_argv(ns, list(argv)), capture_output=True, text=True, timeout=30).stdout


def mac_of(ns: str, iface: str = "eth0") -> str:
    return run(ns, "cat", f"/sys/class/net/{iface}/address").strip()


def balancer(state: LabState, key: str) -> dict[str, Any]:
    row = next(r for r in cluster.describe_services(state) if r["service"] == key)
    return {"ip": row["externalIP"], **row["loadBalancer"], "ingress": row["status"]["loadBalancer"].get("ingress", [])}


def arp_replies(packets: list[Any], ip: str) -> set[str]:
    """Sender MACs of ARP replies (and gratuitous announcements) for ``ip``."""
    from scapy.layers.l2 import ARP

    return {p[ARP].hwsrc for p in packets if ARP in p and p[ARP].psrc == ip and p[ARP].op in (1, 2) and (p[ARP].op == 2 or p[ARP].pdst == ip)}


def test_metallb_layer2_cluster_local_leader_move_and_external_dns(lab_up) -> None:
    state = lab_up(TOPOLOGY, name="h12l-lb")
    ns = {name: lab.host(state, name).ns for name in ("node1", "node2", "node3", "internet")}
    underlay = f"{state.lab}-underlay"
    web, local = balancer(state, "default/web-lb"), balancer(state, "default/web-local")
    assert (web["ip"], web["leader"]) == ("192.168.1.240", "node3")  # Cluster: node3 leads though it has no web pod
    assert web["ingress"] == [{"ip": "192.168.1.240", "ipMode": "VIP"}] and web["annotations"] == {"metallb.io/ip-allocated-from-pool": "default"}
    assert (local["ip"], local["leader"], local["candidates"]) == ("192.168.1.244", "node2", ["node2", "node1"])

    # the path: the gateway asks who has .240, node3's eth0 answers; the pod sees node3 (SNAT, Cluster)
    with capture(underlay, "gw-lan", bpf="arp", timeout=3) as arp:
        seen = requests(ns["internet"], "http://192.168.1.240/client", 5)
    assert seen["errors"] == 0 and all(a.startswith("192.168.1.13:") for a in seen["answers"]), seen
    assert arp_replies(arp.packets, "192.168.1.240") == {mac_of(ns["node3"])}, arp.packets
    spread = requests(ns["internet"], "http://192.168.1.240", 60)
    assert spread["errors"] == 0 and set(spread["answers"]) == {"web-1", "web-2", "web-3"}, spread
    rules = run(ns["node3"], "iptables", "-t", "nat", "-S", "KUBE-SERVICES")
    assert '-d 192.168.1.240/32 -p tcp -m comment --comment "default/web-lb loadbalancer IP" -m tcp --dport 80 -j KUBE-EXT-' in rules

    # Local: node2 answers ARP, only its pods serve, and they see the internet client's own address
    with capture(underlay, "gw-lan", bpf="arp", timeout=3) as arp:
        kept = requests(ns["internet"], "http://192.168.1.244/client", 5)
    assert kept["errors"] == 0 and all(a.startswith("203.0.113.1:") for a in kept["answers"]), kept
    assert arp_replies(arp.packets, "192.168.1.244") == {mac_of(ns["node2"])}
    assert set(requests(ns["internet"], "http://192.168.1.244", 30)["answers"]) <= {"web-2", "web-3"}

    # ExternalDNS: the names resolve from the internet, with their TXT ownership records
    by_name = requests(ns["internet"], "http://web.example.test", 10)
    assert by_name["errors"] == 0 and set(by_name["answers"]) <= {"web-1", "web-2", "web-3"}, by_name
    assert set(requests(ns["internet"], "http://local.example.test", 6)["answers"]) <= {"web-2", "web-3"}
    if HAS_DIG:
        assert run(ns["internet"], "dig", "+short", "local.example.test").strip() == "192.168.1.244"
        txt = run(ns["internet"], "dig", "+short", "TXT", "a-local.example.test").strip()
        assert txt == '"heritage=external-dns,external-dns/owner=netlab,external-dns/resource=service/default/web-local"'

    # node2's pods go: the Local address moves to node1, which announces it (gratuitous ARP)
    with capture(underlay, "gw-lan", bpf="arp", timeout=4) as arp:
        cluster.scale(state, "web", 1)
    state = LabState.load(state.lab) or state
    assert balancer(state, "default/web-local")["leader"] == "node1"
    assert mac_of(ns["node1"]) in arp_replies(arp.packets, "192.168.1.244"), arp.packets
    assert f"192.168.1.244 dev lan lladdr {mac_of(ns['node1'])}" in run(f"{state.lab}-gateway", "ip", "neigh", "show", "192.168.1.244")
    moved = requests(ns["internet"], "http://192.168.1.244/client", 3)
    assert moved["errors"] == 0 and all(a.startswith("203.0.113.1:") for a in moved["answers"]), moved
    assert requests(ns["internet"], "http://192.168.1.244", 5)["answers"] == {"web-1": 5}

    # removing the Service frees its address and removes its records
    cluster.delete_services(state, ["default/web-lb"])
    if HAS_DIG:
        assert "status: NXDOMAIN" in run(ns["internet"], "dig", "web.example.test")
        assert run(ns["internet"], "dig", "+short", "TXT", "a-web.example.test").strip() == ""
    assert requests(ns["internet"], "http://192.168.1.240", 1, timeout=1.0)["errors"] == 1
    assert "192.168.1.240" not in run(ns["node3"], "iptables", "-t", "nat", "-S")


def test_manifests_source_ranges_and_delete_on_vxlan(lab_up) -> None:
    state = lab_up("flannel-vxlan.yaml", name="h12l-lbvx")
    internet = lab.host(state, "internet").ns
    lines = manifests.apply_file(state, MANIFESTS / "metallb-l2.yaml")
    assert lines[:2] == ["deployment.apps/hello created", "service/hello created"]
    assert "service/hello: ignored annotations (netlab does not model them): metallb.io/allow-shared-ip" in lines
    hello = balancer(state, "default/hello")
    assert hello["ip"] == "192.168.1.240" and hello["leader"] in ("node1", "node2")
    seen = requests(internet, "http://hello.example.test/client", 3)
    assert seen["errors"] == 0 and all(a.startswith("203.0.113.1:") for a in seen["answers"]), seen
    # a range that leaves the internet out: kube-proxy's firewall drops it on the leader
    manifests.apply_file(state, MANIFESTS / "metallb-source-ranges.yaml")
    office = balancer(state, "default/web-office")
    assert office["ip"] == "192.168.1.241"
    assert requests(internet, "http://192.168.1.241", 1, timeout=1.0)["errors"] == 1
    leader = lab.host(state, office["leader"]).ns
    assert "traffic not accepted by KUBE-FW-" in run(leader, "iptables", "-S", "KUBE-PROXY-FIREWALL")
    assert manifests.delete_file(state, MANIFESTS / "metallb-l2.yaml") == ['service "hello" deleted', 'deployment.apps "hello" deleted']
    assert requests(internet, "http://hello.example.test", 1, timeout=1.0)["errors"] == 1  # no such name any more
    assert "hello" not in {r["service"].split("/")[1] for r in cluster.describe_services(state)}


@pytest.mark.requires("ipvs")
def test_ipvs_mode_load_balancer(lab_up) -> None:
    """The same addresses with kube-proxy's IPVS mode: bound to kube-ipvs0 on every node, and only
    the leader's speaker answers ARP (strictARP keeps the kernel quiet). Small counts: the VM tier
    may emulate its CPU."""
    topology = load_topology(TOPOLOGY)
    topology = topology.model_copy(update={"network": topology.network.model_copy(update={"proxy_mode": "ipvs"})})
    state = lab_up(topology, name="h12l-lbipvs")
    ns = {name: lab.host(state, name).ns for name in ("node1", "node2", "node3", "internet")}
    for node in ("node1", "node2", "node3"):
        assert "inet 192.168.1.240/32" in run(ns[node], "ip", "-o", "addr", "show", "dev", "kube-ipvs0")
    with capture(f"{state.lab}-underlay", "gw-lan", bpf="arp", timeout=20) as arp:
        seen = requests(ns["internet"], "http://192.168.1.240/client", 2, timeout=20)
    assert seen["errors"] == 0 and all(a.startswith("192.168.1.13:") for a in seen["answers"]), seen
    assert arp_replies(arp.packets, "192.168.1.240") == {mac_of(ns["node3"])}
    kept = requests(ns["internet"], "http://192.168.1.244/client", 2, timeout=20)
    assert kept["errors"] == 0 and all(a.startswith("203.0.113.1:") for a in kept["answers"]), kept
    assert "KUBE-LOAD-BALANCER" in run(ns["node2"], "iptables", "-t", "nat", "-S", "KUBE-SERVICES")
