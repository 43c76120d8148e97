"""kube-proxy's whole iptables-mode ruleset (filter + nat), and its IPVS mode (table, ipset, rules),
for a fixed cluster, against golden files.

The golden file names its upstream source in its header; regenerate it after a deliberate
change with ``NETLAB_REGOLD=1 pytest tests/unit/services/test_kubeproxy_golden.py`` and read
the diff against that source before committing it.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from netlab.model.service import Service, system_services
from netlab.services.allocate import allocate
from netlab.services.ipvs import desired, loop_back_entries, nat_rules
from netlab.services.kubeproxy import Endpoint, ruleset

GOLDEN = Path(__file__).parent / "golden" / "kubeproxy-iptables.rules"
HEADER = """\
# kube-proxy iptables mode, node1 of a 2-node cluster, first sync (nothing saved yet): the
# iptables-restore --noflush input netlab writes. Upstream: kubernetes v1.33
# pkg/proxy/iptables/proxier.go (syncProxyRules; the -I jumps are iptablesJumpChains and
# iptablesKubeletJumpChains, which kube-proxy ensures with EnsureRule(Prepend)), localhost
# NodePorts on, nf_conntrack_tcp_be_liberal 0, no nfacct counters (the form kube-proxy
# writes when it cannot create them).
# Chain hashes are kube-proxy's.
"""


def cluster() -> list[Service]:
    specs = [
        {"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        {"name": "web-np", "type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]},
        {"name": "web-local", "type": "NodePort", "externalTrafficPolicy": "Local", "selector": {"app": "web"},
         "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30081}]},
        {"name": "web-sticky", "selector": {"app": "web"}, "sessionAffinity": "ClientIP", "ports": [{"port": 80, "targetPort": 8080}]},
        {"name": "echo", "selector": {"app": "echo"}, "ports": [{"port": 53, "targetPort": 5353, "protocol": "UDP"}]},
        {"name": "empty", "selector": {"app": "none"}, "ports": [{"port": 80}]},
        {"name": "web-lb", "type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": "web"},
         "loadBalancerSourceRanges": ["203.0.113.0/24"], "healthCheckNodePort": 30083,
         "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30082}]},
    ]
    services = [Service.model_validate(s) for s in specs]
    return allocate(system_services("192.168.1.11:6443") + services, ipaddress.IPv4Network("10.96.0.0/12"))


def render() -> str:
    web = [Endpoint("10.244.1.2", "node1", "web-1"), Endpoint("10.244.2.2", "node2", "web-2")]
    endpoints = {
        "default/kubernetes": [Endpoint("192.168.1.11:6443")],
        "kube-system/kube-dns": [Endpoint("10.244.1.3", "node1", "coredns")],
        "default/web": web, "default/web-np": web, "default/web-local": web, "default/web-sticky": web, "default/web-lb": web,
        "default/echo": [Endpoint("10.244.2.4", "node2", "echo-1")],
    }
    return HEADER + ruleset("node1", cluster(), endpoints, "10.244.0.0/16", "", {"default/web-lb": ["192.168.1.240"]}, "192.168.1.11")


def test_full_ruleset_matches_the_golden_file() -> None:
    text = render()
    if os.environ.get("NETLAB_REGOLD"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


IPVS_GOLDEN = Path(__file__).parent / "golden" / "kubeproxy-ipvs.rules"
IPVS_HEADER = """\
# kube-proxy IPVS mode, node1 of a 2-node cluster (the cluster of kubeproxy-iptables.rules), first
# sync. Upstream: kubernetes v1.33 pkg/proxy/ipvs/proxier.go (syncProxyRules, syncService,
# syncEndpoint, writeIptablesRules; the rule comments are pkg/proxy/ipvs/ipset.go's set
# comments). netlab writes one rule per Service where kube-proxy matches ipsets (KUBE-CLUSTER-IP,
# KUBE-NODE-PORT-TCP, KUBE-LOAD-BALANCER...), except KUBE-LOOP-BACK, which is a real ipset;
# the filter table holds only the load-balancer source-range chains.
"""


def render_ipvs() -> str:
    web = [Endpoint("10.244.1.2", "node1", "web-1"), Endpoint("10.244.2.2", "node2", "web-2")]
    endpoints = {
        "default/kubernetes": [Endpoint("192.168.1.11:6443")],
        "kube-system/kube-dns": [Endpoint("10.244.1.3", "node1", "coredns")],
        "default/web": web, "default/web-np": web, "default/web-local": web, "default/web-sticky": web, "default/web-lb": web,
        "default/echo": [Endpoint("10.244.2.4", "node2", "echo-1")],
    }
    ingress = {"default/web-lb": ["192.168.1.240"]}
    services = cluster()
    addresses, servers = desired("node1", "192.168.1.11", services, endpoints, "rr", ingress)
    loop_back = loop_back_entries("node1", services, endpoints)
    lines = ["# kube-ipvs0 addresses:", *(f"#   {a}/32" for a in addresses), "# ipvsadm -Ln:"]
    lines += [f"#   {line}" for s in servers for line in s.render().splitlines()]
    lines += ["# ipset list KUBE-LOOP-BACK (hash:ip,port,ip):", *(f"#   {e.ip},{e.protocol}:{e.port},{e.ip2}" for e in loop_back)]
    rules = nat_rules(services, "10.244.0.0/16", set(), ingress, set(), "192.168.1.11", bool(loop_back))
    return IPVS_HEADER + "\n".join(lines) + "\n" + rules


def test_ipvs_mode_matches_the_golden_file() -> None:
    text = render_ipvs()
    if os.environ.get("NETLAB_REGOLD"):
        IPVS_GOLDEN.write_text(text)
    assert text == IPVS_GOLDEN.read_text()
