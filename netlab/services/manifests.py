"""Real Kubernetes manifests, applied to a running lab: ``netlab apply LAB -f FILE.yaml``.

Accepted, as tutorials write them (several documents per file, or ``kind: List``):

- ``v1 Service``: ``metadata.name/namespace`` and the ``spec`` keys netlab models
  (:class:`netlab.services.model.Service`); a named ``targetPort`` is looked up in the
  selected pods' container ports. Bookkeeping keys the API server fills in (``clusterIPs``,
  ``ipFamilies``, ...) are accepted and ignored.
- ``v1 Pod``: name, namespace, labels, ``spec.nodeName`` (else the least loaded node),
  ``spec.hostNetwork``, ``spec.hostname``/``spec.subdomain`` (its name in a headless Service's
  DNS) and the containers' ports.
- ``apps/v1 Deployment``: ``spec.replicas``, ``spec.selector.matchLabels`` (must match the
  template's labels), ``spec.template`` labels, container ports, ``hostname`` and ``subdomain``
  (every replica gets the same, as in Kubernetes). Pods are named like a
  ReplicaSet names them (``<deployment>-<pod-template-hash>-<5 chars>``); applying again
  with another replica count scales it.
- ``v1 Namespace``: accepted (namespaces need no kernel object).
- ``networking.k8s.io/v1 Ingress`` and ``IngressClass``, ``v1 Secret``: read by
  :mod:`netlab.services.ingress_apply` (the ingress-nginx controller serves the Ingresses;
  ``--dry-run`` prints the nginx.conf it would load).

A Service's ``metadata.annotations`` are kept with it: MetalLB's (``metallb.io/loadBalancerIPs``,
``metallb.io/address-pool``) and ExternalDNS's (``external-dns.alpha.kubernetes.io/hostname``,
``.../ttl``) take effect; every other annotation is reported as ignored in the output, never
dropped silently. ``netlab delete LAB -f FILE`` deletes what a file applied (:func:`delete_file`).

Images are not run: every pod runs netlab's hostname server on its container ports
(:mod:`netlab.services.workload`), which is what the tutorials' hello apps do.

Every document is read and checked before anything is built, and every name is checked the
way the API server checks it (:mod:`netlab.model.k8s_names`: names, namespaces, labels and
selectors, container and port names, ``nodeName``, ``hostname``, ``subdomain``), so nothing
but validated names reaches kube-proxy's rules, a pod's resolv.conf or the cluster DNS.
Problems are :class:`TopologyError` naming the file, the document and the field (exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from netlab.errors import ConfigRejected, TopologyError
from netlab.model import aws_lb, from_pydantic, k8s_names, read_text
from netlab.model.service import Service
from netlab.services import cluster, externaldns, gateway_apply, ingress_apply, loadbalancer, pods
from netlab.services.records import ClusterRecord, Deployment, topology_of
from netlab.state import LabState

SERVICE_SPEC_KEYS = {
    "type", "selector", "ports", "sessionAffinity", "sessionAffinityConfig", "clusterIP", "externalTrafficPolicy", "externalName",
    "loadBalancerIP", "loadBalancerSourceRanges", "loadBalancerClass", "allocateLoadBalancerNodePorts", "healthCheckNodePort",
}
IGNORED_SERVICE_KEYS = {
    "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy",
    "publishNotReadyAddresses", "externalIPs",
}
KINDS = {("v1", "Service"), ("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Namespace")} | ingress_apply.KINDS | gateway_apply.KINDS
POD_NAME_SUFFIX = 17  # a Deployment's pods are <name>-<10 chars>-<5 chars>, and pod names have at most 63


@dataclass
class PodSpec:
    """What netlab takes from a Pod's (or a pod template's) ``spec``, checked."""

    ports: list[tuple[int, str]] = field(default_factory=list)  # containerPorts: (port, "TCP" | "UDP")
    named: dict[str, int] = field(default_factory=dict)  # named containerPorts
    node: str | None = None  # spec.nodeName
    host_network: bool = False
    hostname: str | None = None  # spec.hostname, spec.subdomain: the pod's name in a headless Service's DNS
    subdomain: str | None = None


@dataclass
class DeploymentSpec:
    replicas: int
    labels: dict[str, str]  # the pod template's
    pod: PodSpec
MODELLED_ANNOTATIONS = (*loadbalancer.MODELLED, *externaldns.MODELLED, *aws_lb.MODELLED)


class _Doc:
    """One document of a manifest file, checked, for error messages naming it."""

    def __init__(self, source: str, index: int, data: dict[str, Any]) -> None:
        self.source, self.index, self.data = source, index, data
        kind = data.get("kind", "")
        self.kind = kind if isinstance(kind, str) else ""
        meta = data.get("metadata")
        name = meta.get("name", "") if isinstance(meta, dict) else ""
        self.name = name if isinstance(name, str) else ""
        self.namespace = "default"
        self.labels: dict[str, str] = {}
        self.pod = PodSpec()
        self.deployment: DeploymentSpec | None = None
        self.annotations: dict[str, str] = {}

    def error(self, field: str, message: str) -> TopologyError:
        shown = bool(re.fullmatch("[A-Za-z][A-Za-z0-9]{0,62}", self.kind)) and not k8s_names.is_dns1123_subdomain(self.name)
        where = f"documents[{self.index}]" + (f" ({self.kind} {self.name})" if shown else "")
        return TopologyError(self.source, f"{where}.{field}" if field else where, message)

    def mapping(self, value: Any, field: str) -> dict[str, Any]:
        """``value`` as a mapping (absent: empty); anything else is refused naming ``field``."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(field, f"expected a mapping (got {type(value).__name__})")
        return value

    def items(self, value: Any, field: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(field, f"expected a list (got {type(value).__name__})")
        return value

    def check(self, field: str, what: str, value: Any, rule: k8s_names.Rule) -> None:
        message = k8s_names.problem(what, value, rule)
        if message is not None:
            raise self.error(field, message)

    def label_map(self, value: Any, field: str) -> dict[str, str]:
        labels = self.mapping(value, field)
        for key, item in labels.items():
            self.check(field, "label key", key, k8s_names.is_qualified_name)
            if not isinstance(item, str):
                raise self.error(f"{field}.{key}", f"label values are strings (got {type(item).__name__}: quote it)")
            self.check(f"{field}.{key}", "label value", item, k8s_names.is_valid_label_value)
        return dict(labels)


def load(path: str | Path) -> list[_Doc]:
    """Read every document of a manifest file and check it; nothing is built."""
    source = str(path)
    text = read_text(path)
    try:
        raw = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TopologyError(source, f"line {mark.line + 1}" if mark else "", f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:  # PyYAML's parser recurses once per nesting level
        raise TopologyError(source, "", "not valid YAML: the document nests too deeply") from None
    return documents(raw, source)


def documents(raw: list[Any], source: str) -> list[_Doc]:
    """Parsed YAML documents (``kind: List`` unfolded) as checked :class:`_Doc` objects."""
    docs: list[_Doc] = []
    for data in raw:
        items = data.get("items") if isinstance(data, dict) and data.get("kind") == "List" else [data]
        if not isinstance(items, list):
            raise TopologyError(source, f"documents[{len(docs)}].items", "expected a list of manifests")
        for item in items:
            if not isinstance(item, dict):
                raise TopologyError(source, f"documents[{len(docs)}]", "expected a mapping with apiVersion, kind, metadata")
            docs.append(_Doc(source, len(docs), item))
    if not docs:
        raise TopologyError(source, "", "no documents: expected Kubernetes manifests (kind: Service, Pod, Deployment, Ingress, ...)")
    for doc in docs:
        _check(doc)
    return docs


def _check(doc: _Doc) -> None:
    """Check one document's header, metadata and what netlab reads of its spec."""
    api = doc.data.get("apiVersion", "")
    api = api if isinstance(api, str) else ""
    if (api, doc.kind) not in KINDS:
        valid = ", ".join(f"{a} {k}" for a, k in sorted(KINDS))
        shown = f"{api or '<no apiVersion>'} {doc.kind or '<no kind>'}"
        raise doc.error("kind", f"{shown!r} is not supported; supported: {valid}")
    meta = doc.mapping(doc.data.get("metadata"), "metadata")
    name = meta.get("name")
    if name is None or name == "":
        raise doc.error("metadata.name", "required key is missing")
    if doc.kind == "Service":  # Kubernetes' rules for each kind's name; netlab's own for pods
        doc.check("metadata.name", "service name", name, k8s_names.is_dns1035_label)
    elif doc.kind == "Namespace":
        doc.check("metadata.name", "namespace name", name, k8s_names.is_dns1123_label)
    else:
        doc.check("metadata.name", f"{doc.kind} name", name, k8s_names.is_dns1123_subdomain)
        limit = 63 if doc.kind == "Pod" else 63 - POD_NAME_SUFFIX
        if doc.kind in ("Pod", "Deployment") and (k8s_names.is_dns1035_label(name) or len(name) > limit):
            why = "its network namespace is named after it" if doc.kind == "Pod" else f"its pods are named {name}-<10 chars>-<5 chars>"
            raise doc.error(
                "metadata.name",
                f"netlab needs a {doc.kind}'s name to be a DNS-1035 label (lowercase letters, digits and '-', starting with a "
                f"letter, not ending with '-') of at most {limit} characters ({why}): got {name!r}",
            )
    namespace = meta.get("namespace")
    if namespace is not None and namespace != "":
        doc.check("metadata.namespace", "namespace", namespace, k8s_names.is_dns1123_label)
        doc.namespace = namespace
    doc.labels = doc.label_map(meta.get("labels"), "metadata.labels")
    annotations = doc.mapping(meta.get("annotations"), "metadata.annotations")
    for key, value in annotations.items():
        doc.check("metadata.annotations", "annotation key", key, k8s_names.is_qualified_name)
        if not isinstance(value, str):
            raise doc.error(f"metadata.annotations.{key}", f"annotation values are strings (got {type(value).__name__}: quote it)")
    doc.annotations = dict(annotations)
    if doc.kind == "Pod":
        doc.pod = _pod_spec(doc, doc.data.get("spec"), "spec")
    elif doc.kind == "Deployment":
        doc.deployment = _deployment_spec(doc)
        doc.pod = doc.deployment.pod


def _pod_spec(doc: _Doc, value: Any, field: str) -> PodSpec:
    spec = doc.mapping(value, field)
    out = PodSpec()
    node = spec.get("nodeName")
    if node is not None:
        doc.check(f"{field}.nodeName", "nodeName", node, k8s_names.is_dns1123_subdomain)
        out.node = node
    host_network = spec.get("hostNetwork", False)
    if not isinstance(host_network, bool):
        raise doc.error(f"{field}.hostNetwork", f"expected true or false (got {host_network!r})")
    out.host_network = host_network
    for key in ("hostname", "subdomain"):
        if spec.get(key) is not None:
            doc.check(f"{field}.{key}", key, spec[key], k8s_names.is_dns1123_label)
            setattr(out, key, spec[key])
    for i, container in enumerate(doc.items(spec.get("containers"), f"{field}.containers")):
        where = f"{field}.containers[{i}]"
        container = doc.mapping(container, where)
        if container.get("name") is not None:
            doc.check(f"{where}.name", "container name", container["name"], k8s_names.is_dns1123_label)
        for j, port in enumerate(doc.items(container.get("ports"), f"{where}.ports")):
            port = doc.mapping(port, f"{where}.ports[{j}]")
            number = port.get("containerPort")
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
                raise doc.error(f"{where}.ports[{j}].containerPort", f"expected a port 1-65535 (got {number!r})")
            proto = port.get("protocol", "TCP")
            if not isinstance(proto, str) or proto.upper() not in ("TCP", "UDP"):
                raise doc.error(f"{where}.ports[{j}].protocol", f"netlab supports TCP and UDP (got {proto!r})")
            out.ports.append((number, proto.upper()))
            name = port.get("name")
            if name is not None:
                doc.check(f"{where}.ports[{j}].name", "port name", name, k8s_names.is_valid_port_name)
                if name in out.named:
                    raise doc.error(f"{where}.ports[{j}].name", f"port name {name!r} is used twice (Kubernetes refuses this too)")
                out.named[name] = number
    return out


def _deployment_spec(doc: _Doc) -> DeploymentSpec:
    spec = doc.mapping(doc.data.get("spec"), "spec")
    replicas = spec.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise doc.error("spec.replicas", f"expected a count of 0 or more (got {replicas!r})")
    template = doc.mapping(spec.get("template"), "spec.template")
    labels = doc.label_map(doc.mapping(template.get("metadata"), "spec.template.metadata").get("labels"), "spec.template.metadata.labels")
    selector = doc.mapping(spec.get("selector"), "spec.selector")
    match = doc.label_map(selector.get("matchLabels"), "spec.selector.matchLabels")
    if not match:
        raise doc.error("spec.selector.matchLabels", "required: the labels that pick the deployment's pods")
    if any(labels.get(k) != v for k, v in match.items()):
        raise doc.error("spec.template.metadata.labels", f"must include spec.selector.matchLabels {match} (Kubernetes refuses this too)")
    return DeploymentSpec(replicas, labels, _pod_spec(doc, template.get("spec"), "spec.template.spec"))


def parse_service(doc: _Doc, named_ports: dict[str, int]) -> Service:
    spec = dict(doc.mapping(doc.data.get("spec"), "spec"))
    for key in spec:
        if key not in SERVICE_SPEC_KEYS | IGNORED_SERVICE_KEYS:
            raise doc.error(f"spec.{key}", f"unknown Service key; netlab models: {', '.join(sorted(SERVICE_SPEC_KEYS))}")
    for key in IGNORED_SERVICE_KEYS:
        spec.pop(key, None)
    ports = []
    for i, port in enumerate(doc.items(spec.get("ports"), "spec.ports")):
        port = dict(doc.mapping(port, f"spec.ports[{i}]"))
        target = port.get("targetPort")
        if isinstance(target, str) and re.fullmatch("[0-9]+", target):
            port["targetPort"] = int(target)
        elif isinstance(target, str):
            doc.check(f"spec.ports[{i}].targetPort", "targetPort", target, k8s_names.is_valid_port_name)
            if target not in named_ports:
                raise doc.error(f"spec.ports[{i}].targetPort", f"named port {target!r} is not a container port of the selected pods (known: {', '.join(named_ports) or 'none'})")
            port["targetPort"] = named_ports[target]
        ports.append(port)
    if ports:
        spec["ports"] = ports
    try:
        return Service.model_validate({**spec, "name": doc.name, "namespace": doc.namespace, "annotations": doc.annotations})
    except ValidationError as exc:
        error = from_pydantic(exc, doc.source, Service)
        raise doc.error(f"spec.{error.field}" if error.field else "spec", error.message) from None


def apply_file(state: LabState, path: str | Path, dry_run: bool = False) -> list[str]:
    """Apply every document of ``path`` to the running lab; return kubectl-style result lines.

    The whole file is checked first (every document, the Services it defines, the nodes its
    pods name, its Ingresses as the API server and ingress-nginx admit them): a problem
    anywhere builds nothing. With ``dry_run``, nothing changes and the lines are the
    nginx.conf the ingress controller would load.
    """
    docs = load(path)
    named_ports = {name: number for doc in docs for name, number in doc.pod.named.items()}
    services = [parse_service(doc, named_ports) for doc in docs if doc.kind == "Service"]
    nodes = [n.name for n in topology_of(state).nodes]
    for doc in docs:
        if doc.kind == "Pod" and doc.pod.node is not None and doc.pod.node not in nodes:
            raise doc.error("spec.nodeName", f"lab {state.lab!r} has no node {doc.pod.node!r}; nodes: {', '.join(nodes)}")
    ingress_docs = ingress_apply.parse(list(docs))
    ingress_apply.admit(state, ingress_docs)
    gateway_docs = gateway_apply.parse(list(docs))
    if dry_run:  # the Secrets of a file with Gateways are for their HTTPS listeners: no ingress-nginx config then
        lines = ingress_apply.dry_run(state, ingress_docs, services).splitlines() if ingress_docs.ingresses or ingress_docs.classes or not gateway_docs else []
        if gateway_docs:
            more = gateway_apply.dry_run(state, gateway_docs, services, ingress_apply.dry_run_certs(state, ingress_docs))
            lines += more[1:] if lines else more  # one "nothing was changed" header
        return lines
    cluster.start(state)  # a lab without services yet gets kube-proxy, kube-dns and coredns first
    out: list[str] = []
    for doc in docs:
        if doc.kind == "Namespace":
            out.append(f"namespace/{doc.name} unchanged")
        elif doc.kind == "Deployment":
            out.append(_deployment(state, doc))
        elif doc.kind == "Pod":
            out.append(_pod(state, doc))
    before = {s.key for s in cluster.services_of(state)}
    if services:
        cluster.upsert_services(state, services)
    for svc in services:
        out.append(f"service/{svc.name} {'configured' if svc.key in before else 'created'}")
        ignored = ignored_annotations(svc)
        if ignored:
            out.append(f"service/{svc.name}: ignored annotations (netlab does not model them): {', '.join(ignored)}")
    if ingress_docs:
        out += ingress_apply.apply(state, ingress_docs)
    if gateway_docs:
        out += gateway_apply.apply(state, gateway_docs)
    cluster.sync(state)
    status = {row["service"]: row for row in cluster.describe_services(state)}
    for svc in services:
        pending = (status.get(svc.key, {}).get("loadBalancer") or {}).get("pending")
        if pending:
            out.append(f"service/{svc.name}: EXTERNAL-IP <pending>: {pending}")
    problem = ingress_apply.loaded(state) if ingress_docs else ""
    gateway_problem = gateway_apply.loaded(state) if gateway_docs else ""
    if gateway_problem:
        raise ConfigRejected(f"NGINX Gateway Fabric did not load the new configuration: {gateway_problem}\n  applied: {'; '.join(out)}")
    if problem:
        raise ConfigRejected(f"ingress-nginx did not load the new configuration: {problem}\n  applied: {'; '.join(out)}")
    return out


def ignored_annotations(svc: Service) -> list[str]:
    """``svc``'s annotations that have no effect in netlab (listed, never dropped silently)."""
    out = sorted(k for k in svc.annotations if k not in MODELLED_ANNOTATIONS)
    if aws_lb.claimed(svc.annotations, svc.load_balancer_class) and svc.type == "LoadBalancer":
        attributes = aws_lb.settings(svc.annotations, svc.external_traffic_policy).ignored
        out += [a for a in attributes if a.startswith(aws_lb.TG_ATTRIBUTES + ":")]
    return out


def delete_file(state: LabState, path: str | Path) -> list[str]:
    """``kubectl delete -f``: delete the Services, Deployments, Pods, Ingresses, IngressClasses
    and Secrets a file names; return kubectl's lines."""
    docs = load(path)
    out: list[str] = []
    keys = {s.key for s in cluster.services_of(state)}
    wanted = [f"{d.namespace}/{d.name}" for d in docs if d.kind == "Service"]
    missing = [k for k in wanted if k not in keys]
    if missing:
        raise TopologyError(str(path), "", f"services not found in lab {state.lab!r}: {', '.join(missing)}")
    ingress_docs = [d for d in docs if d.kind in ("Ingress", "IngressClass", "Secret")]
    if ingress_docs:  # all found, or nothing is deleted
        out += ingress_apply.delete(state, list(ingress_docs))
    gateway_docs = [d for d in docs if (str(d.data.get("apiVersion", "")), d.kind) in gateway_apply.KINDS]
    if gateway_docs:
        out += gateway_apply.delete(state, list(gateway_docs))
    if wanted:
        cluster.delete_services(state, wanted)
        out += [f'service "{k.split("/", 1)[1]}" deleted' for k in wanted]
    for doc in docs:
        if doc.kind == "Deployment":
            cluster.scale(state, doc.name, 0)
            record = ClusterRecord.load(state)
            record.deployments.pop(doc.name, None)
            record.store(state)
            out.append(f'deployment.apps "{doc.name}" deleted')
        elif doc.kind == "Pod":
            pods.remove(state, [doc.name])
            out.append(f'pod "{doc.name}" deleted')
    if gateway_docs or any(d.kind in ("Deployment", "Pod", "Ingress", "IngressClass", "Secret") for d in docs):
        cluster.sync(state)
    return out


def _deployment(state: LabState, doc: _Doc) -> str:
    spec = doc.deployment
    assert spec is not None  # _check parsed it
    known = ClusterRecord.load(state).deployments.get(doc.name)
    wanted = Deployment(doc.name, doc.namespace, spec.labels, list(spec.pod.ports), hostname=spec.pod.hostname, subdomain=spec.pod.subdomain)
    template = ("labels", "ports", "hostname", "subdomain")
    if known and any(getattr(known, key) != getattr(wanted, key) for key in template):
        cluster.scale(state, doc.name, 0, known)  # template changed: recreate the pods
        known = None
    if known:
        wanted.pods = known.pods
        if len(known.pods) == spec.replicas:
            return f"deployment.apps/{doc.name} unchanged"
    cluster.scale(state, doc.name, spec.replicas, wanted)
    return f"deployment.apps/{doc.name} {'configured' if known else 'created'}"


def _pod(state: LabState, doc: _Doc) -> str:
    if any(e.name == doc.name for e in state.host_objects()):
        return f"pod/{doc.name} unchanged"
    node = doc.pod.node or pods.least_loaded_node(state)
    pod: dict[str, Any] = {"name": doc.name, "labels": doc.labels}
    if doc.pod.host_network:
        pod["hostNetwork"] = True
    for key in ("hostname", "subdomain"):
        if getattr(doc.pod, key):
            pod[key] = getattr(doc.pod, key)
    pods.add(state, [(node, pod)], doc.namespace, doc.pod.ports)
    return f"pod/{doc.name} created"
