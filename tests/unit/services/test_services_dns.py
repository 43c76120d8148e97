"""Cluster DNS answers (dnslib records, no socket) and the pod resolv.conf."""

from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from netlab.model.service import Service
from netlab.services.dns import Records
from netlab.services.endpoints import PodInfo, dns_records, endpoints_for, resolv_conf

SERVICES = [
    Service.model_validate({"name": "web", "clusterIP": "10.96.5.5", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}),
    Service.model_validate({"name": "db", "clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}),
    Service.model_validate({"name": "search", "type": "ExternalName", "externalName": "www.example.com"}),
    Service.model_validate({"name": "web", "namespace": "prod", "clusterIP": "10.96.6.6", "selector": {"app": "web"}, "ports": [{"port": 80}]}),
]
PODS = [
    PodInfo("web-1", "default", {"app": "web"}, "10.244.1.2", "node1", "l-web-1"),
    PodInfo("db-0", "default", {"app": "db"}, "10.244.1.3", "node1", "l-db-0"),
    PodInfo("db-1", "default", {"app": "db"}, "10.244.2.2", "node2", "l-db-1"),
    PodInfo("web-p", "prod", {"app": "web"}, "10.244.2.3", "node2", "l-web-p"),
]


def ask(name: str, qtype: str = "A") -> tuple[int, list[str], list[str]]:
    records = Records(dns_records(SERVICES, PODS, endpoints_for(SERVICES, PODS)))
    reply = records.answer(DNSRecord.question(name, qtype))
    return reply.header.rcode, [str(r.rdata) for r in reply.rr], [QTYPE[r.rtype] for r in reply.rr]


def test_service_a_record() -> None:
    assert ask("web.default.svc.cluster.local") == (RCODE.NOERROR, ["10.96.5.5"], ["A"])
    assert ask("WEB.default.svc.cluster.local.")[1] == ["10.96.5.5"]
    assert ask("web.prod.svc.cluster.local")[1] == ["10.96.6.6"]


def test_selector_stays_in_its_namespace() -> None:
    eps = endpoints_for(SERVICES, PODS)
    assert [b.pod for b in eps["default/web"]] == ["web-1"]
    assert [b.pod for b in eps["prod/web"]] == ["web-p"]


def test_headless_answers_pod_ips() -> None:
    rcode, answers, _ = ask("db.default.svc.cluster.local")
    assert rcode == RCODE.NOERROR and sorted(answers) == ["10.244.1.3", "10.244.2.2"]
    assert ask("db-1.db.default.svc.cluster.local")[1] == ["10.244.2.2"]


def test_external_name_is_a_cname() -> None:
    assert ask("search.default.svc.cluster.local") == (RCODE.NOERROR, ["www.example.com."], ["CNAME"])


def test_pods_and_srv() -> None:
    assert ask("10-244-1-2.default.pod.cluster.local")[1] == ["10.244.1.2"]
    assert ask("web-1.default.pod.cluster.local")[1] == ["10.244.1.2"]
    assert ask("_http._tcp.web.default.svc.cluster.local", "SRV")[1] == ["0 100 80 web.default.svc.cluster.local."]


def test_unknown_is_nxdomain_and_missing_type_is_nodata() -> None:
    assert ask("nope.default.svc.cluster.local")[0] == RCODE.NXDOMAIN
    assert ask("web.default.svc.cluster.local.default.svc.cluster.local")[0] == RCODE.NXDOMAIN
    assert ask("web.default.svc.cluster.local", "AAAA")[:2] == (RCODE.NOERROR, [])


def test_resolv_conf_is_the_kubelets() -> None:
    assert resolv_conf("default", "10.96.0.10") == (
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    )


def test_a_record_dnslib_cannot_encode_is_servfail_not_silence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An externalName with an empty label made the DNS server log a UnicodeError and leave the
    query unanswered (issue 11); the model refuses such names now, and the server answers SERVFAIL."""
    import json

    from netlab.services.dns import FileResolver

    path = tmp_path / "records"
    path.write_text(json.dumps({"services": [{"name": "bad", "namespace": "default", "externalName": "a..b"}]}))
    reply = FileResolver(str(path)).resolve(DNSRecord.question("bad.default.svc.cluster.local"), None)
    assert reply.header.rcode == RCODE.SERVFAIL
    assert "coredns: SERVFAIL for bad.default.svc.cluster.local." in capsys.readouterr().out


def test_resolv_conf_refuses_what_would_add_lines() -> None:
    with pytest.raises(ValueError, match="invalid namespace"):
        resolv_conf("default\nnameserver 192.0.2.1", "10.96.0.10")
    with pytest.raises(ValueError):
        resolv_conf("default", "10.96.0.10\nnameserver 192.0.2.1")
