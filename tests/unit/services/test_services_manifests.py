"""Real Kubernetes manifests: what is accepted, and errors naming file, document and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab.errors import TopologyError
from netlab.services import manifests
from netlab.services.workload import http_reply

ROOT = Path(__file__).resolve().parents[3]


def test_shipped_manifests_parse() -> None:
    docs = manifests.load(ROOT / "topologies/manifests/hello-deployment.yaml")
    assert [(d.kind, d.name) for d in docs] == [("Deployment", "hello"), ("Service", "hello")]
    svc = manifests.parse_service(docs[1], {"http": 8080})
    assert svc.ports[0].target == 8080 and svc.type == "ClusterIP"
    docs = manifests.load(ROOT / "topologies/manifests/nginx-nodeport.yaml")
    svc = manifests.parse_service(docs[1], {})
    assert svc.type == "NodePort" and svc.ports[0].node_port == 30123


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_unsupported_kind_is_named(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as info:
        manifests.load(write(tmp_path, "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: b}\n"))
    assert info.value.field == "documents[1] (Ingress b).kind"
    assert "v1 Service" in info.value.message


def test_service_errors_name_the_spec_field(tmp_path: Path) -> None:
    docs = manifests.load(write(tmp_path, "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 80, nodePort: 99}]\n  type: NodePort\n"))
    with pytest.raises(TopologyError) as info:
        manifests.parse_service(docs[0], {})
    assert info.value.field == "documents[0] (Service web).spec.ports[0].nodePort"
    docs = manifests.load(write(tmp_path, "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 80, targetPort: http}]\n"))
    with pytest.raises(TopologyError) as info:
        manifests.parse_service(docs[0], {})
    assert "named port 'http'" in info.value.message


def test_api_server_bookkeeping_keys_are_ignored(tmp_path: Path) -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod}\nspec:\n  clusterIPs: [10.96.1.1]\n  ipFamilies: [IPv4]\n  ports: [{port: 80, protocol: tcp}]\n"
    svc = manifests.parse_service(manifests.load(write(tmp_path, text))[0], {})
    assert svc.key == "prod/web" and svc.ports[0].protocol == "TCP"


def test_hostname_server_reply() -> None:
    reply = http_reply("web-1", b"GET / HTTP/1.1\r\nHost: web\r\n\r\n", "10.244.1.3:5555")
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"\r\n\r\nweb-1\n")
    assert http_reply("web-1", b"GET /client HTTP/1.1\r\n\r\n", "203.0.113.1:4000").endswith(b"203.0.113.1:4000\n")
