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
from netlab.kernel import netns
from netlab.model import Topology, parse_topology
from netlab.services.processes import program
from netlab.state import LabState

PODNETS: dict[str, dict[str, Any]] = {
    "host-gw": {"cni": "host-gw", "podCIDR": "10.244.0.0/16"},
    "vxlan": {"cni": "vxlan", "podCIDR": "10.244.0.0/16"},
    "ipip": {"cni": "ipip", "mode": "Always", "podCIDR": "10.244.0.0/16"},
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
            {"name": "echo-udp", "selector": {"app": "web"}, "ports": [{"port": 5353, "targetPort": 8080, "protocol": "UDP"}]},
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
    seen = requests(web1, "http://web", 300)
    assert seen["errors"] == 0, seen  # no request to itself timed out
    assert set(seen["answers"]) == {"web-1", "web-2"}, seen
    assert seen["answers"]["web-1"] >= 90, seen  # about half: kube-proxy picked the caller itself


@pytest.mark.parametrize("cni", ["host-gw", "vxlan", "vpc-native"])
def test_a_pod_reaches_itself_through_its_service(lab_up: Any, cni: str) -> None:
    _hairpin(lab_up, f"fkp-hp-{cni.replace('-', '')[:6]}", cni, "iptables")


@pytest.mark.requires("ipip")
def test_a_pod_reaches_itself_through_its_service_on_calico(lab_up: Any) -> None:
    _hairpin(lab_up, "fkp-hp-ipip", "ipip", "iptables")
