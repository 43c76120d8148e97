"""Gateway API: validation (exit 2 naming file, document and field), NGF-style rendering, and a
hostile-string fuzz of every manifest string that can reach nginx.conf."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from netlab.errors import TopologyError
from netlab.model.gateway import Gateway, HTTPRoute
from netlab.model.service import Service
from netlab.services import gateway_apply, manifests
from netlab.services.gateway_nginx import intersect, render
from netlab.services.kubeproxy import Endpoint
from netlab.services.nginx import Paths

MANIFESTS = Path(__file__).resolve().parents[3] / "topologies" / "manifests"
GW = {"name": "web", "spec": {"gatewayClassName": "nginx", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"}]}}
ROUTE: dict[str, Any] = {"name": "r", "spec": {
    "parentRefs": [{"name": "web"}], "hostnames": ["cafe.example.com"],
    "rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/p"}, "headers": [{"name": "X-V", "value": "v2"}],
                      "queryParams": [{"name": "q", "value": "1"}]}],
         "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-A", "value": "a"}], "add": [{"name": "X-B", "value": "b"}], "remove": ["X-C"]}},
                     {"type": "URLRewrite", "urlRewrite": {"hostname": "h.example.com", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/n"}}}],
         "backendRefs": [{"name": "a", "port": 80, "weight": 90}, {"name": "b", "port": 80, "weight": 10}]},
        {"matches": [{"path": {"type": "Exact", "value": "/old"}}],
         "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "hostname": "x.example.com", "statusCode": 301}}]},
    ]}}
SERVICES = [Service.model_validate({"name": n, "selector": {"app": n}, "ports": [{"port": 80, "targetPort": 8080}]}) for n in ("a", "b")]
ENDPOINTS = {"default/a": [Endpoint("10.244.1.2", "node1", "a-1")], "default/b": [Endpoint("10.244.2.2", "node2", "b-1")]}


def _render(route: dict[str, Any] = ROUTE, services: list[Service] = SERVICES) -> Any:
    return render(Gateway.model_validate(GW), [HTTPRoute.model_validate(route)], services, ENDPOINTS, {}, Paths(Path("/run/x")))


def test_ngf_style_rendering() -> None:
    r = _render()
    text = r.text
    assert "split_clients $request_id $group_default__r_rule0 {" in text
    assert "90.00% default_a_80;" in text and "10.00% default_b_80;" in text
    assert "location /p/ {" in text and "location = /p {" in text and "location = /old {" in text
    assert re.search(r"map \$http_x_v \$gw_s0_l\d_m0_c0 {", text) and '"~^v2$" 1;' in text and "map $arg_q" in text
    assert "rewrite ^/p([^?]*)? /n$1?$args? break;  # URLRewrite" in text
    assert "proxy_set_header Host h.example.com;" in text and 'proxy_set_header X-A "a";' in text
    assert 'proxy_set_header X-B "${x_b_header_var}b";' in text and 'proxy_set_header X-C "";' in text
    assert 'return 301 "https://x.example.com$request_uri";' in text
    assert "server 10.244.1.2:8080;  # a-1" in text and "server_name cafe.example.com;" in text
    (parent,) = r.routes["default/r"]
    assert [str(c) for c in parent.conditions] == ["Accepted=True (Accepted)", "ResolvedRefs=True (ResolvedRefs)"]


def test_missing_backend_is_500_for_its_share_and_resolved_refs_false() -> None:
    r = _render(services=SERVICES[:1])
    assert "10.00% invalid-backend-ref;" in r.text and "upstream invalid-backend-ref {" in r.text and "return 500;" in r.text
    (parent,) = r.routes["default/r"]
    assert str(parent.conditions[1]).startswith("ResolvedRefs=False (BackendNotFound: Service default/b not found")
    assert any("BackendNotFound" in w for w in r.warnings)


def test_not_attached_reasons() -> None:
    route = copy.deepcopy(ROUTE)
    route["spec"]["hostnames"] = ["cafe.other.org"]
    (parent,) = _render(route).routes["default/r"]
    assert str(parent.conditions[0]).startswith("Accepted=False (NoMatchingListenerHostname")
    route["spec"]["parentRefs"] = [{"name": "web", "sectionName": "https"}]
    (parent,) = _render(route).routes["default/r"]
    assert str(parent.conditions[0]).startswith("Accepted=False (NoMatchingParent")
    route = copy.deepcopy(ROUTE) | {"namespace": "other"}
    route["spec"]["parentRefs"] = [{"name": "web", "namespace": "default"}]
    (parent,) = _render(route).routes["other/r"]
    assert str(parent.conditions[0]).startswith("Accepted=False (NotAllowedByListeners")


def test_hostname_intersection() -> None:
    assert intersect(None, []) == ["~^"]
    assert intersect("*.example.com", ["a.example.com", "b.org"]) == ["a.example.com"]
    assert intersect("a.example.com", ["*.example.com"]) == ["a.example.com"]
    assert intersect("*.example.com", ["*.example.com"]) == ["*.example.com"]


@pytest.mark.parametrize("name", ["gateway-basic.yaml", "gateway-header-match.yaml", "gateway-canary.yaml"])
def test_shipped_manifests_parse(name: str) -> None:
    parsed = gateway_apply.parse(list(manifests.load(MANIFESTS / name)))
    assert parsed.gateways and parsed.routes


@pytest.mark.parametrize(("doc", "field", "words"), [
    ("kind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{name: web}], rules: [{matches: [{path: {type: RegularExpression, value: /x}}]}]}",
     "spec.rules[0].matches[0].path.type", "Exact"),
    ("kind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{name: web}], rules: [{filters: [{type: RequestMirror, requestMirror: {}}]}]}",
     "spec.rules[0].filters[0]", ""),
    ("kind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{name: web}], rules: [{backendRefs: [{name: a}]}]}",
     "spec.rules[0].backendRefs[0]", "port is required"),
    ("kind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: nginx, listeners: [{name: t, port: 9, protocol: TCP}]}",
     "spec.listeners[0].protocol", ""),
    ("kind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{name: web}], rules: [{matches: [{headers: [{name: X, value: 'a\"; return 200'}]}]}]}",
     "spec.rules[0].matches[0].headers[0].value", "netlab renders only"),
])
def test_invalid_manifests_name_file_document_and_field(tmp_path: Path, doc: str, field: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: gateway.networking.k8s.io/v1\n" + doc + "\n")
    with pytest.raises(TopologyError) as exc:
        gateway_apply.parse(list(manifests.load(path)))
    text = str(exc.value)
    assert str(path) in text and field in text and words in text, text


def test_ignored_fields_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
                    "spec: {parentRefs: [{name: web}], rules: [{timeouts: {request: 10s}, backendRefs: [{name: a, port: 80}]}]}\n")
    parsed = gateway_apply.parse(list(manifests.load(path)))
    assert parsed.ignored == ["httproute/r: spec.rules[0].timeouts (not modelled by netlab, ignored)"]


HOSTILE = st.one_of(
    st.sampled_from(['a"b', "a\nb", "a;b", "a}b", "a{b", "$host", "a\\b", "a\rb", "x\x00", "' return 200; '", "é", "a b", "/../x", "//x", "*"]),
    st.text(min_size=1, max_size=12),
)
SLOTS = [
    ("spec", "hostnames", 0), ("rules0", "path"), ("rules0", "header_name"), ("rules0", "header_value"), ("rules0", "query_name"),
    ("rules0", "query_value"), ("rules0", "set_value"), ("rules0", "add_name"), ("rules0", "remove"), ("rules0", "rewrite_host"),
    ("rules0", "replace"), ("rules1", "redirect_host"), ("rules0", "backend"),
]


def _put(route: dict[str, Any], slot: tuple[Any, ...], value: str) -> None:
    spec = route["spec"]
    r0, r1 = spec["rules"]
    m = r0["matches"][0]
    hm = r0["filters"][0]["requestHeaderModifier"]
    uw = r0["filters"][1]["urlRewrite"]
    where = slot[1]
    if where == "hostnames":
        spec["hostnames"] = [value]
    elif where == "path":
        m["path"]["value"] = value
    elif where == "header_name":
        m["headers"][0]["name"] = value
    elif where == "header_value":
        m["headers"][0]["value"] = value
    elif where == "query_name":
        m["queryParams"][0]["name"] = value
    elif where == "query_value":
        m["queryParams"][0]["value"] = value
    elif where == "set_value":
        hm["set"][0]["value"] = value
    elif where == "add_name":
        hm["add"][0]["name"] = value
    elif where == "remove":
        hm["remove"] = [value]
    elif where == "rewrite_host":
        uw["hostname"] = value
    elif where == "replace":
        uw["path"]["replacePrefixMatch"] = value
    elif where == "redirect_host":
        r1["filters"][0]["requestRedirect"]["hostname"] = value
    elif where == "backend":
        r0["backendRefs"][0]["name"] = value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SLOTS), HOSTILE)
def test_hostile_strings_are_refused_or_harmless(slot: tuple[Any, ...], value: str) -> None:
    route = copy.deepcopy(ROUTE)
    _put(route, slot, value)
    try:
        r = _render(route)
    except ValidationError:
        return
    for line in r.text.splitlines():
        assert "\r" not in line and "\x00" not in line
        code = line.split("#", 1)[0] if '"' not in line.split("#", 1)[0] else line
        assert code.count('"') % 2 == 0, line
    # what got through is in netlab's alphabet: no quote, backslash, brace, semicolon or line break
    assert not re.search(r'["\\{};\n\r\x00]', value) or value not in r.text
