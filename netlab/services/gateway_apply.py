"""GatewayClasses, Gateways and HTTPRoutes from manifests, and NGINX Gateway Fabric's data planes.

``netlab apply`` hands the ``gateway.networking.k8s.io/v1`` documents here
(:mod:`.manifests` reads the file). Each is validated as the API server validates it against
the Gateway API's CRDs (the file, the document and the field on a problem, exit 2); fields
netlab does not model but that change nothing it renders are listed as ignored.

Tutorials assume NGINX Gateway Fabric is installed, so the first Gateway API document applied
to a lab installs it like a cluster add-on and says so: GatewayClass ``nginx`` (controllerName
``gateway.nginx.org/nginx-gateway-controller``, as its Helm chart creates it). A Gateway of a
class it serves gets its data plane, as NGF's provisioner makes it
(``internal/controller/provisioner/objects.go``): a pod running nginx and a Service, both named
``<gateway>-<gatewayclass>`` in the Gateway's namespace, with the listeners' ports and
externalTrafficPolicy Local; LoadBalancer (NGF's default) when the lab has a MetalLB pool,
else NodePort.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from netlab.errors import TopologyError
from netlab.model import external_dns, from_pydantic, k8s_names
from netlab.model.gateway import GATEWAY_API, NGF_CLASS, NGF_CONTROLLER, Gateway, GatewayClass, HTTPRoute, ignored_fields
from netlab.model.ingress import BOOKKEEPING_ANNOTATIONS
from netlab.model.service import Service
from netlab.services import cluster, gateway, ingress, pods
from netlab.services.gateway import DataPlane, GatewayRecord, resource_name
from netlab.services.ingress_apply import Document
from netlab.services.nginx import Cert
from netlab.services.records import topology_of
from netlab.state import LabState

KINDS = {(GATEWAY_API, "GatewayClass"), (GATEWAY_API, "Gateway"), (GATEWAY_API, "HTTPRoute")}
TOP_KEYS = {"apiVersion", "kind", "metadata", "spec", "status"}
POD_NAME_SUFFIX = 17


@dataclass
class Parsed:
    classes: list[tuple[Document, GatewayClass]] = field(default_factory=list)
    gateways: list[tuple[Document, Gateway]] = field(default_factory=list)
    routes: list[tuple[Document, HTTPRoute]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.classes or self.gateways or self.routes)


def _validate(doc: Document, model: type[BaseModel], data: dict[str, Any], prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = from_pydantic(exc, doc.source, model)
        where = error.field
        if where and where not in ("name", "namespace"):
            where = where if where.startswith("spec") or not prefix else f"{prefix}.{where}"
        raise doc.error(where or prefix, error.message) from None


def parse_doc(doc: Document, out: Parsed) -> None:
    for key in doc.data:
        if key not in TOP_KEYS:
            raise doc.error(key, f"unknown key; a {doc.kind} has {', '.join(sorted(TOP_KEYS))}")
    spec = doc.data.get("spec")
    if not isinstance(spec, dict):
        raise doc.error("spec", "required: a mapping")
    spec, ignored = ignored_fields(doc.kind, spec)
    meta = doc.data.get("metadata") or {}
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}  # checked by the manifest loader
    read = external_dns.ROUTE_KEYS if doc.kind == "HTTPRoute" else ()  # ExternalDNS's gateway-httproute source reads these
    ignored += [f"metadata.annotations.{k}" for k in sorted(annotations) if k not in read and k not in BOOKKEEPING_ANNOTATIONS]
    out.ignored += [f"{doc.kind.lower()}/{doc.name}: {path} (not modelled by netlab, ignored)" for path in ignored]
    if "status" in doc.data:
        out.ignored.append(f"{doc.kind.lower()}/{doc.name}: status (written by the controller, ignored)")
    if doc.kind == "GatewayClass":
        out.classes.append((doc, _validate(doc, GatewayClass, {"name": doc.name, **spec}, "spec")))
    elif doc.kind == "Gateway":
        gw = _validate(doc, Gateway, {"name": doc.name, "namespace": doc.namespace, "spec": spec}, "")
        name = resource_name(gw)
        if k8s_names.is_dns1035_label(name) or len(name) > 63 - POD_NAME_SUFFIX:
            raise doc.error("metadata.name", f"the data plane is named {name!r} (<gateway>-<gatewayclass>, as NGINX Gateway Fabric names it): "
                            f"netlab needs a DNS-1035 label of at most {63 - POD_NAME_SUFFIX} characters (NGF would truncate and hash it)")
        out.gateways.append((doc, gw))
    elif doc.kind == "HTTPRoute":
        route = _validate(doc, HTTPRoute, {"name": doc.name, "namespace": doc.namespace, "annotations": annotations, "spec": spec}, "")
        out.routes.append((doc, route))


def parse(docs: list[Document]) -> Parsed:
    out = Parsed()
    for doc in docs:
        if (str(doc.data.get("apiVersion", "")), doc.kind) in KINDS:
            parse_doc(doc, out)
    return out


def _ngf_class() -> GatewayClass:
    return GatewayClass.model_validate({"name": NGF_CLASS, "controllerName": NGF_CONTROLLER})


def _install(state: LabState, gw: Gateway) -> tuple[DataPlane, list[str]]:
    """NGF's provisioner: the data-plane pod and its Service, ``<gateway>-<class>``."""
    ingress.nginx_binary()  # refuse before anything is built
    topo = topology_of(state)
    name = resource_name(gw)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": gateway.INSTANCE, gateway.GATEWAY_LABEL: gw.name}
    ports = sorted({(lis.port, "TCP") for lis in gw.spec.listeners})
    taken = {h.name for h in state.host_objects()}
    pod = pods.pod_name(name, {"labels": labels, "ports": [list(p) for p in ports]}, taken)
    node = pods.least_loaded_node(state)
    pods.add(state, [(node, {"name": pod, "labels": labels})], gw.namespace, ports)
    kind = "LoadBalancer" if topo.load_balancer_pool() else "NodePort"
    service = Service.model_validate({
        "name": name, "namespace": gw.namespace, "type": kind, "selector": labels, "externalTrafficPolicy": "Local",
        "ports": [{"name": f"port-{p}", "port": p, "targetPort": p, "protocol": "TCP"} for p, _ in ports],
    })
    (svc,) = cluster.upsert_services(state, [service])
    mapped = ",".join(f"{p.port}:{p.node_port}/{p.protocol}" for p in svc.ports)
    return DataPlane(pod=pod, service=svc.key), [
        f"  NGINX Gateway Fabric provisioned gateway {gw.key}'s data plane: pod {gw.namespace}/{pod} on {node} runs nginx "
        f"(config {gateway.paths(state.lab, gw.key).conf}); service/{name} -n {gw.namespace}: {kind} {mapped}, externalTrafficPolicy Local"
    ]


def apply(state: LabState, parsed: Parsed) -> list[str]:
    """Store the file's GatewayClasses, Gateways and HTTPRoutes; provision data planes. The
    caller syncs the cluster (which renders and loads nginx)."""
    record = GatewayRecord.load(state)
    out: list[str] = []
    if NGF_CLASS not in record.classes:
        record.classes[NGF_CLASS] = _ngf_class()
        out.append(f"NGINX Gateway Fabric installed (tutorials assume it is): gatewayclass.gateway.networking.k8s.io/{NGF_CLASS} "
                   f"(controllerName {NGF_CONTROLLER})")
    for _doc, klass in parsed.classes:
        verb = "configured" if klass.name in record.classes else "created"
        record.classes[klass.name] = klass
        out.append(f"gatewayclass.gateway.networking.k8s.io/{klass.name} {verb}")
    record.store(state)
    for _doc, gw in parsed.gateways:
        known = [g.key for g in record.gateways]
        verb = "configured" if gw.key in known else "created"
        if gw.key in known:
            record.gateways[known.index(gw.key)] = gw
        else:
            record.gateways.append(gw)
        out.append(f"gateway.gateway.networking.k8s.io/{gw.name} {verb}")
        record.store(state)
        plane = record.planes.get(gw.key)
        if record.ours(gw) and plane is None:
            plane, lines = _install(state, gw)
            record = GatewayRecord.load(state)
            record.planes[gw.key] = plane
            out += lines
        elif not record.ours(gw):
            out.append(f"  note: GatewayClass {gw.spec.gateway_class_name} is not served by NGINX Gateway Fabric: no data plane")
        record.store(state)
    for _doc, route in parsed.routes:
        known = [r.key for r in record.routes]
        verb = "configured" if route.key in known else "created"
        if route.key in known:
            record.routes[known.index(route.key)] = route
        else:
            record.routes.append(route)
        out.append(f"httproute.gateway.networking.k8s.io/{route.name} {verb}")
    record.store(state)
    out += [f"  {line}" for line in parsed.ignored]
    return out


def dry_run(state: LabState, parsed: Parsed, services: Sequence[Service] = (), certs: Mapping[str, Cert] | None = None) -> list[str]:
    """The nginx.conf of each Gateway the file touches, with the file (its ``services`` and,
    in ``certs``, its TLS Secrets too) applied; nothing changes."""
    record = GatewayRecord.load(state)
    record.classes.setdefault(NGF_CLASS, _ngf_class())
    record.classes.update({c.name: c for _d, c in parsed.classes})
    for _d, gw in parsed.gateways:
        record.gateways = [g for g in record.gateways if g.key != gw.key] + [gw]
    for _d, route in parsed.routes:
        record.routes = [r for r in record.routes if r.key != route.key] + [route]
    touched = {gw.key for _d, gw in parsed.gateways} | {
        f"{p.namespace or r.namespace}/{p.name}" for _d, r in parsed.routes for p in r.spec.parent_refs}
    out = ["# netlab apply --dry-run: nothing was changed. Pods this file would create are not endpoints yet."]
    out += [f"# warning: {line}" for line in parsed.ignored]
    for gw in record.gateways:
        if gw.key in touched and record.ours(gw):
            rendered = gateway.render_gateway(state, record, gw, services, certs)
            out += [f"# warning: {w}" for w in rendered.warnings] + rendered.text.splitlines()
    return out


def delete(state: LabState, docs: list[Document]) -> list[str]:
    """``kubectl delete -f`` for the file's Gateway API objects (all found, or nothing deleted).
    A Gateway's data plane (pod, Service, nginx) goes with it. The caller syncs the cluster."""
    record = GatewayRecord.load(state)
    wanted = [(d.kind, f"{d.namespace}/{d.name}", d.name) for d in docs if (str(d.data.get("apiVersion", "")), d.kind) in KINDS]
    have = {("Gateway", g.key) for g in record.gateways} | {("HTTPRoute", r.key) for r in record.routes}
    missing = [f"{kind} {key}" for kind, key, name in wanted
               if (kind != "GatewayClass" and (kind, key) not in have) or (kind == "GatewayClass" and name not in record.classes)]
    if missing:
        raise TopologyError(docs[0].source, "", f"not found in lab {state.lab!r}: {', '.join(missing)}")
    out = []
    for kind, key, name in wanted:
        if kind == "HTTPRoute":
            record.routes = [r for r in record.routes if r.key != key]
            out.append(f'httproute.gateway.networking.k8s.io "{name}" deleted')
        elif kind == "GatewayClass":
            record.classes.pop(name)
            out.append(f'gatewayclass.gateway.networking.k8s.io "{name}" deleted')
        else:
            record.gateways = [g for g in record.gateways if g.key != key]
            plane = record.planes.pop(key, None)
            record.store(state)
            if plane is not None:
                gateway.stop(state, plane)
                gateway.remove_files(state, key)
                pods.remove(state, [plane.pod])
                cluster.delete_services(state, [plane.service])
                record = GatewayRecord.load(state)
                record.gateways = [g for g in record.gateways if g.key != key]
                record.planes.pop(key, None)
            out.append(f'gateway.gateway.networking.k8s.io "{name}" deleted')
    record.store(state)
    return out


def loaded(state: LabState) -> str:
    """Why a Gateway's nginx did not load its latest configuration ("" when all did)."""
    return "; ".join(p.last_error for p in GatewayRecord.load(state).planes.values() if p.last_error)
