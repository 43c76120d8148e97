"""ExternalDNS's ingress and gateway-httproute sources (kubernetes-sigs/external-dns v0.21
source/ingress.go, source/gateway.go), the addresses the controllers publish in the objects'
status, wildcards in the internet's DNS, and ``apply --dry-run`` of a Gateway whose TLS Secret
is in the same file. Pure: no root."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.model import parse_topology
from netlab.model.gateway import Gateway, HTTPRoute
from netlab.model.ingress import Ingress, parse_annotations
from netlab.model.service import Service
from netlab.services import externaldns, gateway, ingress, manifests
from netlab.services.authdns import Zones
from netlab.services.externaldns import DNSEndpoint, matching_host
from netlab.state import LabState

ROOT = Path(__file__).resolve().parents[3]
HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
SOURCE = "external-dns.alpha.kubernetes.io/ingress-hostname-source"


def ing(name: str = "web", annotations: dict[str, str] | None = None, **spec: Any) -> Ingress:
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    body = {"rules": [{"host": "foo.example.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}},
                      {"http": {"paths": [{"path": "/any", "pathType": "Prefix", "backend": backend}]}}], **spec}
    return Ingress.model_validate({"name": name, "namespace": "shop", "annotations": annotations or {}, "spec": body})


def table(endpoints: list[DNSEndpoint]) -> set[tuple[str, str, tuple[str, ...], str]]:
    return {(e.name, e.record_type, e.targets, e.resource) for e in endpoints}


# ---------------------------------------------------------------- the ingress source
def test_ingress_source_takes_rule_hosts_tls_hosts_and_the_annotation() -> None:
    web = ing(annotations={HOSTNAME: "extra.example.test, more.example.test"}, tls=[{"hosts": ["secure.example.test", "foo.example.test"]}])
    wanted, notes = externaldns.ingress_endpoints([web], {"shop/web": ["192.168.1.240"]})
    resource = "ingress/shop/web"
    assert table(wanted) == {  # the rule without a host gives nothing; foo (rule and TLS) once
        (h, "A", ("192.168.1.240",), resource) for h in ("foo.example.test", "secure.example.test", "extra.example.test", "more.example.test")
    } and notes == []
    # a load balancer's hostname in the status: a CNAME (EndpointsForHostname)
    cname, _ = externaldns.ingress_endpoints([ing()], {"shop/web": ["k8s-x.elb.us-east-1.amazonaws.com"]})
    assert table(cname) == {("foo.example.test", "CNAME", ("k8s-x.elb.us-east-1.amazonaws.com",), resource)}
    # ingress-hostname-source keeps one kind; any other value publishes nothing
    only = {v: table(externaldns.ingress_endpoints([ing(annotations={HOSTNAME: "a.example.test", SOURCE: v})], {"shop/web": ["1.2.3.4"]})[0])
            for v in ("annotation-only", "defined-hosts-only", "bogus")}
    assert {e[0] for e in only["annotation-only"]} == {"a.example.test"}
    assert {e[0] for e in only["defined-hosts-only"]} == {"foo.example.test"} and only["bogus"] == set()
    # no address in the status yet: no record, and a note saying why
    pending, notes = externaldns.ingress_endpoints([ing()], {})
    assert pending == [] and "status.loadBalancer.ingress is empty" in notes[0]


def test_records_of_an_ingress_carry_its_ownership() -> None:
    wanted, _ = externaldns.ingress_endpoints([ing()], {"shop/web": ["192.168.1.11"]})
    out = externaldns.plan(wanted, ["example.test"], "netlab")
    assert out.records == [
        {"name": "foo.example.test", "type": "A", "ttl": 300, "value": "192.168.1.11"},
        {"name": "a-foo.example.test", "type": "TXT", "ttl": 300,
         "value": '"heritage=external-dns,external-dns/owner=netlab,external-dns/resource=ingress/shop/web"'},
    ]


def test_ingress_nginx_annotations_leave_external_dns_ones_to_external_dns() -> None:
    parsed = parse_annotations({HOSTNAME: "a.example.test", SOURCE: "annotation-only", "external-dns.alpha.kubernetes.io/target": "x"})
    assert parsed.ignored == ("external-dns.alpha.kubernetes.io/target",)


def test_what_the_controllers_publish_in_status() -> None:
    lb = Service.model_validate({"name": "c", "type": "LoadBalancer", "ports": [{"port": 80}]})
    node_port = Service.model_validate({"name": "c", "type": "NodePort", "clusterIP": "10.96.0.50", "ports": [{"port": 80}]})
    # ingress-nginx: --publish-service (cloud manifests, LoadBalancer) or the controller's node (bare-metal, NodePort)
    assert ingress.published(lb, ["192.168.1.240"], [], "192.168.1.12") == ["192.168.1.240"]
    assert ingress.published(lb, [], [], "192.168.1.12") == []  # <pending>
    assert ingress.published(node_port, [], [], "192.168.1.12") == ["192.168.1.12"]
    # NGINX Gateway Fabric: a LoadBalancer's ingress, else the ClusterIP
    assert gateway.published(lb, [], ["k8s-x.elb.amazonaws.com"]) == ["k8s-x.elb.amazonaws.com"]
    assert gateway.published(node_port, [], []) == ["10.96.0.50"]


# ---------------------------------------------------------------- the gateway-httproute source
def test_matching_host_is_external_dns_gw_matching_host() -> None:
    assert matching_host("", "a.example.test") == "a.example.test"
    assert matching_host("*.example.test", "") == "*.example.test"
    assert matching_host("*.example.test", "a.example.test") == "a.example.test"
    assert matching_host("a.example.test", "*.example.test") == "a.example.test"
    assert matching_host("*.example.test", "a.b.example.test") == "a.b.example.test"
    assert matching_host("*.example.test", "example.test") is None
    assert matching_host("a.example.test", "b.example.test") is None


GW = {"name": "web", "namespace": "default", "spec": {"gatewayClassName": "nginx", "listeners": [
    {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.test"},
    {"name": "other", "port": 8080, "protocol": "HTTP", "hostname": "other.example.test"}]}}


def route(name: str = "cafe", namespace: str = "default", annotations: dict[str, str] | None = None, **spec: Any) -> HTTPRoute:
    body = {"parentRefs": [{"name": "web", "namespace": "default"}], "rules": [{"backendRefs": [{"name": "coffee", "port": 80}]}], **spec}
    return HTTPRoute.model_validate({"name": name, "namespace": namespace, "annotations": annotations or {}, "spec": body})


def test_route_hostnames_meet_the_listeners_and_take_the_gateway_addresses() -> None:
    gw = Gateway.model_validate(GW)
    cafe = route(hostnames=["cafe.example.test", "tea.elsewhere.test"], annotations={HOSTNAME: "menu.example.test"})
    bare = route("bare")  # no hostnames: the listeners' own
    accepted = {("default/cafe", "default/web", ""), ("default/bare", "default/web", "")}
    wanted, notes = externaldns.route_endpoints([cafe, bare], {gw.key: gw}, accepted, {gw.key: ["192.168.1.241"]})
    assert table(wanted) == {
        ("cafe.example.test", "A", ("192.168.1.241",), "httproute/default/cafe"),
        ("menu.example.test", "A", ("192.168.1.241",), "httproute/default/cafe"),  # the annotation meets *.example.test too
        ("*.example.test", "A", ("192.168.1.241",), "httproute/default/bare"),
        ("other.example.test", "A", ("192.168.1.241",), "httproute/default/bare"),
    } and notes == []
    # not Accepted by the Gateway: no records (gwRouteIsAccepted)
    assert externaldns.route_endpoints([cafe], {gw.key: gw}, set(), {gw.key: ["192.168.1.241"]})[0] == []
    # sectionName picks one listener
    pinned = HTTPRoute.model_validate({"name": "pinned", "spec": {"parentRefs": [{"name": "web", "sectionName": "other"}], "rules": [{}]}})
    wanted, _ = externaldns.route_endpoints([pinned], {gw.key: gw}, {("default/pinned", "default/web", "other")}, {gw.key: ["10.96.0.9"]})
    assert table(wanted) == {("other.example.test", "A", ("10.96.0.9",), "httproute/default/pinned")}
    # a route from another namespace: the listeners allow only their own (allowedRoutes From Same)
    foreign = route("foreign", "shop", hostnames=["x.example.test"])
    assert externaldns.route_endpoints([foreign], {gw.key: gw}, {("shop/foreign", "default/web", "")}, {gw.key: ["1.2.3.4"]})[0] == []
    # gateway-hostname-source: annotation-only
    only = route(hostnames=["cafe.example.test"], annotations={HOSTNAME: "menu.example.test",
                                                                "external-dns.alpha.kubernetes.io/gateway-hostname-source": "annotation-only"})
    wanted, _ = externaldns.route_endpoints([only], {gw.key: gw}, accepted, {gw.key: ["1.2.3.4"]})
    assert {e.name for e in wanted} == {"menu.example.test"}


# ---------------------------------------------------------------- the internet's DNS: wildcards
def _ask(zones: Zones, name: str, qtype: str = "A") -> DNSRecord:
    return zones.answer(DNSRecord.question(name, qtype))


def test_wildcard_records_answer_as_rfc_4592_says() -> None:
    zones = Zones({"zones": ["example.test"], "records": [
        {"name": "*.example.test", "type": "A", "ttl": 300, "value": "192.168.1.241"},
        {"name": "cafe.example.test", "type": "A", "ttl": 300, "value": "192.168.1.240"},
        {"name": "a.deep.example.test", "type": "A", "ttl": 300, "value": "192.168.1.242"},
    ]})
    any_name = _ask(zones, "tea.example.test")
    assert [(str(r.rname), str(r.rdata)) for r in any_name.rr] == [("tea.example.test.", "192.168.1.241")]
    assert [str(r.rdata) for r in _ask(zones, "cafe.example.test").rr] == ["192.168.1.240"]  # an existing name wins
    assert [str(r.rdata) for r in _ask(zones, "x.y.example.test").rr] == ["192.168.1.241"]
    blocked = _ask(zones, "b.deep.example.test")  # deep.example.test exists (empty non-terminal): no wildcard below it
    assert blocked.header.rcode == RCODE.NXDOMAIN
    ent = _ask(zones, "deep.example.test")
    assert ent.header.rcode == RCODE.NOERROR and ent.rr == [] and QTYPE[ent.auth[0].rtype] == "SOA"


# ---------------------------------------------------------------- apply --dry-run: Gateway + its Secret in one file
GATEWAY_WITH_SECRET = """\
apiVersion: v1
kind: Service
metadata: {name: coffee}
spec:
  selector: {app: coffee}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: secure}
spec:
  gatewayClassName: nginx
  listeners:
    - name: https
      port: 443
      protocol: HTTPS
      hostname: secure.example.com
      tls: {mode: Terminate, certificateRefs: [{kind: Secret, name: secure-tls}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: coffee
  annotations: {external-dns.alpha.kubernetes.io/ttl: "60", example.com/owner: team-a}
spec:
  parentRefs: [{name: secure}]
  hostnames: [secure.example.com]
  rules: [{backendRefs: [{name: coffee, port: 80}]}]
"""


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl missing: run scripts/setup.sh")
def test_dry_run_of_a_gateway_renders_the_https_listener_with_the_files_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETLAB_STATE_DIR", str(tmp_path / "state"))
    made = subprocess.run([str(ROOT / "scripts/tls-secret.sh"), "secure-tls", "secure.example.com", "-o", str(tmp_path / "tls")],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    path = tmp_path / "all.yaml"
    path.write_text((tmp_path / "tls/secure-tls.yaml").read_text().rstrip("\n") + "\n---\n" + GATEWAY_WITH_SECRET)
    topology = parse_topology({"name": "ned-dry", "network": {"cni": "host-gw"}, "nodes": [{"name": "node1"}]})
    state = LabState(lab="ned-dry", cni="host-gw", topology=topology.model_dump(mode="json", by_alias=True))
    lines = manifests.apply_file(state, path, dry_run=True)
    text = "\n".join(lines)
    assert lines[0].startswith("# netlab apply --dry-run: nothing was changed.") and text.count("nothing was changed") == 1, text[:400]
    assert "listen 443 ssl;" in text and "server_name secure.example.com;" in text, text
    assert f"ssl_certificate {tmp_path / 'state'}/ned-dry.ingress/ssl/default-secure-tls.pem;  # Secret default/secure-tls" in text, text
    assert "InvalidCertificateRef" not in text and "upstream default_coffee_80 {" in text, text
    assert "ingress-nginx" not in text  # the Secret is the Gateway's: no ingress-nginx configuration
    assert "# warning: httproute/coffee: metadata.annotations.example.com/owner (not modelled by netlab, ignored)" in lines, lines[:6]
    assert not any("external-dns" in line for line in lines if line.startswith("# warning"))
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())  # nothing written


# ---------------------------------------------------------------- plan --services: the controller a topology installs at up
def test_plan_services_shows_the_ingress_controller_up_installs() -> None:
    from netlab.model import load_topology
    from netlab.services import preview

    topology = load_topology(ROOT / "topologies" / "ingress.yaml")
    auto = preview.render(topology)
    assert "# ingress-nginx controller: installed with the first Ingress" in auto and "nginx.conf <<" not in auto
    spec = topology.ingress_controller.model_copy(update={"enabled": True, "node": "node2"})
    text = preview.render(topology.model_copy(update={"ingress_controller": spec}))
    lines = text.splitlines()
    pod = next(line for line in lines if line.startswith("#   pod ingress-nginx/ingress-nginx-controller-"))
    assert " on node2 (10.244.2." in pod, pod
    assert any(line.startswith("#   service/ingress-nginx-controller -n ingress-nginx: NodePort cluster-ip 10.") and
               "80:30080/TCP,443:30443/TCP, externalTrafficPolicy Cluster" in line for line in lines), text[:1500]
    start = lines.index(next(line for line in lines if line.startswith("cat > ") and line.endswith("ingress.ingress/nginx.conf <<'EOF'")))
    conf = "\n".join(lines[start + 1:lines.index("EOF", start)])
    assert "# ingresses: none" in conf and "listen 80 default_server" in conf and "return 404;" in conf, conf
    # and kube-proxy on every node gets the controller's NodePorts
    assert text.count('"ingress-nginx/ingress-nginx-controller:http" -m tcp --dport 30080') == 3


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_hostile_annotations_never_reach_the_zone(text: str) -> None:
    annotations = {HOSTNAME: text, "external-dns.alpha.kubernetes.io/ttl": text, SOURCE: text,
                   "external-dns.alpha.kubernetes.io/gateway-hostname-source": text}
    gw = Gateway.model_validate(GW)
    wanted = externaldns.ingress_endpoints([ing(annotations=annotations)], {"shop/web": ["192.168.1.240"]})[0]
    wanted += externaldns.route_endpoints([route(annotations=annotations)], {gw.key: gw}, {("default/cafe", "default/web", "")},
                                          {gw.key: ["192.168.1.241"]})[0]
    for record in externaldns.plan(wanted, ["example.test"], "o").records:
        # a wildcard's TXT record is a-*.<zone>: external-dns runs without --txt-wildcard-replacement (registry/mapper)
        assert re.fullmatch(r"(\*\.|a-\*\.)?[a-z0-9.-]+", str(record["name"])) and 1 <= int(str(record["ttl"])), record
        assert str(record["value"]) in ("192.168.1.240", "192.168.1.241") or str(record["value"]).startswith('"heritage=external-dns,'), record
