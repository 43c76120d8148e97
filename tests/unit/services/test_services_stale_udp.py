"""Which UDP conntrack entries kube-proxy v1.33 deletes after a sync (pkg/proxy/conntrack/cleanup.go CleanStaleEntries)."""

from __future__ import annotations

import ipaddress

from netlab.kernel.conntrack import Flow
from netlab.model.service import Service
from netlab.services.allocate import allocate
from netlab.services.kubeproxy import Endpoint
from netlab.services.stale_udp import stale_udp_flows


def echo() -> Service:
    spec = {"name": "echo", "type": "NodePort", "selector": {"app": "echo"},
            "ports": [{"port": 53, "targetPort": 5353, "protocol": "UDP", "nodePort": 30053}]}
    return allocate([Service.model_validate(spec)], ipaddress.IPv4Network("10.96.0.0/12"))[0]


def test_flows_to_a_gone_endpoint_are_stale_the_rest_kept() -> None:
    svc = echo()
    vip = str(svc.cluster_ip)
    live = {svc.key: [Endpoint("10.244.1.2", "node1")]}
    to_gone = Flow("10.244.1.5", 41000, vip, 53, "10.244.2.3", 5353)
    to_live = Flow("10.244.1.5", 41001, vip, 53, "10.244.1.2", 5353)
    node_port_gone = Flow("203.0.113.1", 5000, "192.168.1.11", 30053, "10.244.2.3", 5353)
    localhost_gone = Flow("127.0.0.1", 5001, "127.0.0.1", 30053, "10.244.2.3", 5353)
    # upstream matches the NodePort whatever the address (--orig-port-dst only)
    other_node_ip = Flow("203.0.113.1", 5002, "192.168.1.12", 30053, "192.168.1.12", 30053)
    wrong_port = Flow("10.244.1.5", 41004, vip, 53, "10.244.1.2", 53)  # the live pod's IP, another port
    unrelated = Flow("10.244.1.5", 41002, "10.244.2.9", 53, "10.244.2.9", 53)  # pod to pod, no Service
    not_natted = Flow("10.244.1.5", 41003, vip, 53, vip, 53)  # sent while the Service had no endpoint
    flows = [to_gone, to_live, node_port_gone, localhost_gone, other_node_ip, unrelated, not_natted, wrong_port]
    stale = stale_udp_flows(flows, [svc], live)
    assert stale == [to_gone, node_port_gone, localhost_gone, other_node_ip, not_natted, wrong_port]


def test_a_service_without_endpoints_keeps_its_entries() -> None:
    svc = echo()
    flow = Flow("10.244.1.5", 41000, str(svc.cluster_ip), 53, "10.244.2.3", 5353)
    assert stale_udp_flows([flow], [svc], {svc.key: []}) == []


def test_tcp_services_are_left_alone() -> None:
    spec = {"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80}]}
    svc = allocate([Service.model_validate(spec)], ipaddress.IPv4Network("10.96.0.0/12"))[0]
    flow = Flow("10.244.1.5", 41000, str(svc.cluster_ip), 80, "10.244.2.3", 80)
    assert stale_udp_flows([flow], [svc], {}) == []
