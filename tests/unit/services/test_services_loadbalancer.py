"""LoadBalancer Services, pure: the pool, MetalLB's controller and election, kube-proxy's
load-balancer rules (iptables and IPVS), the speaker's ARP, ExternalDNS and its zone server."""

from __future__ import annotations

import copy
import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from netlab.errors import TopologyError
from netlab.model import load_topology, parse_topology
from netlab.model.service import Service
from netlab.services import externaldns, ipvs, kubeproxy, loadbalancer, manifests, preview, speaker
from netlab.services.authdns import Zones
from netlab.services.kubeproxy import Endpoint

ROOT = Path(__file__).resolve().parents[3]
LB_TOPOLOGY = ROOT / "topologies" / "loadbalancer.yaml"


def topo(services: list[dict[str, Any]] | None = None, **network: Any) -> dict[str, Any]:
    return {
        "name": "lb",
        "network": {"cni": "host-gw", "internet": "203.0.113.0/24", **network},
        "nodes": [
            {"name": "node1", "pods": [{"name": "web-1", "labels": {"app": "web"}}]},
            {"name": "node2", "pods": [{"name": "web-2", "labels": {"app": "web"}}]},
            {"name": "node3"},
        ],
        "services": services or [],
    }


def lb(name: str = "web", **spec: Any) -> Service:
    return Service.model_validate({"name": name, "type": "LoadBalancer", "selector": {"app": "web"},
                                   "ports": [{"port": 80, "targetPort": 8080}], "clusterIP": "10.96.0.100", **spec})


BACKENDS = [Endpoint("10.244.1.2", "node1", "web-1"), Endpoint("10.244.2.2", "node2", "web-2")]


# ---------------------------------------------------------------- the pool and the model
def test_default_pool_is_metallbs_example_and_pool_entries_are_checked() -> None:
    t = parse_topology(topo())
    pool = [str(ip) for ip in t.load_balancer_pool()]
    assert pool[0] == "192.168.1.240" and pool[-1] == "192.168.1.250" and len(pool) == 11
    t = parse_topology(topo(loadBalancerPool=["192.168.1.200/30", "192.168.1.210-192.168.1.211"]))
    assert [str(ip) for ip in t.load_balancer_pool()] == ["192.168.1.200", "192.168.1.201", "192.168.1.202", "192.168.1.203", "192.168.1.210", "192.168.1.211"]
    for pool, words in [
        ("10.0.0.1-10.0.0.5", "not inside one node subnet"),
        ("192.168.1.10-192.168.1.12", "192.168.1.11, the address of node node1"),
        ("192.168.1.1", "the gateway of subnet lan"),
        ("192.168.1.9-192.168.1.3", "malformed loadBalancerPool entry"),
        (["192.168.1.240/29", "192.168.1.244"], "overlaps another pool entry"),
    ]:
        with pytest.raises(TopologyError) as info:
            parse_topology(topo(loadBalancerPool=pool), "t.yaml")
        assert info.value.field.startswith("network.loadBalancerPool") and words in str(info.value), str(info.value)


def test_load_balancer_fields_only_on_type_load_balancer() -> None:
    for key, value in [("loadBalancerIP", "192.168.1.240"), ("loadBalancerSourceRanges", ["203.0.113.0/24"]),
                       ("loadBalancerClass", "x"), ("allocateLoadBalancerNodePorts", False)]:
        with pytest.raises(TopologyError) as info:
            parse_topology(topo([{"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80}], key: value}]), "t.yaml")
        assert info.value.field == f"services[0].{key}" and "only be used when type is LoadBalancer" in str(info.value)
    assert not lb(allocateLoadBalancerNodePorts=False).has_node_ports and lb().has_node_ports


# ---------------------------------------------------------------- MetalLB's controller and election
def test_assign_lowest_free_sticky_requested_and_pending() -> None:
    t = parse_topology(topo())
    a, b = lb("a"), lb("b")
    first = loadbalancer.assign(t, [a, b], {})
    assert (first["default/a"].ip, first["default/b"].ip) == ("192.168.1.240", "192.168.1.241")
    again = loadbalancer.assign(t, [b], first)  # a deleted: b keeps its address, .240 is free again
    assert again["default/b"].ip == "192.168.1.241"
    c = lb("c", annotations={"metallb.io/loadBalancerIPs": "192.168.1.245"})
    d = lb("d", loadBalancerIP="192.168.1.245")
    e = lb("e", loadBalancerIP="192.168.1.9")
    f = lb("f", annotations={"metallb.universe.tf/loadBalancerIPs": "192.168.1.246"}, loadBalancerIP="192.168.1.246")
    g = lb("g", loadBalancerClass="service.k8s.aws/nlb")
    h = lb("h", annotations={"metallb.io/address-pool": "other"})
    out = loadbalancer.assign(t, [c, d, e, f, g, h], {})
    assert out["default/c"].ip == "192.168.1.245"
    assert "already in use by default/c" in out["default/d"].pending
    assert "not allowed in config" in out["default/e"].pending
    assert "can not have both" in out["default/f"].pending
    assert "loadBalancerClass" in out["default/g"].pending and "unknown pool 'other'" in out["default/h"].pending
    vpc = parse_topology({**topo(), "network": {"cni": "vpc-native", "internet": "203.0.113.0/24"}})
    assert "AWS Load Balancer Controller" in loadbalancer.assign(vpc, [a], {})["default/a"].pending
    small = parse_topology(topo(loadBalancerPool="192.168.1.240"))
    assert "no available IPs" in loadbalancer.assign(small, [a, b], {})["default/b"].pending


def test_leader_is_first_by_sha256_of_node_and_ip_and_local_needs_an_endpoint() -> None:
    nodes = ["node1", "node2", "node3"]
    order = loadbalancer.election_order(nodes, "192.168.1.240")
    assert order == sorted(nodes, key=lambda n: hashlib.sha256(f"{n}#192.168.1.240".encode()).digest())
    assert order == ["node3", "node1", "node2"]  # Cluster: node3 may lead though it runs no web pod
    cluster, local = lb("a"), lb("b", externalTrafficPolicy="Local")
    assignments = {"default/a": loadbalancer.Assignment(ip="192.168.1.240"), "default/b": loadbalancer.Assignment(ip="192.168.1.244")}
    loadbalancer.elect(assignments, [cluster, local], nodes, {"default/a": BACKENDS, "default/b": BACKENDS})
    assert assignments["default/a"].leader == "node3"
    assert assignments["default/b"].candidates == ["node2", "node1"] and assignments["default/b"].leader == "node2"
    loadbalancer.elect(assignments, [cluster, local], nodes, {"default/a": BACKENDS, "default/b": BACKENDS[:1]})
    assert assignments["default/b"].leader == "node1"  # node2's pod went: the address moves
    loadbalancer.elect(assignments, [cluster, local], nodes, {})
    assert assignments["default/a"].leader is None and assignments["default/b"].leader is None  # nobody answers ARP
    assert loadbalancer.announcements(assignments) == {}


# ---------------------------------------------------------------- kube-proxy, iptables
def test_iptables_load_balancer_ip_goes_to_the_ext_chain() -> None:
    svc = lb()
    text = kubeproxy.ruleset("node3", [svc], {svc.key: BACKENDS}, "10.244.0.0/16", ingress={svc.key: ["192.168.1.240"]})
    ext = kubeproxy.ext_chain("default/web", "TCP")
    assert f'-A KUBE-SERVICES -d 192.168.1.240/32 -p tcp -m comment --comment "default/web loadbalancer IP" -m tcp --dport 80 -j {ext}' in text
    assert f'-A {ext} -m comment --comment "masquerade traffic for default/web external destinations" -j KUBE-MARK-MASQ' in text
    assert '-I INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL' in text
    assert "KUBE-FW-" not in text


def test_iptables_local_without_local_endpoints_drops_and_no_endpoints_rejects() -> None:
    svc = lb(externalTrafficPolicy="Local")
    on_node3 = kubeproxy.ruleset("node3", [svc], {svc.key: BACKENDS}, "10.244.0.0/16", ingress={svc.key: ["192.168.1.244"]})
    assert ('-A KUBE-EXTERNAL-SERVICES -d 192.168.1.244/32 -p tcp -m comment --comment "default/web has no local endpoints" '
            "-m tcp --dport 80 -j DROP") in on_node3
    on_node1 = kubeproxy.ruleset("node1", [svc], {svc.key: BACKENDS}, "10.244.0.0/16", ingress={svc.key: ["192.168.1.244"]})
    assert f"-j {kubeproxy.svl_chain('default/web', 'TCP')}" in on_node1 and "has no local endpoints" not in on_node1
    empty = kubeproxy.ruleset("node1", [svc], {svc.key: []}, "10.244.0.0/16", ingress={svc.key: ["192.168.1.244"]})
    assert ('-A KUBE-EXTERNAL-SERVICES -d 192.168.1.244/32 -p tcp -m comment --comment "default/web has no endpoints" '
            "-m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable") in empty
    assert "loadbalancer IP" not in empty


def test_iptables_source_ranges_use_a_firewall_chain() -> None:
    svc = lb(loadBalancerSourceRanges=["198.51.100.0/24", "192.168.1.0/24"])
    text = kubeproxy.ruleset("node1", [svc], {svc.key: BACKENDS}, "10.244.0.0/16", ingress={svc.key: ["192.168.1.241"]}, node_ip="192.168.1.11")
    fw, ext = kubeproxy.fw_chain("default/web", "TCP"), kubeproxy.ext_chain("default/web", "TCP")
    assert f"--dport 80 -j {fw}" in text
    assert f'-A {fw} -s 198.51.100.0/24 -m comment --comment "default/web loadbalancer IP" -j {ext}' in text
    assert f'-A {fw} -s 192.168.1.241/32 -m comment --comment "default/web loadbalancer IP" -j {ext}' in text  # the node is in a range
    assert f'-A {fw} -m comment --comment "other traffic to default/web will be dropped by KUBE-PROXY-FIREWALL"' in text
    assert (f'-A KUBE-PROXY-FIREWALL -d 192.168.1.241/32 -p tcp -m comment --comment "default/web traffic not accepted by {fw}" '
            "-m tcp --dport 80 -j DROP") in text


# ---------------------------------------------------------------- kube-proxy, IPVS
def test_ipvs_binds_the_lb_ip_and_serves_it() -> None:
    svc = lb(externalTrafficPolicy="Local", loadBalancerSourceRanges=["198.51.100.0/24"])
    addresses, servers = ipvs.desired("node2", "192.168.1.12", [svc], {svc.key: BACKENDS}, "rr", {svc.key: ["192.168.1.244"]})
    assert "192.168.1.244" in addresses
    vs = next(s for s in servers if s.addr == "192.168.1.244")
    assert vs.port == 80 and vs.reals == (("10.244.2.2", 8080),)  # Local: this node's endpoint
    _a, elsewhere = ipvs.desired("node3", "192.168.1.13", [svc], {svc.key: BACKENDS}, "rr", {svc.key: ["192.168.1.244"]})
    assert len(next(s for s in elsewhere if s.addr == "192.168.1.244").reals) == 2  # none local: every endpoint (PR 97081)
    text = ipvs.nat_rules([svc], "10.244.0.0/16", set(), {svc.key: ["192.168.1.244"]}, set())
    assert f'-A KUBE-SERVICES -d 192.168.1.244/32 -p tcp -m comment --comment "{ipvs.LB_COMMENT}" -m tcp --dport 80 -j KUBE-LOAD-BALANCER' in text
    assert f'--comment "{ipvs.LB_LOCAL_COMMENT}" -m tcp --dport 80 -j RETURN' in text and "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ" in text
    assert "-s 198.51.100.0/24 -d 192.168.1.244/32" in text and "-A KUBE-SOURCE-RANGES-FIREWALL -j DROP" in text


# ---------------------------------------------------------------- the speaker
def _request(target: str, sender: str = "192.168.1.1", dst: bytes = speaker.BROADCAST) -> bytes:
    return speaker.arp_frame(1, b"\x02\x00\x00\x00\x00\x01", sender, dst, b"\x00" * 6, target)


def test_speaker_answers_only_for_what_it_leads() -> None:
    mac = b"\x02\x00\x00\x00\x00\x0d"
    reply = speaker.reply_for(_request("192.168.1.240"), mac, {"192.168.1.240"})
    assert reply is not None and reply[0:6] == b"\x02\x00\x00\x00\x00\x01" and reply[6:12] == mac
    assert reply[20:22] == b"\x00\x02" and reply[22:28] == mac and socket.inet_ntoa(reply[28:32]) == "192.168.1.240"
    assert speaker.reply_for(_request("192.168.1.241"), mac, {"192.168.1.240"}) is None
    assert speaker.reply_for(_request("192.168.1.240", sender="192.168.1.240"), mac, {"192.168.1.240"}) is None  # gratuitous
    assert speaker.reply_for(_request("192.168.1.240", dst=b"\x02" * 6), mac, {"192.168.1.240"}) is None  # not to us
    request, announce = speaker.gratuitous(mac, "192.168.1.240")
    assert speaker.parse_request(request) == (speaker.BROADCAST, mac, "192.168.1.240", "192.168.1.240")
    assert announce[20:22] == b"\x00\x02" and announce[0:6] == speaker.BROADCAST


# ---------------------------------------------------------------- ExternalDNS
def test_external_dns_records_and_txt_registry() -> None:
    web = lb(annotations={"external-dns.alpha.kubernetes.io/hostname": "web.example.test, www.example.test.",
                          "external-dns.alpha.kubernetes.io/ttl": "1m"})
    wanted, notes = externaldns.service_endpoints([web], {web.key: ["192.168.1.240"]}, {}, {})
    assert [(e.name, e.record_type, e.targets, e.ttl) for e in wanted] == [
        ("web.example.test", "A", ("192.168.1.240",), 60), ("www.example.test", "A", ("192.168.1.240",), 60)]
    out = externaldns.plan(wanted, ["example.test"], "netlab")
    assert {"name": "a-web.example.test", "type": "TXT", "ttl": 60,
            "value": '"heritage=external-dns,external-dns/owner=netlab,external-dns/resource=service/default/web"'} in out.records
    assert externaldns.txt_name("web.example.test", "CNAME", "prefix-") == "prefix-cname-web.example.test"
    pending, notes = externaldns.service_endpoints([web], {}, {}, {})
    assert pending == [] and "<pending>" in notes[0]
    odd = lb(annotations={externaldns.HOSTNAME: "ok.example.test,bad name\nx.example.test"})
    wanted, notes = externaldns.service_endpoints([odd], {odd.key: ["192.168.1.240"]}, {}, {})
    assert [e.name for e in wanted] == ["ok.example.test"] and "is not a DNS name" in notes[0]
    outside = externaldns.plan([externaldns.DNSEndpoint("web.other.test", "A", ("1.2.3.4",), 300, "service/default/x")], ["example.test"], "o")
    assert outside.records == [] and "outside the domain filter" in outside.skipped[0]


def test_external_dns_node_port_cluster_ip_and_conflicts() -> None:
    note = {"external-dns.alpha.kubernetes.io/hostname": "np.example.test"}
    np = Service.model_validate({"name": "np", "type": "NodePort", "externalTrafficPolicy": "Local", "selector": {"app": "web"},
                                 "ports": [{"port": 80}], "annotations": note})
    cip = Service.model_validate({"name": "cip", "selector": {"app": "web"}, "ports": [{"port": 80}], "annotations": note})
    wanted, notes = externaldns.service_endpoints([np, cip], {}, {"node1": "192.168.1.11", "node3": "192.168.1.13"},
                                                  {np.key: [BACKENDS[0]]})
    assert [e.targets for e in wanted] == [("192.168.1.11",)] and "--publish-internal-services" in notes[0]
    a = externaldns.DNSEndpoint("x.example.test", "A", ("192.168.1.241",), 300, "service/default/a")
    b = externaldns.DNSEndpoint("x.example.test", "A", ("192.168.1.240",), 300, "service/default/b")
    assert externaldns.plan([a, b], ["example.test"], "o").owners == {"x.example.test": "service/default/b"}  # smallest targets
    kept = externaldns.plan([a, b], ["example.test"], "o", current_owners={"x.example.test": "service/default/a"})
    assert kept.owners == {"x.example.test": "service/default/a"} and "owned by service/default/a" in kept.skipped[0]


def _ask(zones: Zones, name: str, qtype: str = "A") -> DNSRecord:
    return zones.answer(DNSRecord.question(name, qtype))


def test_authoritative_server_answers_as_one() -> None:
    zones = Zones({"zones": ["example.test"], "nameserver": "203.0.113.1", "records": [
        {"name": "web.example.test", "type": "A", "ttl": 300, "value": "192.168.1.240"},
        {"name": "a-web.example.test", "type": "TXT", "ttl": 300, "value": '"heritage=external-dns,external-dns/owner=o"'},
        {"name": "alias.example.test", "type": "CNAME", "ttl": 300, "value": "web.example.test"},
    ]})
    reply = _ask(zones, "web.example.test")
    assert reply.header.aa == 1 and [str(r.rdata) for r in reply.rr] == ["192.168.1.240"]
    assert str(_ask(zones, "a-web.example.test", "TXT").rr[0].rdata) == '"heritage=external-dns,external-dns/owner=o"'
    assert [QTYPE[r.rtype] for r in _ask(zones, "alias.example.test").rr] == ["CNAME", "A"]
    missing = _ask(zones, "gone.example.test")
    assert missing.header.rcode == RCODE.NXDOMAIN and QTYPE[missing.auth[0].rtype] == "SOA"
    assert _ask(zones, "web.example.test", "TXT").rr == []  # NODATA
    assert _ask(zones, "example.com").header.rcode == RCODE.REFUSED
    assert str(_ask(zones, "ns1.example.test").rr[0].rdata) == "203.0.113.1"


# ---------------------------------------------------------------- manifests, plan --services
def test_manifest_annotations_are_kept_or_listed_as_ignored(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n"
        "    external-dns.alpha.kubernetes.io/hostname: web.example.test\n    metallb.io/allow-shared-ip: k\n"
        "spec:\n  type: LoadBalancer\n  loadBalancerSourceRanges: [203.0.113.0/24]\n  selector: {app: web}\n  ports: [{port: 80}]\n"
    )
    doc = manifests.load(path)[0]
    svc = manifests.parse_service(doc, {})
    assert svc.annotations["external-dns.alpha.kubernetes.io/hostname"] == "web.example.test"
    assert manifests.ignored_annotations(svc) == ["metallb.io/allow-shared-ip"]
    assert str(svc.load_balancer_source_ranges[0]) == "203.0.113.0/24"
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  loadBalancerIP: 192.168.1.240\n  ports: [{port: 80}]\n")
    with pytest.raises(TopologyError) as info:
        manifests.parse_service(manifests.load(bad)[0], {})
    assert info.value.field == "documents[0] (Service web).spec.loadBalancerIP"


def test_plan_services_shows_addresses_leaders_records_and_rules() -> None:
    text = preview.render(load_topology(LB_TOPOLOGY), str(LB_TOPOLOGY))
    assert "192.168.1.240 default/web-lb: leader node3" in text
    assert "192.168.1.244 default/web-local: leader node2 (candidates by sha256(node#ip): node2, node1; Local" in text
    assert "web.example.test 300 IN A 192.168.1.240" in text and "a-local.example.test 60 IN TXT" in text
    assert "ip netns exec loadbalancer-node3 iptables-restore --noflush <<'EOF'" in text and '"default/web-lb loadbalancer IP"' in text
    data = copy.deepcopy(load_topology(LB_TOPOLOGY).model_dump(mode="json", by_alias=True))
    data["network"]["proxyMode"] = "ipvs"
    ipvs_text = preview.render(parse_topology(data), "x")
    assert "kube-ipvs0 holds" in ipvs_text and "TCP  192.168.1.244:80 rr" in ipvs_text
