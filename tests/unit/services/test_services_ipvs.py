"""kube-proxy's IPVS mode, the pure part: which virtual servers and addresses a node gets."""

from __future__ import annotations

import ipaddress

from netlab.model.service import Service
from netlab.services.allocate import allocate
from netlab.services.ipvs import desired, nat_rules
from netlab.services.kubeproxy import Endpoint

CIDR = ipaddress.IPv4Network("10.96.0.0/12")
WEB = [Endpoint("10.244.1.2", "node1", "web-1"), Endpoint("10.244.2.2", "node2", "web-2")]


def svc(**spec: object) -> Service:
    base = {"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}], **spec}
    return allocate([Service.model_validate(base)], CIDR)[0]


def test_cluster_ip_virtual_server_round_robin() -> None:
    web = svc()
    addresses, servers = desired("node1", "192.168.1.11", [web], {"default/web": WEB}, "rr")
    assert addresses == [web.cluster_ip]
    assert len(servers) == 1
    vs = servers[0]
    assert (vs.protocol, vs.addr, vs.port, vs.scheduler, vs.persistence) == ("TCP", web.cluster_ip, 80, "rr", 0)
    assert vs.reals == (("10.244.1.2", 8080), ("10.244.2.2", 8080))
    assert vs.render().splitlines()[1] == "  -> 10.244.1.2:8080  Masq  1"


def test_affinity_is_persistence_and_nodeport_local_keeps_local_endpoints() -> None:
    web = svc(type="NodePort", externalTrafficPolicy="Local", sessionAffinity="ClientIP", ports=[{"port": 80, "targetPort": 8080, "nodePort": 30081}])
    _addresses, servers = desired("node2", "192.168.1.12", [web], {"default/web": WEB}, "lc")
    cluster, node_port = servers
    assert cluster.persistence == 10800 and cluster.scheduler == "lc" and len(cluster.reals) == 2
    assert (node_port.addr, node_port.port, node_port.reals) == ("192.168.1.12", 30081, (("10.244.2.2", 8080),))


def test_headless_and_external_name_get_nothing() -> None:
    headless = svc(clusterIP="None")
    external = Service.model_validate({"name": "ext", "type": "ExternalName", "externalName": "example.com"})
    assert desired("node1", "192.168.1.11", [headless, external], {"default/web": WEB}, "rr") == ([], [])


def test_masquerade_rules_for_outside_traffic() -> None:
    web = svc(type="NodePort", ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080}])
    text = nat_rules([web], "10.244.0.0/16", set())
    assert f"-A KUBE-SERVICES ! -s 10.244.0.0/16 -d {web.cluster_ip}/32 -p tcp" in text
    assert "--dport 30080 -j KUBE-MARK-MASQ" in text
    assert "-A PREROUTING" in text
    assert "-A PREROUTING" not in nat_rules([web], "10.244.0.0/16", {"KUBE-SERVICES"})


def test_loop_back_set_holds_this_nodes_endpoints_and_postrouting_masquerades_them_first() -> None:
    """kube-proxy IPVS: KUBE-LOOP-BACK (hash:ip,port,ip) has ep,proto:port,ep for each local endpoint."""
    from netlab.model.service import Service, system_services
    from netlab.services.allocate import allocate
    from netlab.services.ipvs import loop_back_entries, nat_rules
    from netlab.services.kubeproxy import Endpoint

    spec = {"name": "web", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"}]}
    services = allocate(system_services("192.168.1.11:6443") + [Service.model_validate(spec)], ipaddress.IPv4Network("10.96.0.0/12"))
    backends = {"default/web": [Endpoint("10.244.1.2", "node1", "web-1"), Endpoint("10.244.2.2", "node2", "web-2")]}
    entries = [e.render() for e in loop_back_entries("node1", services, backends)]
    assert entries == ["10.244.1.2,tcp:8080,10.244.1.2", "10.244.1.2,udp:53,10.244.1.2"]
    rules = nat_rules(services, "10.244.0.0/16", set(), loop_back=True).splitlines()
    postrouting = [r for r in rules if r.startswith("-A KUBE-POSTROUTING")]
    assert postrouting[0] == (
        '-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" '
        "-m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE"
    )
    assert "KUBE-LOOP-BACK" not in nat_rules(services, "10.244.0.0/16", set())  # empty set: no rule, as kube-proxy
