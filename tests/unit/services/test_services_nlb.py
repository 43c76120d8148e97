"""The emulated AWS NLB without a kernel: annotations and their defaults, names, targets, rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netlab.errors import TopologyError
from netlab.model import aws_lb, load_topology
from netlab.model.service import Service
from netlab.services import manifests, nlb
from netlab.services.allocate import allocate
from netlab.services.kubeproxy import Endpoint

ROOT = Path(__file__).resolve().parents[3]
A = aws_lb.PREFIX


def svc(annotations: dict[str, str], **spec: Any) -> Service:
    return Service.model_validate({
        "name": "web", "type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}],
        "annotations": {A + "type": "external", **annotations}, **spec,
    })


def test_defaults_follow_the_controller_and_aws() -> None:
    instance = aws_lb.settings({A + "type": "external"})
    assert (instance.target_type, instance.scheme, instance.preserve_client_ip, instance.deregistration_delay) == ("instance", "internal", True, 300)
    assert instance.health == aws_lb.HealthCheck("TCP", "traffic-port", "/", 10, 10, 3, 3)
    ip = aws_lb.settings({A + "type": "external", A + "nlb-target-type": "ip"})
    assert ip.preserve_client_ip is False  # AWS: ip targets with TCP do not preserve the client address by default
    local = aws_lb.settings({A + "type": "external"}, "Local")
    assert local.health == aws_lb.HealthCheck("HTTP", "health-check-node-port", "/healthz", 10, 6, 2, 2)
    assert aws_lb.settings({A + "type": "nlb-ip"}).target_type == "ip"
    chosen = aws_lb.settings({A + "type": "external", A + "target-group-attributes": "preserve_client_ip.enabled=true,stickiness.enabled=true"})
    assert chosen.ignored == (f"{A}target-group-attributes: stickiness.enabled",)
    assert aws_lb.claimed({}, "service.k8s.aws/nlb") and not aws_lb.claimed({A + "type": "nlb"}, None)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("nlb-target-type", "alb", "is not instance or ip"),
        ("healthcheck-interval", "3", "5-300"),
        ("healthcheck-healthy-threshold", "1", "2-10"),
        ("healthcheck-path", "/x\n-A INPUT", "absolute URL path"),
        ("target-group-attributes", "deregistration_delay.timeout_seconds=9999", "0-3600"),
        ("target-group-attributes", "preserve_client_ip.enabled=yes", "true or false"),
        ("target-group-attributes", "a=b\n-A", "attribute=value"),
        ("scheme", "public", "internal or internet-facing"),
    ],
)
def test_invalid_annotations_are_refused_naming_them(key: str, value: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        svc({A + key: value})


def test_invalid_annotation_in_a_manifest_exits_2_naming_the_document(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n"
        f"    {A}type: external\n    {A}healthcheck-interval: \"1\"\n"
        "spec:\n  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 80}]\n"
    )
    with pytest.raises(TopologyError) as info:
        manifests.parse_service(manifests.load(path)[0], {})
    assert info.value.exit_code == 2 and "documents[0] (Service web)" in info.value.field
    assert "healthcheck-interval" in info.value.message


def test_health_check_node_port_is_allocated_for_local_load_balancers() -> None:
    local = svc({}, externalTrafficPolicy="Local")
    out = allocate([local, svc({}, name="other")], load_topology(ROOT / "topologies" / "vpc-native.yaml").network.service_cidr)
    assert out[0].health_check_node_port in range(30000, 32768) and out[1].health_check_node_port is None
    assert out[0].health_check_node_port != out[0].ports[0].node_port
    with pytest.raises(ValueError, match="externalTrafficPolicy Local"):
        svc({}, healthCheckNodePort=30100)


def test_balancers_names_targets_and_rules() -> None:
    topo = load_topology(ROOT / "topologies" / "vpc-native.yaml")
    cidr = topo.network.service_cidr
    ip_svc, inst_svc = allocate([svc({A + "nlb-target-type": "ip"}, name="web-ip"), svc({}, name="web-inst")], cidr)
    endpoints = {"default/web-ip": [Endpoint("192.168.1.13", "node1", "web-1"), Endpoint("192.168.1.16", "node2", "web-2")]}
    out = nlb.balancers(topo, "lab", [ip_svc, inst_svc], endpoints, {}, {"192.168.1.254"})
    ip_lb, inst_lb = out["default/web-ip"], out["default/web-inst"]
    assert ip_lb.name.startswith("k8s-default-webip-") and len(ip_lb.name) == len("k8s-default-webip-") + 10
    assert ip_lb.dns.startswith(ip_lb.name + "-") and ip_lb.dns.endswith(".elb.us-east-1.amazonaws.com")
    assert (ip_lb.ip, inst_lb.ip) == ("192.168.1.253", "192.168.1.252")
    assert [(t["ip"], t["port"]) for t in ip_lb.groups[0].targets] == [("192.168.1.13", 8080), ("192.168.1.16", 8080)]
    node_port = inst_svc.ports[0].node_port
    assert [(t["id"], t["port"]) for t in inst_lb.groups[0].targets] == [("i-node1", node_port), ("i-node2", node_port)]
    again = nlb.balancers(topo, "lab", [inst_svc], {}, {k: v.to_json() for k, v in out.items()}, {"192.168.1.254"})
    assert again["default/web-inst"].ip == "192.168.1.252"  # kept
    rows = [b.to_json() for b in out.values()]
    rules = nlb.ruleset(rows, {ip_lb.groups[0].name: [("192.168.1.13", 8080), ("192.168.1.16", 8080)]}, ["192.168.1.0/24"])
    assert "-m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 192.168.1.13:8080" in rules
    assert f"--ctorigdst {ip_lb.ip}/32 --ctorigdstport 80" in rules and f"SNAT --to-source {ip_lb.ip}" in rules  # ip + TCP: not preserved
    assert f"--ctorigdst {inst_lb.ip}/32" not in rules  # instance: preserved
    assert f'-A INPUT -d {inst_lb.ip}/32 -p tcp -m tcp --dport 80 -m comment --comment "{inst_lb.groups[0].name}: internal NLB, not from the VPC" -j DROP' in rules
    back = nlb.gateway_rules(rows, [("a", "192.168.1.0/24")], ["192.168.1.0/24"])
    assert f"-s 192.168.1.11/32 -p tcp -m tcp --sport {node_port}" in back and "192.168.1.13/32" not in back
