"""Ingresses, IngressClasses and TLS Secrets from manifests, and the ingress-nginx add-on.

``netlab apply`` hands the documents of these kinds here (:mod:`.manifests` reads the file):

- ``networking.k8s.io/v1 Ingress``: validated as the API server validates it (the file, the
  document and the field on a problem, exit 2), then admitted as ingress-nginx's admission
  webhook admits it (its path check, no host/path another Ingress already defines); an
  Ingress without a class gets the default IngressClass, as the API server's
  DefaultIngressClass admission plugin sets it;
- ``networking.k8s.io/v1 IngressClass``: which controller serves a class;
- ``v1 Secret``: a ``kubernetes.io/tls`` Secret's pair is checked (a PEM certificate and
  the key that belongs to it) and kept for the controller; other types are stored unread.

Tutorials assume the controller was installed beforehand, so a lab gets one (:func:`install`)
the moment an Ingress it would serve is applied and none runs yet, like a cluster add-on,
and says so; a topology can also install it at ``up`` (``ingressController: {enabled:
true}``, :class:`IngressPhase`) or turn that off (``enabled: false``). The add-on is what the
ingress-nginx Helm chart / bare-metal manifests install: a controller pod in namespace
``ingress-nginx``, its Service ``ingress-nginx-controller`` (NodePort, as the bare-metal
manifests make it; or LoadBalancer, which gets its address from the lab's MetalLB pool like
any other), and IngressClass ``nginx``,
marked default (minikube's ingress add-on does the same) so Ingresses without a class are
served too.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from netlab.errors import TopologyError
from netlab.model import Topology, from_pydantic
from netlab.model.ingress import (
    CLASS_ANNOTATION,
    DEFAULT_CLASS_ANNOTATION,
    NGINX_CLASS,
    NGINX_CONTROLLER,
    AnnotationProblem,
    Ingress,
    IngressClass,
    IngressControllerSpec,
    nginx_path_problem,
    parse_annotations,
)
from netlab.model.service import Service
from netlab.services import cluster, ingress, pods, tls
from netlab.services.endpoints import endpoints_for
from netlab.services.ingress import LABELS, NAME, NAMESPACE, Controller, IngressRecord, SecretRecord
from netlab.services.nginx import DEFAULT_SERVER, Cert, build, render
from netlab.services.records import ClusterRecord, pods_of, topology_of
from netlab.state import LabState

KINDS = {("networking.k8s.io/v1", "Ingress"), ("networking.k8s.io/v1", "IngressClass"), ("v1", "Secret")}
TLS_TYPE = "kubernetes.io/tls"
INGRESS_KEYS = {"apiVersion", "kind", "metadata", "spec", "status"}


class Document(Protocol):
    """One document of a manifest file (:class:`netlab.services.manifests._Doc`)."""

    source: str
    index: int
    data: dict[str, Any]
    kind: str
    name: str
    namespace: str

    def error(self, field: str, message: str) -> TopologyError: ...


@dataclass
class ParsedSecret:
    doc: Document
    key: str
    type: str
    cert: bytes = b""
    private_key: bytes = b""
    info: tls.CertInfo | None = None


@dataclass
class Parsed:
    """The Ingress-related documents of one file, validated."""

    secrets: list[ParsedSecret] = field(default_factory=list)
    classes: list[tuple[Document, IngressClass]] = field(default_factory=list)
    ingresses: list[tuple[Document, Ingress]] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)  # by Ingress key: what admission did

    def __bool__(self) -> bool:
        return bool(self.secrets or self.classes or self.ingresses)


# --------------------------------------------------------------------------- reading documents
def parse_ingress(doc: Document) -> Ingress:
    for key in doc.data:
        if key not in INGRESS_KEYS:
            raise doc.error(key, f"unknown key; an Ingress has {', '.join(sorted(INGRESS_KEYS))}")
    meta = doc.data.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise doc.error("metadata.annotations", "expected a mapping of strings")
    for key, value in annotations.items():
        if not isinstance(value, str):
            raise doc.error(
                f"metadata.annotations.{key}",
                f"annotation values are strings: quote it ({key}: \"{str(value).lower() if isinstance(value, bool) else value}\"), "
                "as the API server refuses a bare value",
            )
    try:
        ing = Ingress.model_validate({"name": doc.name, "namespace": doc.namespace, "annotations": annotations, "spec": doc.data.get("spec") or {}})
    except ValidationError as exc:
        error = from_pydantic(exc, doc.source, Ingress)
        where = error.field
        if where in ("name", "namespace") or where.startswith("annotations"):
            where = "metadata." + where
        raise doc.error(where, error.message) from None
    try:
        parse_annotations(ing.annotations)
    except AnnotationProblem as exc:
        raise doc.error(f"metadata.annotations.{exc.key}", str(exc)) from None
    return ing


def parse_class(doc: Document) -> IngressClass:
    spec = doc.data.get("spec") or {}
    controller = spec.get("controller")
    if not isinstance(controller, str) or not controller:
        raise doc.error("spec.controller", f"required: the controller that serves this class (ingress-nginx: {NGINX_CONTROLLER})")
    for key in spec:
        if key not in ("controller", "parameters"):
            raise doc.error(f"spec.{key}", "unknown key; an IngressClass has controller and parameters")
    annotations = (doc.data.get("metadata") or {}).get("annotations") or {}
    return IngressClass(name=doc.name, controller=controller, default=str(annotations.get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true")


def parse_secret(doc: Document) -> ParsedSecret:
    kind = str(doc.data.get("type") or "Opaque")
    secret = ParsedSecret(doc, f"{doc.namespace}/{doc.name}", kind)
    if kind != TLS_TYPE:
        return secret
    data = doc.data.get("data") or {}
    strings = doc.data.get("stringData") or {}
    values: dict[str, bytes] = {}
    for name in ("tls.crt", "tls.key"):
        if name in strings:
            values[name] = str(strings[name]).encode()
        elif name in data:
            try:
                values[name] = base64.b64decode(str(data[name]), validate=True)
            except (binascii.Error, ValueError):
                raise doc.error(f"data.{name}", "not valid base64 (use stringData for PEM text)") from None
        else:
            raise doc.error(f"data.{name}", f"required for type {TLS_TYPE} (scripts/tls-secret.sh makes a pair and this manifest)")
    try:
        secret.info = tls.inspect(values["tls.crt"], values["tls.key"])
    except ValueError as exc:
        field_name = "data.tls.key" if str(exc).startswith("tls.key") else "data.tls.crt"
        raise doc.error(field_name, str(exc)) from None
    secret.cert, secret.private_key = values["tls.crt"], values["tls.key"]
    return secret


def parse(docs: list[Document]) -> Parsed:
    """Validate the documents of :data:`KINDS` (everything before anything changes)."""
    out = Parsed()
    for doc in docs:
        if doc.kind == "Secret":
            out.secrets.append(parse_secret(doc))
        elif doc.kind == "IngressClass":
            out.classes.append((doc, parse_class(doc)))
        elif doc.kind == "Ingress":
            out.ingresses.append((doc, parse_ingress(doc)))
    return out


# --------------------------------------------------------------------------- admission
def _nginx_wants(ing: Ingress, classes: dict[str, IngressClass]) -> bool:
    """Would ingress-nginx serve ``ing`` once installed (class nginx, or none)?"""
    annotation = ing.annotations.get(CLASS_ANNOTATION)
    name = ing.spec.ingress_class_name
    if name:
        klass = classes.get(name)
        return (klass.controller == NGINX_CONTROLLER) if klass else name == NGINX_CLASS
    return annotation is None or annotation == NGINX_CLASS


def admit(state: LabState, parsed: Parsed, topology: Topology | None = None) -> list[Ingress]:
    """The file's Ingresses as the API server and ingress-nginx's admission webhook admit them,
    in order; a refused one raises naming its document and field. Changes nothing."""
    topo = topology or topology_of(state)
    record = IngressRecord.load(state)
    classes = dict(record.classes)
    classes.update({c.name: c for _d, c in parsed.classes})
    installs = record.controller is None and topo.ingress_controller.enabled == "auto" and any(
        _nginx_wants(i, classes) for _d, i in parsed.ingresses
    )
    if installs or record.controller is not None:
        classes.setdefault(NGINX_CLASS, _nginx_class())
    default = next((c.name for c in classes.values() if c.default), None)
    current = list(record.ingresses)
    admitted = []
    parsed.notes = {}
    for doc, ing in parsed.ingresses:
        notes = parsed.notes.setdefault(ing.key, [])
        if not ing.spec.ingress_class_name and CLASS_ANNOTATION not in ing.annotations and default:
            ing = ing.model_copy(update={"spec": ing.spec.model_copy(update={"ingress_class_name": default})})
            notes.append(f"ingressClassName set to the default IngressClass {default}")
        probe = IngressRecord(classes=classes, ingresses=[*current, ing])
        if probe.class_problem(ing) is None:
            _webhook(doc, ing, [i for i in current if i.key != ing.key and probe.class_problem(i) is None])
        ignored = parse_annotations(ing.annotations).ignored
        if ignored:
            notes.append(f"annotation(s) not modelled by netlab, ignored: {', '.join(ignored)}")
        current = [i for i in current if i.key != ing.key] + [ing]
        admitted.append(ing)
    return admitted


def _webhook(doc: Document, ing: Ingress, others: list[Ingress]) -> None:
    """ingress-nginx's admission checks (controller.go CheckIngress): strict path types, and
    checkOverlap (no host and path another Ingress already defines)."""
    denied = 'admission webhook "validate.nginx.ingress.kubernetes.io" denied the request: '
    for i, rule in enumerate(ing.spec.rules):
        for j, path in enumerate(rule.http.paths if rule.http else ()):
            problem = nginx_path_problem(path.path, path.path_type)
            if problem:
                raise doc.error(f"spec.rules[{i}].http.paths[{j}].path", denied + problem)
    servers, _upstreams, _warnings = build([*others, ing], [], {}, {})
    by_host = {s.hostname: s for s in servers}
    for i, rule in enumerate(ing.spec.rules):
        server = by_host[rule.host or DEFAULT_SERVER]
        for j, path in enumerate(rule.http.paths if rule.http else ()):
            wanted = path.path or "/"
            for loc in server.locations:
                owner = loc.ingress
                if loc.path == wanted and not loc.is_def_backend and owner is not None and owner.key != ing.key:
                    raise doc.error(
                        f"spec.rules[{i}].http.paths[{j}].path",
                        denied + f'host "{rule.host or DEFAULT_SERVER}" and path "{wanted}" is already defined in ingress {owner.key}',
                    )


def _nginx_class() -> IngressClass:
    return IngressClass(name=NGINX_CLASS, controller=NGINX_CONTROLLER, default=True)


# --------------------------------------------------------------------------- the add-on
CONTROLLER_PORTS = ((80, "TCP"), (443, "TCP"))  # the controller pod's containerPorts http and https


def controller_pod_name(taken: set[str]) -> str:
    """The controller pod's name, as the Deployment's ReplicaSet would name it."""
    return pods.pod_name(NAME, {"labels": LABELS, "ports": [list(p) for p in CONTROLLER_PORTS]}, taken)


def controller_service(spec: IngressControllerSpec) -> Service:
    """Service ``ingress-nginx/ingress-nginx-controller`` as the ingress-nginx manifests make it
    (ports http 80 and https 443; NodePort on bare metal, LoadBalancer on a cloud), from the
    topology's ``ingressController``."""
    ports: list[dict[str, Any]] = [
        {"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": 443, "protocol": "TCP"},
    ]
    if spec.http_node_port:
        ports[0]["nodePort"] = spec.http_node_port
    if spec.https_node_port:
        ports[1]["nodePort"] = spec.https_node_port
    return Service.model_validate({
        "name": NAME, "namespace": NAMESPACE, "type": spec.type, "selector": LABELS, "ports": ports,
        "externalTrafficPolicy": spec.external_traffic_policy,
    })


# --------------------------------------------------------------------------- changing the lab
def install(state: LabState, reason: str) -> list[str]:
    """Install the ingress-nginx add-on (idempotent): controller pod, Service, IngressClass,
    and nginx running in the pod. Returns what it did, kubectl-style."""
    if IngressRecord.load(state).controller is not None:
        return []
    ingress.nginx_binary()  # refuse before anything is built
    tls.require()
    topo = topology_of(state)
    spec = topo.ingress_controller
    cluster.start(state)
    taken = {h.name for h in state.host_objects()}
    pod = controller_pod_name(taken)
    node = spec.node or pods.least_loaded_node(state)
    pods.add(state, [(node, {"name": pod, "labels": dict(LABELS)})], NAMESPACE, list(CONTROLLER_PORTS))
    (svc,) = cluster.upsert_services(state, [controller_service(spec)])
    record = IngressRecord.load(state)
    record.controller = Controller(pod=pod)
    record.classes.setdefault(NGINX_CLASS, _nginx_class())
    record.store(state)
    cluster.sync(state)  # kube-proxy rules for the Service; ingress.sync starts nginx
    node_ports = ",".join(f"{p.port}:{p.node_port}/{p.protocol}" for p in svc.ports)
    kind: str = spec.type
    if spec.type == "LoadBalancer":  # MetalLB (services/loadbalancer.py) gives it an address, or says why not
        row = next((r for r in cluster.describe_services(state) if r["service"] == svc.key), {})
        pending = (row.get("loadBalancer") or {}).get("pending")
        kind += f" EXTERNAL-IP {row.get('externalIP', '<pending>')}" + (f" ({pending})" if pending else "")
    return [
        f"ingress-nginx controller installed ({reason}), as the ingress-nginx manifests install it:",
        f"  pod {NAMESPACE}/{pod} on {node} runs nginx (config {ingress.paths(state.lab).conf})",
        f"  service/{NAME} -n {NAMESPACE}: {kind} {node_ports}, externalTrafficPolicy {spec.external_traffic_policy}",
        f"  ingressclass.networking.k8s.io/{NGINX_CLASS} (controller {NGINX_CONTROLLER}, the default class)",
    ]


def apply(state: LabState, parsed: Parsed) -> list[str]:
    """Store the file's Secrets, IngressClasses and (admitted) Ingresses, installing the
    controller first if they need one. The caller syncs the cluster afterwards."""
    topo = topology_of(state)
    admitted = admit(state, parsed, topo)  # again: a refusal changes nothing
    out: list[str] = []
    record = IngressRecord.load(state)
    if parsed.secrets:
        p = ingress.prepare(state)
        for secret in parsed.secrets:
            verb = "configured" if secret.key in record.secrets else "created"
            entry = SecretRecord(secret.type)
            if secret.info is not None:
                pem = p.ssl / f"{secret.doc.namespace}-{secret.doc.name}.pem"
                if not pem.exists():
                    state.will_write(pem)
                tls.write_pem(pem, secret.cert, secret.private_key)
                entry = SecretRecord(secret.type, str(pem), list(secret.info.names), secret.info.not_after)
            record.secrets[secret.key] = entry
            note = "" if secret.info else f" (type {secret.type}: stored, nothing in the lab reads it)"
            out.append(f"secret/{secret.doc.name} {verb}{note}")
    for _doc, klass in parsed.classes:
        verb = "configured" if klass.name in record.classes else "created"
        record.classes[klass.name] = klass
        out.append(f"ingressclass.networking.k8s.io/{klass.name} {verb}")
    record.store(state)
    classes = dict(record.classes)
    wanted = [i for i in admitted if _nginx_wants(i, classes)]
    if wanted and record.controller is None:
        if topo.ingress_controller.enabled == "auto":
            out += install(state, f"ingress {wanted[0].key} needs one and none ran: tutorials assume it is installed")
        else:
            out.append(f"note: no ingress controller serves ingress {wanted[0].key}: the topology says ingressController.enabled: false")
    record = IngressRecord.load(state)
    for ing in admitted:
        known = [i.key for i in record.ingresses]
        verb = "configured" if ing.key in known else "created"
        if ing.key in known:
            record.ingresses[known.index(ing.key)] = ing  # an update keeps its creation order
        else:
            record.ingresses.append(ing)
        notes = parsed.notes.get(ing.key, [])
        out.append(f"ingress.networking.k8s.io/{ing.name} {verb}" + (f" ({'; '.join(notes)})" if notes else ""))
    record.store(state)
    return out


def _dry_secrets(state: LabState, parsed: Parsed) -> dict[str, SecretRecord]:
    """The file's TLS Secrets as :func:`apply` would store them (where their PEM file would be)."""
    out = {}
    for secret in parsed.secrets:
        if secret.info is not None:
            pem = ingress.paths(state.lab).ssl / f"{secret.doc.namespace}-{secret.doc.name}.pem"
            out[secret.key] = SecretRecord(secret.type, str(pem), list(secret.info.names), secret.info.not_after)
    return out


def dry_run_certs(state: LabState, parsed: Parsed) -> dict[str, Cert]:
    """The lab's TLS certificates with the file's Secrets applied (nothing changes): what a
    Gateway's HTTPS listener can reference in ``--dry-run``."""
    record = IngressRecord.load(state)
    record.secrets.update(_dry_secrets(state, parsed))
    return record.certs()


def dry_run(state: LabState, parsed: Parsed, services: list[Service]) -> str:
    """The nginx.conf the controller would load with the file applied (nothing changes)."""
    admitted = admit(state, parsed)
    record = IngressRecord.load(state)
    record.secrets.update(_dry_secrets(state, parsed))
    record.classes.update({c.name: c for _d, c in parsed.classes})
    if record.controller is None:
        record.classes.setdefault(NGINX_CLASS, _nginx_class())
    for ing in admitted:
        record.ingresses = [i for i in record.ingresses if i.key != ing.key] + [ing]
    replaced = {s.key for s in services}
    cluster_record = ClusterRecord.load(state)
    all_services = [s for s in cluster_record.services if s.key not in replaced] + list(services)
    endpoints = endpoints_for(all_services, pods_of(state, cluster_record))
    pod = record.controller.pod if record.controller else ""
    proxy_protocol = topology_of(state).ingress_controller.use_proxy_protocol
    rendered = render(record.served(), all_services, endpoints, record.certs(), ingress.paths(state.lab), pod, proxy_protocol)
    head = ["# netlab apply --dry-run: nothing was changed. Pods this file would create are not endpoints yet."]
    head += [f"# warning: {w}" for w in rendered.warnings]
    return "\n".join(head) + "\n" + rendered.text


def delete(state: LabState, docs: list[Document]) -> list[str]:
    """``kubectl delete -f`` for the file's Ingresses, IngressClasses and Secrets: all of them
    must exist (else nothing is deleted); return kubectl's lines. The caller syncs the cluster."""
    record = IngressRecord.load(state)
    ingresses = {i.key for i in record.ingresses}
    wanted = [(d.kind, f"{d.namespace}/{d.name}", d.name) for d in docs if d.kind in ("Ingress", "IngressClass", "Secret")]
    missing = [
        f"{kind} {key if kind != 'IngressClass' else name}" for kind, key, name in wanted
        if (kind == "Ingress" and key not in ingresses) or (kind == "Secret" and key not in record.secrets)
        or (kind == "IngressClass" and name not in record.classes)
    ]
    if missing:
        raise TopologyError(docs[0].source, "", f"not found in lab {state.lab!r}: {', '.join(missing)}")
    out = []
    for kind, key, name in wanted:
        if kind == "Ingress":
            record.ingresses = [i for i in record.ingresses if i.key != key]
            out.append(f'ingress.networking.k8s.io "{name}" deleted')
        elif kind == "Secret":
            secret = record.secrets.pop(key)
            if secret.pem:
                Path(secret.pem).unlink(missing_ok=True)  # journaled: down would remove it too
            out.append(f'secret "{name}" deleted')
        else:
            record.classes.pop(name)
            out.append(f'ingressclass.networking.k8s.io "{name}" deleted')
    record.store(state)
    return out


def loaded(state: LabState) -> str:
    """Why the controller's nginx did not load the latest configuration ("" when it did)."""
    ctl = IngressRecord.load(state).controller
    return ctl.last_error if ctl else ""


class IngressPhase:
    """The ingress-nginx add-on at ``netlab up`` (topology ``ingressController: {enabled: true}``)."""

    name = "installing the ingress-nginx controller"

    def preflight(self, topology: Topology) -> None:
        ingress.nginx_binary()
        tls.require()

    def start(self, state: LabState) -> None:
        install(state, "the topology enables it")
