"""Ingress without a kernel: the schema, ingress-nginx's merging and location forms, the
rendered nginx.conf (checked by real ``nginx -t`` where nginx is installed), admission,
TLS Secrets, and the request client's options."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from netlab.errors import TopologyError
from netlab.model import parse_topology
from netlab.model.ingress import AnnotationProblem, Ingress, nginx_path_problem, parse_annotations
from netlab.model.service import Service
from netlab.services import client, ingress_apply, manifests, tls
from netlab.services.ingress import IngressRecord
from netlab.services.kubeproxy import Endpoint
from netlab.services.nginx import DEFAULT_UPSTREAM, Cert, Paths, build, render
from netlab.state import LabState

ROOT = Path(__file__).resolve().parents[3]
HAVE_NGINX = shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()
HAVE_OPENSSL = shutil.which("openssl") is not None


def backend(name: str, port: int | str = 80) -> dict[str, Any]:
    return {"service": {"name": name, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def ingress(name: str, rules: list[dict[str, Any]] | None = None, annotations: dict[str, str] | None = None, **spec: Any) -> Ingress:
    body: dict[str, Any] = dict(spec)
    if rules is not None:
        body["rules"] = rules
    return Ingress.model_validate({"name": name, "annotations": annotations or {}, "spec": body})


def rule(host: str, *paths: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    return {"host": host, "http": {"paths": [{"path": p, "pathType": t, "backend": b} for p, t, b in paths]}}


SERVICES = [
    Service.model_validate({"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}),
    Service.model_validate({"name": "api", "selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": 9090}]}),
]
ENDPOINTS = {
    "default/web": [Endpoint("10.244.1.2", "node1", "web-1"), Endpoint("10.244.2.2", "node2", "web-2")],
    "default/api": [Endpoint("10.244.2.3", "node2", "api-1")],
}


def locations(servers: list[Any], host: str) -> list[tuple[str, str, str]]:
    server = next(s for s in servers if s.hostname == host)
    return [(loc.path, loc.path_type, loc.backend) for loc in server.locations]


# --------------------------------------------------------------------------- schema
def test_kubernetes_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match="pathType"):
        Ingress.model_validate({"name": "a", "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": backend("web")}]}}]}})
    with pytest.raises(ValidationError, match="absolute path"):
        ingress("a", [rule("", ("foo", "Prefix", backend("web")))])
    with pytest.raises(ValidationError, match="must not contain '//'"):
        ingress("a", [rule("", ("/a//b", "Exact", backend("web")))])
    with pytest.raises(ValidationError, match="IP address"):
        ingress("a", [rule("10.0.0.1", ("/", "Prefix", backend("web")))])
    with pytest.raises(ValidationError, match="whitespace or control"):  # it would leave the quoted location in nginx.conf
        ingress("a", [rule("", ('/x"\n}\nserver {', "ImplementationSpecific", backend("web")))])
    with pytest.raises(ValidationError, match="secretName"):
        ingress("a", [rule("", ("/", "Prefix", backend("web")))], tls=[{"secretName": "a;b"}])
    with pytest.raises(ValidationError, match="either defaultBackend or rules"):
        ingress("a", [])
    with pytest.raises(ValidationError, match="resource backends are not modelled"):
        ingress("a", defaultBackend={"resource": {"kind": "StorageBucket", "name": "b"}})
    with pytest.raises(ValidationError, match="exactly one of port.number or port.name"):
        ingress("a", defaultBackend={"service": {"name": "web", "port": {}}})
    assert ingress("a", [rule("*.example.com", ("/", "Prefix", backend("web")))]).spec.rules[0].host == "*.example.com"


def test_annotations_modelled_invalid_and_ignored() -> None:
    anns = parse_annotations({
        "nginx.ingress.kubernetes.io/rewrite-target": "/$2",
        "nginx.ingress.kubernetes.io/ssl-redirect": "false",
        "nginx.ingress.kubernetes.io/backend-protocol": "https",
        "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    })
    assert (anns.rewrite_target, anns.ssl_redirect, anns.backend_protocol) == ("/$2", False, "HTTPS")
    assert anns.ignored == ("nginx.ingress.kubernetes.io/proxy-body-size",)  # listed, never dropped silently
    assert parse_annotations({}).ssl_redirect is True  # ingress-nginx's default
    with pytest.raises(AnnotationProblem, match="true"):
        parse_annotations({"nginx.ingress.kubernetes.io/ssl-redirect": "maybe"})
    with pytest.raises(AnnotationProblem, match="FCGI is not modelled"):
        parse_annotations({"nginx.ingress.kubernetes.io/backend-protocol": "FCGI"})
    with pytest.raises(AnnotationProblem):
        parse_annotations({"nginx.ingress.kubernetes.io/rewrite-target": "/$1; return 200"})
    assert nginx_path_problem("/foo(.*)", "Prefix") and nginx_path_problem("/foo(.*)", "ImplementationSpecific") is None


def test_topology_ingress_controller_key() -> None:
    base: dict[str, Any] = {"name": "x", "network": {"cni": "host-gw"}, "nodes": [{"name": "n1"}]}
    assert parse_topology(base).ingress_controller.enabled == "auto"
    topo = parse_topology({**base, "ingressController": {"enabled": True, "type": "LoadBalancer", "httpNodePort": 30080}})
    assert topo.ingress_controller.type == "LoadBalancer" and topo.ingress_controller.http_node_port == 30080
    with pytest.raises(TopologyError) as info:
        parse_topology({**base, "ingressController": {"node": "n9"}})
    assert info.value.field == "ingressController.node"
    with pytest.raises(TopologyError) as info:
        parse_topology({**base, "network": {"cni": "docker0"}, "ingressController": {"enabled": True}})
    assert info.value.field == "ingressController.enabled"
    with pytest.raises(TopologyError) as info:
        parse_topology({**base, "ingressController": {"httpNodePort": 30080},
                        "services": [{"name": "w", "type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}]})
    assert info.value.field == "ingressController.httpNodePort" and "default/w" in info.value.message


# --------------------------------------------------------------------------- ingress-nginx's model
def test_path_types_become_ingress_nginx_locations() -> None:
    ing = ingress("hosts", [rule(
        "bar.example.com",
        ("/api", "Prefix", backend("api", "http")),
        ("/status", "Exact", backend("web")),
        ("/docs/", "ImplementationSpecific", backend("web")),
    )])
    servers, upstreams, warnings = build([ing], SERVICES, ENDPOINTS, {})
    assert locations(servers, "bar.example.com") == [
        ("/status", "Exact", "default-web-80"),
        ("/docs/", "Prefix", "default-web-80"),  # ImplementationSpecific reads as Prefix (location.go: its twin
        ("/docs/", "Exact", "default-web-80"),  # keeps the path as written)
        ("/api/", "Prefix", "default-api-http"),  # Prefix /api: location /api/ plus = /api
        ("/api", "Exact", "default-api-http"),
        ("/", "Prefix", DEFAULT_UPSTREAM),  # the host's / goes to the default backend (404)
    ]
    assert upstreams["default-api-http"].endpoints == ["10.244.2.3:9090"]  # pod IP and targetPort, not the ClusterIP
    assert upstreams["default-web-80"].endpoints == ["10.244.1.2:8080", "10.244.2.2:8080"]
    assert not warnings


def test_several_ingresses_merge_first_one_wins_and_default_backends() -> None:
    first = ingress("first", [rule("foo.example.com", ("/", "Prefix", backend("web")))])
    second = ingress("second", [rule("foo.example.com", ("/", "Prefix", backend("api", "http")), ("/api", "Prefix", backend("api", "http")))])
    catch_all = ingress("catch-all", defaultBackend=backend("web"))
    with_default = ingress("with-default", [rule("bar.example.com", ("/x", "Exact", backend("api", "http")))], defaultBackend=backend("web"))
    servers, _up, warnings = build([first, second, catch_all, with_default], SERVICES, ENDPOINTS, {})
    foo = {loc.path: loc for loc in next(s for s in servers if s.hostname == "foo.example.com").locations}
    assert foo["/"].backend == "default-web-80" and foo["/"].ingress is not None and foo["/"].ingress.name == "first"
    assert foo["/api/"].ingress is not None and foo["/api/"].ingress.name == "second"  # merged into the same server
    assert any("already defined by ingress default/first" in w for w in warnings)
    assert locations(servers, "_")[0] == ("/", "Prefix", "default-web-80")  # an Ingress with only a backend: the catch-all
    assert locations(servers, "bar.example.com")[-1] == ("/", "Prefix", "default-web-80")  # its hosts' / use its defaultBackend


def test_missing_service_port_and_endpoints_answer_503() -> None:
    ing = ingress("broken", [rule(
        "x.example.com",
        ("/ghost", "Prefix", backend("ghost")),
        ("/noport", "Prefix", backend("web", 9999)),
        ("/empty", "Prefix", backend("api", "http")),
    )])
    rendered = render([ing], SERVICES, {"default/web": ENDPOINTS["default/web"]}, {}, Paths(Path("/x")))
    joined = "\n".join(rendered.warnings)
    assert "service default/ghost not found" in joined and "has no port 9999" in joined and "default/api has no endpoints" in joined
    assert rendered.text.count("return 503;") == 6  # each Prefix path is two locations
    assert "upstream default-ghost-80 {" not in rendered.text


def test_rewrite_ssl_redirect_headers_and_tls_in_the_text() -> None:
    rewrite = ingress(
        "rewrite", [rule("rw.example.com", ("/something(/|$)(.*)", "ImplementationSpecific", backend("web")))],
        {"nginx.ingress.kubernetes.io/rewrite-target": "/$2", "nginx.ingress.kubernetes.io/use-regex": "true"},
    )
    secure = ingress("secure", [rule("secure.example.com", ("/", "Prefix", backend("web")))],
                     tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}])
    certs = {"default/secure-tls": Cert("default/secure-tls", "/x/ssl/default-secure-tls.pem", ("secure.example.com",))}
    text = render([rewrite, secure], SERVICES, ENDPOINTS, certs, Paths(Path("/x"))).text
    assert 'location ~* "^/something(/|$)(.*)" {' in text  # template.go buildLocation with a rewrite: a regex
    assert 'rewrite "(?i)/something(/|$)(.*)" /$2 break;' in text  # buildProxyPass
    assert 'set $location_path  "/something(/|${literal_dollar})(.*)";' in text  # escapeLiteralDollar
    assert "ssl_certificate     /x/ssl/default-secure-tls.pem;" in text
    assert text.count("return 308 https://$host$redirect_uri;") == 1  # ssl-redirect only where a certificate is
    for header in ("X-Real-IP              $remote_addr", "X-Forwarded-For        $remote_addr", "X-Forwarded-Proto      $pass_access_scheme"):
        assert f"proxy_set_header {header};" in text
    assert "server 10.244.1.2:8080 max_fails=0;  # web-1" in text
    assert f"listen 127.0.0.1:{10246};" in text and "return 404;" in text


def test_a_host_the_secret_does_not_cover_gets_the_default_certificate() -> None:
    ing = ingress("secure", [rule("other.example.com", ("/", "Prefix", backend("web")))], tls=[{"hosts": ["other.example.com"], "secretName": "s"}])
    certs = {"default/s": Cert("default/s", "/x/s.pem", ("secure.example.com",))}
    servers, _u, warnings = build([ing], SERVICES, ENDPOINTS, certs)
    server = next(s for s in servers if s.hostname == "other.example.com")
    assert server.cert is None and server.certified  # default certificate, and ssl-redirect still applies
    assert any("not valid for other.example.com" in w for w in warnings)
    assert Cert("k", "p", ("*.example.com",)).covers("a.example.com") and not Cert("k", "p", ("*.example.com",)).covers("a.b.example.com")


@pytest.mark.skipif(not (HAVE_NGINX and HAVE_OPENSSL), reason="nginx or openssl missing: run scripts/setup.sh")
def test_real_nginx_accepts_what_is_rendered(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.ssl.mkdir()
    for name in ("client-body", "proxy", "fastcgi", "uwsgi", "scgi"):
        paths.temp(name).mkdir()
    tls.fake_certificate(paths.default_cert)
    ings = [
        ingress("hosts", [rule("foo.example.com", ("/", "Prefix", backend("web"))), rule("", ("/api", "Exact", backend("api", "http")))]),
        ingress("rw", [rule("rw.example.com", ("/something(/|$)(.*)", "ImplementationSpecific", backend("web")))],
                {"nginx.ingress.kubernetes.io/rewrite-target": "/$2", "nginx.ingress.kubernetes.io/backend-protocol": "GRPC"}),
        ingress("wild", [rule("*.example.com", ("/", "Prefix", backend("ghost")))], tls=[{"hosts": ["*.example.com"]}]),
    ]
    paths.conf.write_text(render(ings, SERVICES, ENDPOINTS, {}, paths).text)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    done = subprocess.run([nginx, "-t", "-c", str(paths.conf), "-p", f"{tmp_path}/", "-e", str(paths.error_log)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- admission and manifests
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_shipped_ingress_manifests_parse() -> None:
    for name in ("hosts", "rewrite", "tls"):
        parsed = ingress_apply.parse(list(manifests.load(ROOT / f"topologies/manifests/ingress-{name}.yaml")))
        assert len(parsed.ingresses) == 1


def test_ingress_errors_name_file_document_and_field(tmp_path: Path) -> None:
    head = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n"
    cases = {
        "spec:\n  rules: [{host: a.example.com, http: {paths: [{path: /, backend: {service: {name: web, port: {number: 80}}}}]}}]\n":
            "documents[0] (Ingress web).spec.rules[0].http.paths[0].pathType",
        "  annotations: {nginx.ingress.kubernetes.io/ssl-redirect: true}\nspec: {defaultBackend: {service: {name: web, port: {number: 80}}}}\n":
            "documents[0] (Ingress web).metadata.annotations.nginx.ingress.kubernetes.io/ssl-redirect",
        "spec: {defaultBackend: {service: {name: web, port: {number: 80}}}, backend: {}}\n":
            "documents[0] (Ingress web).spec.backend",
    }
    for body, where in cases.items():
        with pytest.raises(TopologyError) as info:
            ingress_apply.parse(list(manifests.load(write(tmp_path, head + body))))
        assert info.value.source == str(tmp_path / "m.yaml") and info.value.field == where, info.value


def test_admission_sets_the_default_class_and_refuses_overlaps_and_regex_prefixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETLAB_STATE_DIR", str(tmp_path / "state"))
    topology = parse_topology({"name": "u", "network": {"cni": "host-gw"}, "nodes": [{"name": "n1"}]})
    state = LabState(lab="u", topology=topology.model_dump(mode="json", by_alias=True))
    existing = ingress("first", [rule("foo.example.com", ("/app", "Prefix", backend("web")))], ingressClassName="nginx")
    IngressRecord(ingresses=[existing]).store(state)
    text = (
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: second, annotations: {nginx.ingress.kubernetes.io/x: y}}\n"
        "spec:\n  rules: [{host: foo.example.com, http: {paths: [{path: /other, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}}]\n"
    )
    parsed = ingress_apply.parse(list(manifests.load(write(tmp_path, text))))
    (admitted,) = ingress_apply.admit(state, parsed)
    assert admitted.spec.ingress_class_name == "nginx"  # the API server's DefaultIngressClass admission
    assert parsed.notes["default/second"] == [
        "ingressClassName set to the default IngressClass nginx", "annotation(s) not modelled by netlab, ignored: nginx.ingress.kubernetes.io/x",
    ]
    for path, problem in (("/app", 'host "foo.example.com" and path "/app" is already defined in ingress default/first'),
                          ("/app(.*)", "cannot be used with pathType Prefix")):
        parsed = ingress_apply.parse(list(manifests.load(write(tmp_path, text.replace("/other", path)))))
        with pytest.raises(TopologyError) as info:
            ingress_apply.admit(state, parsed)
        assert info.value.field == "documents[0] (Ingress second).spec.rules[0].http.paths[0].path"
        assert 'admission webhook "validate.nginx.ingress.kubernetes.io" denied the request' in info.value.message
        assert problem in info.value.message


@pytest.mark.skipif(not HAVE_OPENSSL, reason="openssl missing: run scripts/setup.sh")
def test_tls_secrets_from_the_script_and_broken_ones(tmp_path: Path) -> None:
    done = subprocess.run([str(ROOT / "scripts/tls-secret.sh"), "s-tls", "a.example.com", "b.example.com", "-o", str(tmp_path / "tls")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (secret,) = ingress_apply.parse(list(manifests.load(tmp_path / "tls/s-tls.yaml"))).secrets
    assert secret.info is not None and secret.info.names == ("a.example.com", "b.example.com")
    head = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\n"
    crt = (tmp_path / "tls/s-tls.crt").read_text()
    other_key = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA"], capture_output=True, text=True).stdout
    for body, where in (
        ("data: {tls.crt: '!!', tls.key: eA==}\n", "data.tls.crt"),
        ("data: {tls.crt: eA==}\n", "data.tls.key"),
        ("stringData:\n  tls.crt: |\n" + _indent(crt) + "  tls.key: |\n" + _indent(other_key), "data.tls.key"),
    ):
        with pytest.raises(TopologyError) as info:
            ingress_apply.parse(list(manifests.load(write(tmp_path, head + body))))
        assert info.value.field.endswith(where), info.value
    assert ingress_apply.parse(list(manifests.load(write(tmp_path, "apiVersion: v1\nkind: Secret\nmetadata: {name: o}\n")))).secrets[0].info is None


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.strip().splitlines())


# --------------------------------------------------------------------------- the request client
def test_client_options_like_curl() -> None:
    options = client.Options(["Host: foo.example.com"], ["foo.example.com:443:192.168.1.12"], insecure=True)
    assert options.headers == {"Host": "foo.example.com"} and options.resolve == {("foo.example.com", 443): "192.168.1.12"}
    for bad in (client.Options, lambda: client.Options(["no colon"]), lambda: client.Options(resolve=["a:b"])):
        if bad is not client.Options:
            with pytest.raises(ValueError):
                bad()
    assert client._fields(["path: /x", "client: 10.244.3.2:40000", "x-forwarded-for: 203.0.113.1"]) == {
        "path": "/x", "client": "10.244.3.2", "x-forwarded-for": "203.0.113.1",
    }


def test_requests_table_shows_what_the_pods_saw() -> None:
    import io

    from rich.console import Console

    from netlab.cli.render.services import requests_table

    result = {
        "requests": 4, "errors": 0, "error_kinds": {},
        "answers": {"HTTP 404 Not Found": 1, "web-1": 3},
        "fields": {"web-1": {"path": {"/new": 3}, "client": {"10.244.3.2": 3}, "x-forwarded-for": {"203.0.113.1": 2, "192.168.1.12": 1}}},
    }
    out = io.StringIO()
    Console(file=out, width=200).print(requests_table(result, 4, "internet", "http://x"))
    text = out.getvalue()
    assert "x-forwarded-for" in text and "/new" in text and "203.0.113.1 (2)" in text and "HTTP 404 Not Found" in text


def test_use_proxy_protocol_listens_with_proxy_protocol_and_takes_the_address_from_it(tmp_path: Path) -> None:
    """ingress-nginx's ConfigMap key use-proxy-protocol (a topology key in netlab): nginx.tmpl's
    real_ip lines and template.go's commonListenOptions, accepted by the real nginx."""
    paths = Paths(tmp_path)
    paths.ssl.mkdir()
    for name in ("client-body", "proxy", "fastcgi", "uwsgi", "scgi"):
        paths.temp(name).mkdir()
    tls.fake_certificate(paths.default_cert)
    ings = [ingress("hosts", [rule("foo.example.com", ("/", "Prefix", backend("web")))])]
    plain = render(ings, SERVICES, ENDPOINTS, {}, paths).text
    assert " proxy_protocol" not in plain and "real_ip_header" not in plain
    text = render(ings, SERVICES, ENDPOINTS, {}, paths, use_proxy_protocol=True).text
    assert "        listen 80 proxy_protocol default_server reuseport backlog=4096 ;" in text
    assert "        listen 443 proxy_protocol default_server reuseport backlog=4096 ssl;" in text
    assert "        listen 80 proxy_protocol ;" in text  # foo.example.com's server
    assert "    real_ip_header      proxy_protocol;\n    real_ip_recursive   on;\n    set_real_ip_from    0.0.0.0/0;" in text
    paths.conf.write_text(text)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    done = subprocess.run([nginx, "-t", "-c", str(paths.conf), "-p", f"{tmp_path}/", "-e", str(paths.error_log)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    topo = parse_topology({"name": "x", "network": {"cni": "vpc-native"}, "nodes": [{"name": "n1"}], "ingressController": {"useProxyProtocol": True}})
    assert topo.ingress_controller.use_proxy_protocol is True
