"""Services in topology files: schema, cross-field checks naming the field, allocation."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from netlab.errors import TopologyError
from netlab.model import load_topology, parse_topology
from netlab.model.service import system_services
from netlab.services.allocate import allocate, allocate_node_port

CIDR = ipaddress.IPv4Network("10.96.0.0/12")


def topo(services: list[dict[str, Any]], **network: Any) -> dict[str, Any]:
    return {
        "name": "svc",
        "network": {"cni": "host-gw", **network},
        "nodes": [{"name": "node1", "pods": [{"name": "web-1", "labels": {"app": "web"}}]}],
        "services": services,
    }


WEB = {"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}


def problem(data: dict[str, Any]) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        parse_topology(data, "t.yaml")
    return info.value


def test_defaults_are_kubernetes_defaults() -> None:
    t = parse_topology(topo([WEB]))
    svc = t.services[0]
    assert (svc.namespace, svc.type, svc.session_affinity, svc.external_traffic_policy) == ("default", "ClusterIP", "None", "Cluster")
    assert svc.ports[0].protocol == "TCP" and svc.ports[0].target == 8080
    assert t.network.service_cidr == CIDR and t.network.proxy_mode == "iptables"
    assert svc.fqdn() == "web.default.svc.cluster.local"


def test_affinity_timeout_defaults_to_10800() -> None:
    t = parse_topology(topo([{**WEB, "sessionAffinity": "ClientIP"}]))
    assert t.services[0].affinity_timeout == 10800


@pytest.mark.parametrize(
    ("services", "network", "field", "words"),
    [
        ([{**WEB, "clusterIP": "10.0.0.5"}], {}, "services[0].clusterIP", "not a usable address of network.serviceCIDR"),
        ([{**WEB, "clusterIP": "10.96.0.10"}], {}, "services[0].clusterIP", "kube-system/kube-dns"),
        ([WEB, WEB], {}, "services[1].name", "duplicate service 'default/web'"),
        ([{**WEB, "ports": [{"port": 80, "nodePort": 30080}]}], {}, "services[0]", "needs type NodePort"),
        ([{**WEB, "type": "NodePort", "ports": [{"port": 80, "nodePort": 29999}]}], {}, "services[0].ports[0].nodePort", "30000-32767"),
        (
            [{**WEB, "type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, {**WEB, "name": "b", "type": "NodePort", "ports": [{"port": 81, "nodePort": 30080}]}],
            {}, "services[1].ports[0].nodePort", "already used by default/web",
        ),
        ([{**WEB, "externalTrafficPolicy": "Local"}], {}, "services[0]", "only to type NodePort"),
        ([{"name": "ext", "type": "ExternalName"}], {}, "services[0]", "needs externalName"),
        ([{**WEB, "sessionAffinity": "Sticky"}], {}, "services[0].sessionAffinity", "ClientIP"),
        ([WEB], {"serviceCIDR": "10.244.0.0/16"}, "network.serviceCIDR", "overlaps network.podCIDR"),
        ([WEB], {"proxyMode": "userspace"}, "network.proxyMode", "ipvs"),
        ([WEB], {"proxyMode": "ipvs", "ipvsScheduler": "fastest"}, "network.ipvsScheduler", "unknown IPVS scheduler"),
        ([{**WEB, "name": "Web"}], {}, "services[0].name", "a DNS-1035 label must consist of lower case alphanumeric characters"),
        ([{**WEB, "name": "web\n"}], {}, "services[0].name", "invalid service name 'web\\n'"),  # `$` of re.match let this through
        ([{**WEB, "namespace": "default\nnameserver 192.0.2.1"}], {}, "services[0].namespace", "a lowercase RFC 1123 label"),
        ([{**WEB, "selector": {"app": "web\n"}}], {}, "services[0].selector", "invalid selector value (of app)"),
        ([{**WEB, "selector": {"a b": "web"}}], {}, "services[0].selector", "invalid selector key 'a b'"),
        ([{"name": "ext", "type": "ExternalName", "externalName": "a..b"}], {}, "services[0].externalName", "RFC 1123 subdomain"),
        ([{**WEB, "endpoints": ["192.0.2.1:80 -j ACCEPT"]}], {}, "services[0].endpoints", "not an IPv4 address, or IPv4:PORT"),
        ([{**WEB, "ports": [{"port": 80}, {"port": 81}]}], {}, "services[0]", "needs a name"),
        ([{**WEB, "bogus": 1}], {}, "services[0].bogus", "unknown key"),
    ],
)
def test_problems_name_file_and_field(services: list[dict[str, Any]], network: dict[str, Any], field: str, words: str) -> None:
    err = problem(topo(services, **network))
    assert err.source == "t.yaml"
    assert err.field == field, err
    assert words in err.message, err


def test_services_refused_on_docker0() -> None:
    data = topo([WEB])
    data["network"] = {"cni": "docker0"}
    assert "Kubernetes pod network" in problem(data).message


def test_allocation_is_stable_and_reserves_kubernetes_and_dns() -> None:
    t = parse_topology(topo([WEB, {**WEB, "name": "np", "type": "NodePort"}, {**WEB, "name": "hl", "clusterIP": "None"}]))
    services = allocate(system_services("192.168.1.11:6443") + list(t.services), CIDR)
    ips = {s.key: s.cluster_ip for s in services}
    assert ips["default/kubernetes"] == "10.96.0.1"
    assert ips["kube-system/kube-dns"] == "10.96.0.10"
    assert ipaddress.IPv4Address(ips["default/web"]) in CIDR
    assert ips["default/hl"] == "None"
    assert len(set(ips.values())) == len(ips)
    node_port = services[3].ports[0].node_port
    assert node_port is not None and 30000 <= node_port <= 32767
    again = allocate(system_services("192.168.1.11:6443") + list(t.services), CIDR)
    assert again == services
    # re-allocating with the existing ones keeps them, even if the hash start is taken
    kept = allocate([services[2]], CIDR, existing=services)
    assert kept[0].cluster_ip == ips["default/web"]


def test_node_port_allocation_skips_taken() -> None:
    first = allocate_node_port("default/x:80/TCP", set())
    assert allocate_node_port("default/x:80/TCP", {first}) == (first + 1 if first < 32767 else 30000)


def test_the_shipped_topology_is_valid() -> None:
    t = load_topology("topologies/services.yaml")
    assert {s.name for s in t.services} >= {"web", "web-sticky", "web-nodeport", "web-local", "web-headless", "search"}


# A port name that closed kube-proxy's quoted comment and started a new rule: issue 11's
# reproduction, through the topology's services (the manifest path is in test_services_manifests).
INJECTION = 'x"\n-A PREROUTING -p tcp -j DNAT --to-destination 192.0.2.1:80\n#'


def test_port_name_that_injects_an_iptables_rule_is_refused() -> None:
    err = problem(topo([{**WEB, "ports": [{"name": INJECTION, "port": 80}]}]))
    assert err.field == "services[0].ports[0].name" and err.exit_code == 2
    assert "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'" in err.message


@pytest.mark.parametrize("name", ["www.example.com", "www.example.com.", "a", "1.2.3.4.example"])
def test_external_names_kubernetes_accepts(name: str) -> None:
    t = parse_topology(topo([{"name": "ext", "type": "ExternalName", "externalName": name}]))
    assert t.services[0].external_name == name


@pytest.mark.parametrize("name", ["a..b", "-a.com", "a.com-", "a b.com", "ex\u00e4mple.com", "x" * 64 + ".com", "x." * 126 + "com", "."])
def test_external_names_that_broke_the_dns_server_are_refused(name: str) -> None:
    """dnslib could not encode these: the in-pod DNS server logged a UnicodeError and every query timed out."""
    err = problem(topo([{"name": "ext", "type": "ExternalName", "externalName": name}]))
    assert err.field == "services[0].externalName", err
