"""Real Kubernetes manifests, applied to a running lab: ``netlab apply LAB -f FILE.yaml``.

Accepted, as tutorials write them (several documents per file, or ``kind: List``):

- ``v1 Service``: ``metadata.name/namespace`` and the ``spec`` keys netlab models
  (:class:`netlab.services.model.Service`); a named ``targetPort`` is looked up in the
  selected pods' container ports. Bookkeeping keys the API server fills in (``clusterIPs``,
  ``ipFamilies``, ...) are accepted and ignored.
- ``v1 Pod``: name, namespace, labels, ``spec.nodeName`` (else the least loaded node),
  ``spec.hostNetwork`` and the containers' ports.
- ``apps/v1 Deployment``: ``spec.replicas``, ``spec.selector.matchLabels`` (must match the
  template's labels), ``spec.template`` labels and container ports. Pods are named like a
  ReplicaSet names them (``<deployment>-<pod-template-hash>-<5 chars>``); applying again
  with another replica count scales it.
- ``v1 Namespace``: accepted (namespaces need no kernel object).

Images are not run: every pod runs netlab's hostname server on its container ports
(:mod:`netlab.services.workload`), which is what the tutorials' hello apps do. Problems
are :class:`TopologyError` naming the file, the document and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from netlab.errors import TopologyError
from netlab.model import from_pydantic
from netlab.model.service import Service
from netlab.services import cluster, pods
from netlab.services.records import ClusterRecord, Deployment
from netlab.state import LabState

SERVICE_SPEC_KEYS = {
    "type", "selector", "ports", "sessionAffinity", "sessionAffinityConfig", "clusterIP", "externalTrafficPolicy", "externalName",
}
IGNORED_SERVICE_KEYS = {
    "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy", "allocateLoadBalancerNodePorts",
    "publishNotReadyAddresses", "loadBalancerIP", "loadBalancerSourceRanges", "healthCheckNodePort", "externalIPs",
}


class _Doc:
    """One document of a manifest file, for error messages naming it."""

    def __init__(self, source: str, index: int, data: dict[str, Any]) -> None:
        self.source, self.index, self.data = source, index, data
        self.kind = str(data.get("kind", ""))
        meta = data.get("metadata") or {}
        self.name = str(meta.get("name", ""))
        self.namespace = str(meta.get("namespace") or "default")
        self.labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}

    def error(self, field: str, message: str) -> TopologyError:
        where = f"documents[{self.index}]" + (f" ({self.kind} {self.name})" if self.name else "")
        return TopologyError(self.source, f"{where}.{field}" if field else where, message)


def load(path: str | Path) -> list[_Doc]:
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TopologyError(source, "", f"cannot read the file: {exc.strerror or exc}") from None
    try:
        raw = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TopologyError(source, f"line {mark.line + 1}" if mark else "", f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    docs: list[_Doc] = []
    for data in raw:
        items = data.get("items", []) if isinstance(data, dict) and data.get("kind") == "List" else [data]
        for item in items:
            if not isinstance(item, dict):
                raise TopologyError(source, f"documents[{len(docs)}]", "expected a mapping with apiVersion, kind, metadata")
            docs.append(_Doc(source, len(docs), item))
    if not docs:
        raise TopologyError(source, "", "no documents: expected Kubernetes manifests (kind: Service, Pod, Deployment)")
    for doc in docs:
        _check_header(doc)
    return docs


KINDS = {("v1", "Service"), ("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Namespace")}


def _check_header(doc: _Doc) -> None:
    key = (str(doc.data.get("apiVersion", "")), doc.kind)
    if key not in KINDS:
        valid = ", ".join(f"{a} {k}" for a, k in sorted(KINDS))
        raise doc.error("kind", f"{key[0] or '<no apiVersion>'} {key[1] or '<no kind>'} is not supported; supported: {valid}")
    if not doc.name:
        raise doc.error("metadata.name", "required key is missing")


def _container_ports(doc: _Doc, spec: dict[str, Any], field: str) -> tuple[list[tuple[int, str]], dict[str, int]]:
    ports: list[tuple[int, str]] = []
    named: dict[str, int] = {}
    for i, container in enumerate(spec.get("containers") or []):
        for j, port in enumerate(container.get("ports") or []):
            number = port.get("containerPort")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                raise doc.error(f"{field}.containers[{i}].ports[{j}].containerPort", f"expected a port 1-65535 (got {number!r})")
            proto = str(port.get("protocol", "TCP")).upper()
            if proto not in ("TCP", "UDP"):
                raise doc.error(f"{field}.containers[{i}].ports[{j}].protocol", f"netlab supports TCP and UDP (got {proto!r})")
            ports.append((number, proto))
            if port.get("name"):
                named[str(port["name"])] = number
    return ports, named


def parse_service(doc: _Doc, named_ports: dict[str, int]) -> Service:
    spec = dict(doc.data.get("spec") or {})
    for key in spec:
        if key not in SERVICE_SPEC_KEYS | IGNORED_SERVICE_KEYS:
            raise doc.error(f"spec.{key}", f"unknown Service key; netlab models: {', '.join(sorted(SERVICE_SPEC_KEYS))}")
    for key in IGNORED_SERVICE_KEYS:
        spec.pop(key, None)
    ports = []
    for i, port in enumerate(spec.get("ports") or []):
        port = dict(port)
        target = port.get("targetPort")
        if isinstance(target, str) and not target.isdigit():
            if target not in named_ports:
                raise doc.error(f"spec.ports[{i}].targetPort", f"named port {target!r} is not a container port of the selected pods (known: {', '.join(named_ports) or 'none'})")
            port["targetPort"] = named_ports[target]
        elif isinstance(target, str):
            port["targetPort"] = int(target)
        ports.append(port)
    if ports:
        spec["ports"] = ports
    try:
        return Service.model_validate({"name": doc.name, "namespace": doc.namespace, **spec})
    except ValidationError as exc:
        error = from_pydantic(exc, doc.source, Service)
        raise doc.error(f"spec.{error.field}" if error.field else "spec", error.message) from None


def apply_file(state: LabState, path: str | Path) -> list[str]:
    """Apply every document of ``path`` to the running lab; return kubectl-style result lines."""
    docs = load(path)
    cluster.start(state)  # a lab without services yet gets kube-proxy, kube-dns and coredns first
    out: list[str] = []
    named_ports: dict[str, int] = {}
    for doc in docs:
        if doc.kind == "Namespace":
            out.append(f"namespace/{doc.name} unchanged")
        elif doc.kind == "Deployment":
            out.append(_deployment(state, doc, named_ports))
        elif doc.kind == "Pod":
            out.append(_pod(state, doc, named_ports))
    services = []
    for doc in docs:
        if doc.kind == "Service":
            services.append(parse_service(doc, named_ports))
    before = {s.key for s in cluster.services_of(state)}
    if services:
        cluster.upsert_services(state, services)
    for svc in services:
        out.append(f"service/{svc.name} {'configured' if svc.key in before else 'created'}")
    cluster.sync(state)
    return out


def _deployment(state: LabState, doc: _Doc, named_ports: dict[str, int]) -> str:
    spec = doc.data.get("spec") or {}
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        raise doc.error("spec.replicas", f"expected a count of 0 or more (got {replicas!r})")
    template = spec.get("template") or {}
    labels = {str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()}
    match = {str(k): str(v) for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items()}
    if not match:
        raise doc.error("spec.selector.matchLabels", "required: the labels that pick the deployment's pods")
    if any(labels.get(k) != v for k, v in match.items()):
        raise doc.error("spec.template.metadata.labels", f"must include spec.selector.matchLabels {match} (Kubernetes refuses this too)")
    ports, named = _container_ports(doc, template.get("spec") or {}, "spec.template.spec")
    named_ports.update(named)
    known = ClusterRecord.load(state).deployments.get(doc.name)
    wanted = Deployment(doc.name, doc.namespace, labels, list(ports))
    if known and (known.labels != labels or known.ports != wanted.ports):
        cluster.scale(state, doc.name, 0, known)  # template changed: recreate the pods
        known = None
    if known:
        wanted.pods = known.pods
        if len(known.pods) == replicas:
            return f"deployment.apps/{doc.name} unchanged"
    cluster.scale(state, doc.name, replicas, wanted)
    return f"deployment.apps/{doc.name} {'configured' if known else 'created'}"


def _pod(state: LabState, doc: _Doc, named_ports: dict[str, int]) -> str:
    spec = doc.data.get("spec") or {}
    ports, named = _container_ports(doc, spec, "spec")
    named_ports.update(named)
    if any(e.name == doc.name for e in state.host_objects()):
        return f"pod/{doc.name} unchanged"
    node = spec.get("nodeName") or pods.least_loaded_node(state)
    pod: dict[str, Any] = {"name": doc.name, "labels": doc.labels}
    if spec.get("hostNetwork"):
        pod["hostNetwork"] = True
    pods.add(state, [(str(node), pod)], doc.namespace, ports)
    return f"pod/{doc.name} created"
