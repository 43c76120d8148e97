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
    docs = manifests.load(ROOT / "topologies/manifests/db-headless.yaml")  # a Pod's spec.hostname/subdomain are kept
    assert [(d.name, d.pod.hostname, d.pod.subdomain) for d in docs if d.kind == "Pod"] == [
        ("db-0", "db-0", "db"), ("db-1", "db-1", "db"), ("adhoc", None, None),
    ]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_unsupported_kind_is_named(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as info:
        manifests.load(write(tmp_path, "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: b}\n"))
    assert info.value.field == "documents[1] (GRPCRoute b).kind"
    assert "v1 Service" in info.value.message and "networking.k8s.io/v1 Ingress" in info.value.message


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
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"\r\n\r\nweb-1\npath: /\nhost: web\nclient: 10.244.1.3:5555\n")
    proxied = b"GET /api/v1?q=1 HTTP/1.1\r\nHost: foo.example.com\r\nX-Real-IP: 203.0.113.1\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Proto: https\r\n\r\n"
    body = http_reply("web-1", proxied, "10.244.3.2:40000").split(b"\r\n\r\n", 1)[1].decode()
    assert body == (
        "web-1\npath: /api/v1?q=1\nhost: foo.example.com\nclient: 10.244.3.2:40000\n"
        "x-forwarded-for: 203.0.113.1\nx-real-ip: 203.0.113.1\nx-forwarded-proto: https\n"
    )
    assert http_reply("web-1", b"GET /client HTTP/1.1\r\n\r\n", "203.0.113.1:4000").endswith(b"203.0.113.1:4000\n")


# ----------------------------------------------------------------------------- issue 11: hostile manifests
# Each of these once reached the kernel or a file: a port name closing kube-proxy's quoted
# comment added a DNAT rule to PREROUTING on every node (and, when iptables-restore could not
# parse it, stayed in the lab record and broke every later apply/scale); a namespace with a
# newline wrote its own nameserver line into the pod's resolv.conf.
PORT_NAME_INJECTION = (
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
    "  ports:\n    - name: \"x\\\" -j ACCEPT\\n-A PREROUTING -p tcp -j DNAT --to-destination 192.0.2.1:80\\n#\"\n      port: 80\n"
)
NAMESPACE_INJECTION = (
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: evil\n  namespace: \"default\\nnameserver 192.0.2.1\"\n"
    "spec:\n  containers: [{name: c, image: x}]\n"
)


def test_port_name_injecting_an_iptables_rule_is_refused(tmp_path: Path) -> None:
    docs = manifests.load(write(tmp_path, PORT_NAME_INJECTION))
    with pytest.raises(TopologyError) as info:
        manifests.parse_service(docs[0], {})
    assert info.value.field == "documents[0] (Service web).spec.ports[0].name" and info.value.exit_code == 2
    assert "a lowercase RFC 1123 label" in info.value.message


def test_namespace_injecting_a_nameserver_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as info:
        manifests.load(write(tmp_path, NAMESPACE_INJECTION))
    assert info.value.field == "documents[0] (Pod evil).metadata.namespace" and info.value.exit_code == 2
    assert str(info.value).startswith(f"{tmp_path / 'm.yaml'}: ")


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("kind: Pod\napiVersion: v1\nmetadata: {name: web.v1}\n", "documents[0] (Pod web.v1).metadata.name", "DNS-1035 label"),
        ("kind: Pod\napiVersion: v1\nmetadata: {name: \"a\\nb\"}\n", "documents[0].metadata.name", "invalid Pod name"),
        ("kind: Pod\napiVersion: v1\nmetadata: {name: a, labels: {app: \"w b\"}}\n", "documents[0] (Pod a).metadata.labels.app", "invalid label value"),
        ("kind: Pod\napiVersion: v1\nmetadata: {name: a, labels: {\"a;b\": w}}\n", "documents[0] (Pod a).metadata.labels", "invalid label key"),
        ("kind: Pod\napiVersion: v1\nmetadata: {name: a, labels: {v: 1}}\n", "documents[0] (Pod a).metadata.labels.v", "strings"),
        ("kind: Pod\napiVersion: v1\nmetadata: {name: a}\nspec: {hostname: \"$(id)\"}\n", "documents[0] (Pod a).spec.hostname", "RFC 1123 label"),
        ("kind: Pod\napiVersion: v1\nmetadata: {name: a}\nspec: {nodeName: \"../n\"}\n", "documents[0] (Pod a).spec.nodeName", "RFC 1123 subdomain"),
        ("kind: Pod\napiVersion: v1\nmetadata: {name: a}\nspec: {containers: [{name: C}]}\n", "documents[0] (Pod a).spec.containers[0].name", "RFC 1123 label"),
        ("kind: Pod\napiVersion: v1\nmetadata: {name: a}\nspec: {containers: [{ports: [{containerPort: 80, name: two--hyphens}]}]}\n",
         "documents[0] (Pod a).spec.containers[0].ports[0].name", "consecutive hyphens"),
        ("kind: Pod\napiVersion: v1\nmetadata: {name: a}\nspec: {containers: [{ports: [{containerPort: true}]}]}\n",
         "documents[0] (Pod a).spec.containers[0].ports[0].containerPort", "1-65535"),
        ("kind: Pod\napiVersion: v1\nmetadata: {name: a}\nspec: [1]\n", "documents[0] (Pod a).spec", "expected a mapping"),
        ("kind: Pod\napiVersion: v1\nmetadata: [a]\n", "documents[0].metadata", "expected a mapping"),
        ("kind: List\nitems: 5\n", "documents[0].items", "expected a list"),
        ("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: " + "d" * 47 + "}\n", f"documents[0] (Deployment {'d' * 47}).metadata.name", "at most 46"),
        ("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\nspec: {replicas: true}\n", "documents[0] (Deployment d).spec.replicas", "0 or more"),
        ("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\nspec: {selector: {matchLabels: {app: \"x\\n\"}}}\n",
         "documents[0] (Deployment d).spec.selector.matchLabels.app", "invalid label value"),
        ("kind: Namespace\napiVersion: v1\nmetadata: {name: \"[/]x\"}\n", "documents[0].metadata.name", "invalid namespace name"),
        ("kind: \"Pod\\n\"\napiVersion: v1\nmetadata: {name: a}\n", "documents[0].kind", "is not supported"),
    ],
)
def test_hostile_fields_are_refused_naming_the_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    with pytest.raises(TopologyError) as info:
        manifests.load(write(tmp_path, text))
    assert info.value.field == field, info.value
    assert words in info.value.message, info.value


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ("{ports: [{port: 80, targetPort: \"ht tp\"}]}", "spec.ports[0].targetPort", "alpha-numeric"),
        ("{type: ExternalName, externalName: \"a..b\"}", "spec.externalName", "RFC 1123 subdomain"),
        ("{selector: {\"a b\": c}, ports: [{port: 80}]}", "spec.selector", "invalid selector key"),
        ("{ports: [{port: 80, protocol: \"TCP\\n\"}]}", "spec.ports[0].protocol", "'TCP' or 'UDP'"),
        ("{ports: [5]}", "spec.ports[0]", "expected a mapping"),
    ],
)
def test_hostile_service_fields_are_refused(tmp_path: Path, spec: str, field: str, words: str) -> None:
    docs = manifests.load(write(tmp_path, f"apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {spec}\n"))
    with pytest.raises(TopologyError) as info:
        manifests.parse_service(docs[0], {})
    assert info.value.field == f"documents[0] (Service web).{field}", info.value
    assert words in info.value.message, info.value


def test_a_file_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("apiVersion: v1\nkind: Pod\nmetadata: {name: caf\u00e9}\n".encode("latin-1"))
    with pytest.raises(TopologyError) as info:
        manifests.load(path)
    assert str(info.value) == f"{path}: line 3: not UTF-8 text (byte 0xe9 at offset 45): YAML files must be UTF-8"


def test_a_bad_document_anywhere_builds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole file is checked before the lab is touched: a Deployment before a hostile Service is not created."""
    from netlab.model import load_topology
    from netlab.services import cluster
    from netlab.state import LabState

    for name in ("start", "scale", "sync", "upsert_services"):
        monkeypatch.setattr(cluster, name, lambda *a, _n=name, **k: pytest.fail(f"cluster.{_n} ran for a bad file"))
    monkeypatch.setenv("NETLAB_STATE_DIR", str(tmp_path / "state"))
    topology = load_topology(ROOT / "topologies/services.yaml")
    state = LabState(lab="t11-bad", cni="host-gw", source="services.yaml", topology=topology.model_dump(mode="json", by_alias=True))
    deployment = (ROOT / "topologies/manifests/hello-deployment.yaml").read_text().split("---")[0]
    for bad in (PORT_NAME_INJECTION, NAMESPACE_INJECTION,
                "apiVersion: v1\nkind: Pod\nmetadata: {name: solo}\nspec: {nodeName: node9}\n"):
        with pytest.raises(TopologyError):
            manifests.apply_file(state, write(tmp_path, deployment + "---\n" + bad))
