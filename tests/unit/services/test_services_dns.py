"""Cluster DNS answers (dnslib records, no socket) and the pod resolv.conf.

The table below is what CoreDNS v1.12.0 answers with kubeadm v1.33's Corefile (``pods
insecure``, ``fallthrough in-addr.arpa ip6.arpa``, ``ttl 30``, ``forward . /etc/resolv.conf``,
``cache 30``) for these Services and pods. Sources: coredns plugin/kubernetes/kubernetes.go
(findPods, findServices, endpointHostname), parse.go, reverse.go, handler.go,
plugin/backend_lookup.go (A, SRV weights, CNAME chasing through the upstream, SOA),
plugin/cache/cache.go (forwarded TTLs), the test tables of plugin/kubernetes/handler_test.go
and handler_pod_insecure_test.go; Kubernetes' DNS spec (kubernetes/dns docs/specification.md)
and pkg/controller/util/endpoint ShouldSetHostname (hostname + subdomain).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from netlab.model.service import Service
from netlab.model.topology import Pod
from netlab.services.authdns import Zones
from netlab.services.dns import ClusterDNS, Forwarder, Records, cache_ttls, nameservers
from netlab.services.endpoints import PodInfo, dns_records, endpoints_for, resolv_conf
from netlab.services.upstream import node_resolv_conf, static_records

SERVICES = [
    Service.model_validate({"name": "kube-dns", "namespace": "kube-system", "clusterIP": "10.96.0.10", "selector": {"k8s-app": "kube-dns"},
                            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}),
    Service.model_validate({"name": "web", "clusterIP": "10.96.5.5", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}),
    Service.model_validate({"name": "db", "clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}),
    Service.model_validate({"name": "search", "type": "ExternalName", "externalName": "www.example.com"}),
    Service.model_validate({"name": "inside", "type": "ExternalName", "externalName": "web.default.svc.cluster.local"}),
    Service.model_validate({"name": "empty", "clusterIP": "None", "selector": {"app": "nothing"}, "ports": [{"port": 80}]}),
    Service.model_validate({"name": "web", "namespace": "prod", "clusterIP": "10.96.6.6", "selector": {"app": "web"}, "ports": [{"port": 80}]}),
]
PODS = [
    PodInfo("coredns", "kube-system", {"k8s-app": "kube-dns"}, "10.244.1.5", "node1", "l-coredns"),
    PodInfo("web-1", "default", {"app": "web"}, "10.244.1.2", "node1", "l-web-1"),
    PodInfo("db-0", "default", {"app": "db"}, "10.244.1.3", "node1", "l-db-0", hostname="db-0", subdomain="db"),  # a StatefulSet's pod
    PodInfo("db-1", "default", {"app": "db"}, "10.244.2.2", "node2", "l-db-1", hostname="other", subdomain="not-db"),  # subdomain elsewhere
    PodInfo("web-p", "prod", {"app": "web"}, "10.244.2.3", "node2", "l-web-p"),
]
INTERNET = "203.0.113.1"


class Upstream(Forwarder):
    """The forwarder with the emulated internet's resolver answering in-process (no socket)."""

    def __init__(self) -> None:
        super().__init__(["203.0.113.1"])
        self.zones = Zones({"zones": ["example.com"], "nameserver": INTERNET, "resolver": True, "static": static_records(INTERNET)})
        self.asked: list[str] = []

    def forward(self, request: DNSRecord, tcp: bool = False) -> DNSRecord | None:
        self.asked.append(f"{request.q.qname} {QTYPE[request.q.qtype]}")
        return DNSRecord.parse(self.zones.answer(request).pack())


def dns(pods: list[PodInfo] = PODS) -> tuple[ClusterDNS, Upstream]:
    data = json.loads(json.dumps(dns_records(SERVICES, pods, endpoints_for(SERVICES, pods))))  # as the records file carries it
    data["serial"] = 1700000000
    upstream = Upstream()
    return ClusterDNS(Records(data), upstream), upstream


def ask(name: str, qtype: str = "A") -> tuple[str, list[str], list[str], list[str]]:
    reply = dns()[0].answer(DNSRecord.question(name, qtype))
    reply = DNSRecord.parse(reply.pack())  # what goes on the wire
    return RCODE[reply.header.rcode], _lines(reply.rr), _lines(reply.auth), _lines(reply.ar)


def _lines(rrs: list[RR]) -> list[str]:
    return sorted(f"{rr.rname} {rr.ttl} {QTYPE[rr.rtype]} {rr.rdata}" for rr in rrs)


SOA = "cluster.local. 30 SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 30"

# question -> (rcode, answer section, authority section); the additional section where it matters is asserted below
TABLE = [
    # a ClusterIP Service
    (("web.default.svc.cluster.local", "A"), ("NOERROR", ["web.default.svc.cluster.local. 30 A 10.96.5.5"], [])),
    (("web.prod.svc.cluster.local", "A"), ("NOERROR", ["web.prod.svc.cluster.local. 30 A 10.96.6.6"], [])),
    (("web.default.svc.cluster.local", "AAAA"), ("NOERROR", [], [SOA])),  # exists, no such type: NODATA
    (("web.default.svc.cluster.local", "TXT"), ("NOERROR", [], [SOA])),
    (("nope.default.svc.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),
    (("web.nonexistent.svc.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),  # the namespace does not exist
    (("default.svc.cluster.local", "A"), ("NOERROR", [], [SOA])),  # a namespace exists: NODATA
    (("web.default.svc.cluster.local.default.svc.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),  # the search list's first try
    (("a.b.web.default.svc.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),  # too many labels
    # a ClusterIP Service's endpoints have names too (the endpoint query of findServices)
    (("10-244-1-2.web.default.svc.cluster.local", "A"), ("NOERROR", ["10-244-1-2.web.default.svc.cluster.local. 30 A 10.244.1.2"], [])),
    (("web-1.web.default.svc.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),  # never the pod's name
    # SRV: a ClusterIP Service is its own target, port = the Service's port
    (("_http._tcp.web.default.svc.cluster.local", "SRV"),
     ("NOERROR", ["_http._tcp.web.default.svc.cluster.local. 30 SRV 0 100 80 web.default.svc.cluster.local."], [])),
    (("_http._udp.web.default.svc.cluster.local", "SRV"), ("NXDOMAIN", [], [SOA])),  # no such port/protocol
    (("_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV"),
     ("NOERROR", ["_dns._udp.kube-dns.kube-system.svc.cluster.local. 30 SRV 0 100 53 kube-dns.kube-system.svc.cluster.local."], [])),
    (("kube-dns.kube-system.svc.cluster.local", "SRV"),  # every port: two records, weight 100/2
     ("NOERROR", ["kube-dns.kube-system.svc.cluster.local. 30 SRV 0 50 53 kube-dns.kube-system.svc.cluster.local."], [])),
    # a headless Service: every ready endpoint, named by hostname (hostname + subdomain = the Service) or dashed address
    (("db.default.svc.cluster.local", "A"),
     ("NOERROR", ["db.default.svc.cluster.local. 30 A 10.244.1.3", "db.default.svc.cluster.local. 30 A 10.244.2.2"], [])),
    (("db-0.db.default.svc.cluster.local", "A"), ("NOERROR", ["db-0.db.default.svc.cluster.local. 30 A 10.244.1.3"], [])),
    (("10-244-1-3.db.default.svc.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),  # it has a hostname: not its dashed address
    (("10-244-2-2.db.default.svc.cluster.local", "A"), ("NOERROR", ["10-244-2-2.db.default.svc.cluster.local. 30 A 10.244.2.2"], [])),
    (("db-1.db.default.svc.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),  # the pod's name is no record
    (("other.db.default.svc.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),  # its subdomain names another Service
    (("_pg._tcp.db.default.svc.cluster.local", "SRV"), ("NOERROR", [
        "_pg._tcp.db.default.svc.cluster.local. 30 SRV 0 50 5432 10-244-2-2.db.default.svc.cluster.local.",
        "_pg._tcp.db.default.svc.cluster.local. 30 SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
    ], [])),
    (("empty.default.svc.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),  # headless without endpoints
    # pods insecure: any dashed address in an existing namespace, never a pod's name
    (("10-244-1-2.default.pod.cluster.local", "A"), ("NOERROR", ["10-244-1-2.default.pod.cluster.local. 30 A 10.244.1.2"], [])),
    (("10-9-9-9.default.pod.cluster.local", "A"), ("NOERROR", ["10-9-9-9.default.pod.cluster.local. 30 A 10.9.9.9"], [])),  # no such pod
    (("web-1.default.pod.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),
    (("10-244-1-2.nonexistent.pod.cluster.local", "A"), ("NXDOMAIN", [], [SOA])),
    (("default.pod.cluster.local", "A"), ("NOERROR", [], [SOA])),
    # ExternalName: the CNAME, and the upstream's answer for its target in the same reply
    (("search.default.svc.cluster.local", "A"), ("NOERROR", [
        "example.com. 30 A 203.0.113.1",
        "search.default.svc.cluster.local. 30 CNAME www.example.com.",
        "www.example.com. 30 CNAME example.com.",
    ], [])),
    (("search.default.svc.cluster.local", "CNAME"), ("NOERROR", ["search.default.svc.cluster.local. 30 CNAME www.example.com."], [])),
    (("inside.default.svc.cluster.local", "A"), ("NOERROR", [  # a target in the cluster is followed there
        "inside.default.svc.cluster.local. 30 CNAME web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. 30 A 10.96.5.5",
    ], [])),
    # reverse: a ClusterIP's PTR, an endpoint's with a hostname; the rest falls through to the upstream
    (("5.5.96.10.in-addr.arpa", "PTR"), ("NOERROR", ["5.5.96.10.in-addr.arpa. 30 PTR web.default.svc.cluster.local."], [])),
    (("3.1.244.10.in-addr.arpa", "PTR"), ("NOERROR", ["3.1.244.10.in-addr.arpa. 30 PTR db-0.db.default.svc.cluster.local."], [])),
    (("2.1.244.10.in-addr.arpa", "PTR"), ("NXDOMAIN", [], [])),  # no hostname: forwarded, the internet knows nothing
    # the zone itself
    (("cluster.local", "SOA"), ("NOERROR", [SOA], [])),
    (("cluster.local", "NS"), ("NOERROR", ["cluster.local. 30 NS ns.dns.cluster.local."], [])),
    (("ns.dns.cluster.local", "A"), ("NOERROR", ["ns.dns.cluster.local. 30 A 10.96.0.10"], [])),
    (("dns-version.cluster.local", "TXT"), ("NOERROR", ['dns-version.cluster.local. 28800 TXT "1.1.0"'], [])),
    # outside the cluster: forwarded; TTLs as the cache plugin leaves them (300 -> 30)
    (("example.com", "A"), ("NOERROR", ["example.com. 30 A 203.0.113.1"], [])),
    (("www.example.com", "A"), ("NOERROR", ["example.com. 30 A 203.0.113.1", "www.example.com. 30 CNAME example.com."], [])),
    (("nothing.invalid", "A"), ("NXDOMAIN", [], [])),
]


@pytest.mark.parametrize(("question", "expected"), TABLE, ids=[f"{q} {t}" for (q, t), _ in TABLE])
def test_coredns_answers(question: tuple[str, str], expected: tuple[str, list[str], list[str]]) -> None:
    assert ask(*question)[:3] == expected


def test_srv_additional_section_holds_the_targets_addresses() -> None:
    assert ask("_pg._tcp.db.default.svc.cluster.local", "SRV")[3] == [
        "10-244-2-2.db.default.svc.cluster.local. 30 A 10.244.2.2", "db-0.db.default.svc.cluster.local. 30 A 10.244.1.3",
    ]
    assert ask("_http._tcp.web.default.svc.cluster.local", "SRV")[3] == ["web.default.svc.cluster.local. 30 A 10.96.5.5"]


def test_only_outside_names_and_unknown_reverse_go_upstream() -> None:
    cluster, upstream = dns()
    for name, qtype in (("web.default.svc.cluster.local", "A"), ("nope.default.svc.cluster.local", "A"), ("web-1.default.pod.cluster.local", "A"),
                        ("5.5.96.10.in-addr.arpa", "PTR"), ("example.com", "A"), ("2.1.244.10.in-addr.arpa", "PTR"), ("search.default.svc.cluster.local", "A")):
        cluster.answer(DNSRecord.question(name, qtype))
    assert upstream.asked == ["example.com. A", "2.1.244.10.in-addr.arpa. PTR", "www.example.com. A"]


def test_answers_are_authoritative_for_the_cluster_and_not_for_forwarded() -> None:
    cluster, _ = dns()
    assert cluster.answer(DNSRecord.question("web.default.svc.cluster.local")).header.aa == 1
    forwarded = cluster.answer(DNSRecord.question("example.com"))
    assert forwarded.header.ra == 1
    assert cluster.answer(DNSRecord.question("cluster.local", "AXFR")).header.rcode == RCODE.REFUSED


def test_no_upstream_is_servfail_for_outside_names_only() -> None:
    data = dns_records(SERVICES, PODS, endpoints_for(SERVICES, PODS))
    cluster = ClusterDNS(Records(data), Forwarder([]))
    assert cluster.answer(DNSRecord.question("example.com")).header.rcode == RCODE.SERVFAIL
    assert cluster.answer(DNSRecord.question("web.default.svc.cluster.local")).header.rcode == RCODE.NOERROR
    # an ExternalName whose target cannot be looked up: CoreDNS drops the CNAME, NODATA
    reply = cluster.answer(DNSRecord.question("search.default.svc.cluster.local"))
    assert (reply.header.rcode, reply.rr) == (RCODE.NOERROR, [])


def test_forwarded_ttls_are_the_caches() -> None:
    reply = DNSRecord.question("example.com").reply()
    reply.add_answer(RR("example.com.", QTYPE.A, ttl=3600, rdata=A("203.0.113.1")), RR("example.com.", QTYPE.A, ttl=120, rdata=A("203.0.113.2")))
    assert [rr.ttl for rr in cache_ttls(reply).rr] == [30, 30]
    short = DNSRecord.question("example.com").reply()
    short.add_answer(RR("example.com.", QTYPE.A, ttl=1, rdata=A("203.0.113.1")))
    assert [rr.ttl for rr in cache_ttls(short).rr] == [5]


def test_hostname_without_matching_subdomain_keeps_the_dashed_name() -> None:
    pods = [PodInfo("db-0", "default", {"app": "db"}, "10.244.1.3", "node1", "l", hostname="db-0")]  # no subdomain
    data = dns_records(SERVICES, pods, endpoints_for(SERVICES, pods))
    names = Records(data).names
    assert "10-244-1-3.db.default.svc.cluster.local." in names and "db-0.db.default.svc.cluster.local." not in names


def test_pod_hostname_and_subdomain_are_dns_labels() -> None:
    assert Pod.model_validate({"name": "db-0", "hostname": "db-0", "subdomain": "db"}).subdomain == "db"
    for bad in ("DB", "a.b", "-x", "x" * 64, "db\nnameserver 1.2.3.4"):
        with pytest.raises(ValueError, match="invalid (hostname|subdomain)"):
            Pod.model_validate({"name": "db-0", "hostname": bad})
        with pytest.raises(ValueError, match="invalid subdomain"):
            Pod.model_validate({"name": "db-0", "subdomain": bad})


def test_resolv_conf_is_the_kubelets() -> None:
    assert resolv_conf("default", "10.96.0.10") == (
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    )


def test_node_resolv_conf_and_what_forward_reads_of_it() -> None:
    assert node_resolv_conf("203.0.113.1") == "nameserver 203.0.113.1\n"
    assert nameservers(node_resolv_conf("203.0.113.1")) == ["203.0.113.1"]
    assert nameservers(node_resolv_conf(None)) == []
    assert nameservers("search x\nnameserver 10.0.0.1\nnameserver bogus\noptions ndots:5\n") == ["10.0.0.1"]
    with pytest.raises(ValueError):
        node_resolv_conf("203.0.113.1\nnameserver 192.0.2.1")


def test_the_server_forwards_to_the_resolv_conf_it_is_given(tmp_path: Path) -> None:
    from netlab.services.dns import FileResolver

    records, resolv = tmp_path / "records", tmp_path / "resolv.conf"
    records.write_text(json.dumps(dns_records(SERVICES, PODS, endpoints_for(SERVICES, PODS))))
    resolv.write_text(node_resolv_conf("203.0.113.1"))
    assert FileResolver(str(records), str(resolv)).current().forwarder.upstreams == ["203.0.113.1"]
    assert FileResolver(str(records), str(tmp_path / "missing")).current().forwarder.upstreams == []
    assert FileResolver(str(records)).current().records.nameserver == "10.96.0.10"


def test_a_record_dnslib_cannot_encode_is_servfail_not_silence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An externalName with an empty label made the DNS server log a UnicodeError and leave the
    query unanswered (issue 11); the model refuses such names now, and the server answers SERVFAIL."""
    from netlab.services.dns import FileResolver

    path = tmp_path / "records"
    path.write_text(json.dumps({"services": [{"name": "bad", "namespace": "default", "externalName": "a..b"}]}))
    reply = FileResolver(str(path)).resolve(DNSRecord.question("bad.default.svc.cluster.local", "CNAME"), None)
    assert reply.header.rcode == RCODE.SERVFAIL
    assert "coredns: SERVFAIL for bad.default.svc.cluster.local." in capsys.readouterr().out


def test_resolv_conf_refuses_what_would_add_lines() -> None:
    with pytest.raises(ValueError, match="invalid namespace"):
        resolv_conf("default\nnameserver 192.0.2.1", "10.96.0.10")
    with pytest.raises(ValueError):
        resolv_conf("default", "10.96.0.10\nnameserver 192.0.2.1")
