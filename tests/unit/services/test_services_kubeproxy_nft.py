"""kube-proxy's nftables mode as text: names, dispatch maps, numgen, affinity, Local, stale chains.

The golden file ``golden/kubeproxy-nftables.nft`` is the whole transaction for a fixed
input; its header names the upstream source. Regenerate it after a deliberate change with
``NETLAB_UPDATE_GOLDEN=1 pytest tests/unit/services/test_services_kubeproxy_nft.py``.
"""

from __future__ import annotations

import copy
import ipaddress
import os
from pathlib import Path

import pytest

from netlab.model import load_topology, parse_topology
from netlab.model.service import Service, ServicePort, system_services
from netlab.services import preview
from netlab.services.allocate import allocate
from netlab.services.kubeproxy import Endpoint
from netlab.services.kubeproxy_nft import Existing, endpoint_chain, ruleset, service_chain

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden" / "kubeproxy-nftables.nft"
HEADER = """\
# Golden: kube-proxy's nftables mode, the nft -f transaction of one full sync on node1.
# Upstream: kubernetes v1.33 pkg/proxy/nftables/proxier.go (setupNFTables, syncProxyRules,
#   writeServiceToEndpointRules; read at commit b0f823e6ccd8a10b3893fc75011b9981af39285c),
#   statements as knftables writes them (priorities as numbers), compare the expected rules
#   in pkg/proxy/nftables/proxier_test.go (TestOverallNFTablesRules).
# Input: tests/unit/services/test_services_kubeproxy_nft.py fixture(); nft -f loads this file as is.
"""
CIDR = ipaddress.IPv4Network("10.96.0.0/12")
WEB = [Endpoint("10.244.1.2", "node1", "web-1"), Endpoint("10.244.2.2", "node2", "web-2"), Endpoint("10.244.2.3", "node2", "web-3")]
SPECS = [
    {"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    {"name": "web-np", "type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]},
    {"name": "web-sticky", "selector": {"app": "web"}, "sessionAffinity": "ClientIP",
     "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}, "ports": [{"port": 80, "targetPort": 8080}]},
    {"name": "web-local", "type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": "web"},
     "loadBalancerSourceRanges": ["203.0.113.0/24"], "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30081}]},
    {"name": "empty", "type": "NodePort", "selector": {"app": "none"}, "ports": [{"name": "http", "port": 80, "nodePort": 30082}]},
]


def fixture() -> tuple[list[Service], dict[str, list[Endpoint]]]:
    services = allocate(system_services("192.168.1.11:6443") + [Service.model_validate(s) for s in SPECS], CIDR)
    endpoints = {f"default/{n}": WEB for n in ("web", "web-np", "web-sticky", "web-local")}
    endpoints["default/kubernetes"] = [Endpoint("192.168.1.11:6443")]
    endpoints["kube-system/kube-dns"] = [Endpoint("10.244.1.5", "node1", "coredns")]
    return services, endpoints


def render(node: str = "node1", existing: str = "") -> str:
    services, endpoints = fixture()
    return ruleset(node, services, endpoints, "10.244.0.0/16", str(CIDR), "192.168.1.11", existing, {"default/web-local": ["192.168.1.240"]})


def _svc(name: str) -> Service:
    return next(s for s in fixture()[0] if s.name == name)


PORT = ServicePort.model_validate({"port": 80, "targetPort": 8080})


def test_golden_transaction() -> None:
    text = render()
    if os.environ.get("NETLAB_UPDATE_GOLDEN"):
        GOLDEN.write_text(HEADER + text)
    expected = GOLDEN.read_text()
    assert expected.startswith("# Golden") and "proxier.go" in expected.splitlines()[1]
    assert text == "".join(line for line in expected.splitlines(keepends=True) if not line.startswith("#"))


def test_chain_names_are_kube_proxys() -> None:
    # the names in kubernetes' own test (proxier_test.go TestOverallNFTablesRules, ns1/svc1 port p80)
    svc = Service.model_validate({"name": "svc1", "namespace": "ns1", "ports": [{"name": "p80", "port": 80}]})
    assert service_chain(svc, svc.ports[0]) == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert endpoint_chain(svc, svc.ports[0], "10.180.0.1:80") == "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"


def test_cluster_ip_dispatch_numgen_and_dnat() -> None:
    lines = render().splitlines()
    web = _svc("web")
    chain = service_chain(web, PORT)
    assert f"add element ip kube-proxy service-ips {{ {web.cluster_ip} . tcp . 80 : goto {chain} }}" in lines
    assert f"add rule ip kube-proxy {chain} ip daddr {web.cluster_ip} tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade" in lines
    eps = [endpoint_chain(web, PORT, f"{b.ip}:8080") for b in WEB]
    assert f"add rule ip kube-proxy {chain} numgen random mod 3 vmap {{ 0 : goto {eps[0]}, 1 : goto {eps[1]}, 2 : goto {eps[2]} }}" in lines
    assert f"add rule ip kube-proxy {eps[2]} ip saddr 10.244.2.3 jump mark-for-masquerade" in lines
    assert f"add rule ip kube-proxy {eps[2]} meta l4proto tcp dnat to 10.244.2.3:8080" in lines
    assert "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips" in lines
    assert "add rule ip kube-proxy masquerading masquerade fully-random" in lines


def test_affinity_sets_with_timeout_looked_up_before_numgen() -> None:
    lines = render().splitlines()
    sticky = _svc("web-sticky")
    chain = service_chain(sticky, PORT)
    ep = endpoint_chain(sticky, PORT, "10.244.1.2:8080")
    affinity = ep.replace("endpoint-", "affinity-", 1)
    assert f"add set ip kube-proxy {affinity} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 600s ; }}" in lines
    rules = [line for line in lines if line.startswith(f"add rule ip kube-proxy {chain} ")]
    assert rules[1] == f"add rule ip kube-proxy {chain} ip saddr @{affinity} goto {ep}"
    assert "numgen random mod 3" in rules[-1]
    assert f"add rule ip kube-proxy {ep} update @{affinity} {{ ip saddr }}" in lines


def test_nodeport_local_policy_and_no_endpoints() -> None:
    node1, node3 = render("node1").splitlines(), render("node3").splitlines()
    local = _svc("web-local")
    ext = service_chain(local, PORT).replace("service-", "external-", 1)
    assert f"add element ip kube-proxy service-nodeports {{ tcp . 30081 : goto {ext} }}" in node1
    assert f"add rule ip kube-proxy {ext} goto {ext.replace('external-', 'local-', 1)}" in node1
    assert 'add element ip kube-proxy no-endpoint-nodeports { tcp . 30081 comment "default/web-local" : drop }' in node3
    assert 'add element ip kube-proxy no-endpoint-services { 192.168.1.240 . tcp . 80 comment "default/web-local" : drop }' in node3
    empty = _svc("empty")
    assert f'add element ip kube-proxy no-endpoint-services {{ {empty.cluster_ip} . tcp . 80 comment "default/empty:http" : goto reject-chain }}' in node1
    assert 'add element ip kube-proxy no-endpoint-nodeports { tcp . 30082 comment "default/empty:http" : goto reject-chain }' in node1
    fw = ext.replace("external-", "firewall-", 1)
    assert f"add rule ip kube-proxy {fw} ip saddr != {{ 203.0.113.0/24 }} drop" in node1
    assert "add element ip kube-proxy nodeport-ips { 192.168.1.11 }" in node1


def test_stale_chains_and_affinity_sets_are_deleted() -> None:
    web = _svc("web")
    gone = endpoint_chain(web, PORT, "10.244.9.9:8080")
    listing = (
        f"table ip kube-proxy {{\n\tset affinity-X-default/old/tcp/__1.2.3.4/80 {{\n\t}}\n\tchain {gone} {{\n\t}}\n\tchain services {{\n\t}}\n}}\n"
        "table ip nat {\n\tchain not/ours {\n\t}\n}\n"  # iptables-nft's own table: never touched
    )
    assert Existing.parse(listing).chains == frozenset({gone, "services"})
    lines = render(existing=listing).splitlines()
    assert lines[-3:] == [f"flush chain ip kube-proxy {gone}", "delete set ip kube-proxy affinity-X-default/old/tcp/__1.2.3.4/80", f"delete chain ip kube-proxy {gone}"]
    assert "delete chain ip kube-proxy services" not in lines


def test_bad_values_never_reach_nft() -> None:
    services, endpoints = fixture()
    with pytest.raises(ValueError, match="refusing"):
        ruleset("node1", services, endpoints, "10.244.0.0/16; flush ruleset", str(CIDR), "192.168.1.11")


def test_model_and_plan_services_print_the_transaction() -> None:
    data = copy.deepcopy(load_topology(ROOT / "topologies" / "services.yaml").model_dump(mode="json", by_alias=True))
    data["network"]["proxyMode"] = "nftables"
    text = preview.render(parse_topology(data, "x"), "x")
    assert "kube-proxy nftables" in text
    assert "ip netns exec services-node1 nft -f - <<'EOF'" in text
    assert 'add table ip kube-proxy { comment "rules for kube-proxy" ; }' in text and "iptables-restore" not in text


def test_partial_sync_writes_only_what_changed() -> None:
    from netlab.services.kubeproxy_nft import sync

    services, endpoints = fixture()
    args = ("10.244.0.0/16", str(CIDR), "192.168.1.11")
    full, memory = sync("node1", services, endpoints, *args)
    assert full.startswith("add table ip kube-proxy")
    nothing, same = sync("node1", services, endpoints, *args, memory=memory)
    assert nothing == "" and same == memory  # no change: an empty transaction
    extra = allocate([Service.model_validate({"name": "new", "selector": {"app": "web"}, "ports": [{"port": 81}]})], CIDR, services)[0]
    added, memory2 = sync("node1", [*services, extra], {**endpoints, "default/new": WEB[:1]}, *args, memory=memory)
    port = extra.ports[0]
    assert "add table" not in added and "flush map" not in added
    assert f"add element ip kube-proxy service-ips {{ {extra.cluster_ip} . tcp . 81 : goto {service_chain(extra, port)} }}" in added
    assert {line.split()[4] for line in added.splitlines() if line.startswith("add chain")} == {
        service_chain(extra, port), endpoint_chain(extra, port, "10.244.1.2:81")}
    assert "web-sticky" not in added  # unchanged service ports are left alone
    web = _svc("web")
    fewer = {**endpoints, "default/web": WEB[:2]}
    listing = f"table ip kube-proxy {{\n\tchain {endpoint_chain(web, PORT, '10.244.2.3:8080')} {{\n\t}}\n}}\n"
    scaled, _ = sync("node1", services, fewer, *args, listing, memory=memory)
    assert f"add rule ip kube-proxy {service_chain(web, PORT)} numgen random mod 2 vmap" in scaled
    assert scaled.splitlines()[-1] == f"delete chain ip kube-proxy {endpoint_chain(web, PORT, '10.244.2.3:8080')}"
    removed, _ = sync("node1", services, endpoints, *args, memory=memory2)
    assert removed.splitlines() == [f"delete element ip kube-proxy {m} {{ {k} }}" for m, k in (
        ("cluster-ips", str(extra.cluster_ip)), ("service-ips", f"{extra.cluster_ip} . tcp . 81"))]
