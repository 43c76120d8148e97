"""Gateway API on NGINX Gateway Fabric: the record, and one real nginx per Gateway kept in step.

NGINX Gateway Fabric provisions a data plane per Gateway (``internal/controller/provisioner``:
an nginx Deployment and a Service, both named ``<gateway>-<gatewayclass>``, labelled
``app.kubernetes.io/name: <that name>`` and ``gateway.networking.k8s.io/gateway-name``).
netlab does the same (:mod:`.gateway_apply` creates the pod and the Service); here nginx runs
in that pod, one master per Gateway, with its own directory
(``<state dir>/<lab>.gateway/<namespace>-<gateway>/``), started in the lab's cgroup and
journaled like the ingress controller's (:mod:`.ingress`), so ``netlab down`` leaves nothing.
:func:`sync` renders each Gateway's nginx.conf (:mod:`.gateway_nginx`), tests it with
``nginx -t`` and reloads on change; :func:`describe` gives the status conditions
(Accepted, Programmed, ResolvedRefs) as ``kubectl describe`` shows them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netlab.errors import EnvironmentProblem
from netlab.kernel import processes
from netlab.model.gateway import NGF_CONTROLLER, Gateway, GatewayClass, HTTPRoute
from netlab.model.service import Service
from netlab.services import externaldns, ingress
from netlab.services.endpoints import endpoints_for
from netlab.services.gateway_nginx import ANY_HOST, Condition, Rendered, build, render
from netlab.services.ingress import IngressRecord, mkdir
from netlab.services.kubeproxy import Endpoint
from netlab.services.nginx import TEMP_DIRS, Cert, Paths
from netlab.services.records import ClusterRecord, pods_of
from netlab.state import LabState, state_dir

INSTANCE = "ngf"  # app.kubernetes.io/instance of NGF's Helm release
GATEWAY_LABEL = "gateway.networking.k8s.io/gateway-name"


def is_data_plane(labels: dict[str, str]) -> bool:
    """Does a pod with these labels run a Gateway's nginx (not the hostname server)?"""
    return labels.get("app.kubernetes.io/instance") == INSTANCE and GATEWAY_LABEL in labels


def resource_name(gw: Gateway) -> str:
    """NGF's CreateNginxResourceName: ``<gateway>-<gatewayclass>``."""
    return f"{gw.name}-{gw.spec.gateway_class_name}"


@dataclass
class DataPlane:
    pod: str
    service: str  # "<namespace>/<name>"
    pid: int = 0
    generation: int = 0
    last_error: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class GatewayRecord:
    classes: dict[str, GatewayClass] = field(default_factory=dict)
    gateways: list[Gateway] = field(default_factory=list)  # creation order
    routes: list[HTTPRoute] = field(default_factory=list)  # creation order (precedence ties)
    planes: dict[str, DataPlane] = field(default_factory=dict)  # by Gateway key

    @classmethod
    def load(cls, state: LabState) -> GatewayRecord:
        data: dict[str, Any] = state.extra.get("gateway") or {}
        return cls(
            classes={k: GatewayClass.model_validate(v) for k, v in data.get("classes", {}).items()},
            gateways=[Gateway.model_validate(g) for g in data.get("gateways", [])],
            routes=[HTTPRoute.model_validate(r) for r in data.get("routes", [])],
            planes={k: DataPlane(**v) for k, v in data.get("planes", {}).items()},
        )

    def store(self, state: LabState) -> None:
        state.extra["gateway"] = {
            "classes": {k: v.model_dump(mode="json", by_alias=True) for k, v in self.classes.items()},
            "gateways": [g.model_dump(mode="json", by_alias=True) for g in self.gateways],
            "routes": [r.model_dump(mode="json", by_alias=True) for r in self.routes],
            "planes": {k: asdict(v) for k, v in self.planes.items()},
        }
        state.save()

    def ours(self, gw: Gateway) -> bool:
        klass = self.classes.get(gw.spec.gateway_class_name)
        return klass is not None and klass.controller_name == NGF_CONTROLLER

    def routes_of(self, gw: Gateway) -> list[HTTPRoute]:
        return [r for r in self.routes if any(p.name == gw.name and (p.namespace or r.namespace) == gw.namespace for p in r.spec.parent_refs)]


def directory(lab: str) -> Path:
    return state_dir() / f"{lab}.gateway"


def paths(lab: str, gw_key: str) -> Paths:
    return Paths(directory(lab) / gw_key.replace("/", "-"))


def prepare(state: LabState, gw_key: str) -> Paths:
    p = paths(state.lab, gw_key)
    if p.prefix.exists():
        return p
    mkdir(state, p.prefix)
    for name in TEMP_DIRS:
        mkdir(state, p.temp(name))
    for path in (p.error_log, p.access_log, p.pid, p.prefix / "nginx.conf.next", p.prefix / "nginx.conf.rejected", p.conf,
                 p.prefix / "nginx-500-server.sock", p.prefix / "nginx-503-server.sock"):
        state.will_write(path)
    return p


def render_gateway(state: LabState, record: GatewayRecord, gw: Gateway, extra: Sequence[Service] = (),
                   certs: Mapping[str, Cert] | None = None) -> Rendered:
    """nginx.conf for ``gw``; ``extra``: Services a file would add or replace, ``certs``: the
    lab's certificates with a file's TLS Secrets (``--dry-run``)."""
    cluster = ClusterRecord.load(state)
    replaced = {s.key for s in extra}
    services = [s for s in cluster.services if s.key not in replaced] + list(extra)
    endpoints = endpoints_for(services, pods_of(state, cluster))
    plane = record.planes.get(gw.key)
    return render(gw, record.routes_of(gw), services, endpoints, IngressRecord.load(state).certs() if certs is None else certs,
                  paths(state.lab, gw.key), plane.pod if plane else "")


def sync(state: LabState) -> None:
    """Bring every Gateway's nginx up to date (no-op without Gateways). A configuration nginx
    refuses is recorded in :attr:`DataPlane.last_error`; the previous one keeps serving."""
    record = GatewayRecord.load(state)
    if not record.planes:
        return
    hosts = {h.name: h for h in state.host_objects()}
    for gw in record.gateways:
        plane = record.planes.get(gw.key)
        if plane is None:
            continue
        host = hosts.get(plane.pod)
        if host is None:
            plane.last_error = f"the data-plane pod {plane.pod} is gone"
            continue
        rendered = render_gateway(state, record, gw)
        plane.warnings = rendered.warnings
        p = prepare(state, gw.key)
        running = processes.alive(plane.pid)
        if running and p.conf.exists() and p.conf.read_text() == rendered.text:
            plane.last_error = ""
            continue
        nginx = ingress.nginx_binary()
        candidate, rejected = p.prefix / "nginx.conf.next", p.prefix / "nginx.conf.rejected"
        candidate.write_text(rendered.text)
        problem = ingress.test_nginx(nginx, candidate, p)
        if problem is not None:
            os.replace(candidate, rejected)
            keeps = "the previous configuration keeps serving" if running else "nginx is not running"
            plane.last_error = f"nginx -t refused the configuration rendered for gateway {gw.key}: {problem.replace(str(candidate), str(rejected))}; {keeps}"
            continue
        os.replace(candidate, p.conf)
        rejected.unlink(missing_ok=True)
        try:
            if running:
                ingress.reload_nginx(plane.pid, p)
            else:
                plane.pid = ingress.start_nginx(state, host.ns, nginx, p, f"gateway-{gw.namespace}-{gw.name}", f"the data-plane pod of gateway {gw.key}")
        except EnvironmentProblem as exc:
            plane.last_error = str(exc)
            record.store(state)
            raise
        plane.generation += 1
        plane.last_error = ""
    record.store(state)


def stop(state: LabState, plane: DataPlane) -> None:
    if processes.alive(plane.pid):
        processes.terminate(plane.pid)
    plane.pid = 0


def remove_files(state: LabState, gw_key: str) -> None:
    """A deleted Gateway's directory (its nginx is stopped), and the lab's when it is empty;
    their journal entries are then simply gone at ``down``."""
    shutil.rmtree(paths(state.lab, gw_key).prefix, ignore_errors=True)
    with contextlib.suppress(OSError):
        directory(state.lab).rmdir()


def published(service: Service | None, lb_ips: Sequence[str], lb_hostnames: Sequence[str]) -> list[str]:
    """A Gateway's ``status.addresses`` as NGINX Gateway Fabric writes them from its data-plane
    Service (internal/controller/handler.go ``getGatewayAddressesForStatus``): a LoadBalancer's
    ingress IPs (else hostnames; none while <pending>), any other type's ClusterIP."""
    if service is None:
        return []
    if service.type == "LoadBalancer":
        return list(lb_ips) or list(lb_hostnames)
    return [service.cluster_ip] if service.cluster_ip and not service.headless else []


def dns_endpoints(state: LabState, services: Sequence[Service], endpoints: Mapping[str, list[Endpoint]],
                  lb_ips: Mapping[str, Sequence[str]], lb_hostnames: Mapping[str, Sequence[str]]) -> tuple[list[externaldns.DNSEndpoint], list[str]]:
    """ExternalDNS's gateway-httproute source over the lab's HTTPRoutes, the route status
    NGINX Gateway Fabric gives them (Accepted per parentRef) and the Gateways' addresses."""
    record = GatewayRecord.load(state)
    if not record.routes:
        return [], []
    by_key = {s.key: s for s in services}
    gateways: dict[str, Gateway] = {}
    addresses: dict[str, list[str]] = {}
    accepted: set[tuple[str, str, str]] = set()
    certs = IngressRecord.load(state).certs()
    for gw in record.gateways:
        plane = record.planes.get(gw.key)
        if plane is None or not record.ours(gw):
            continue  # no controller: no status, nothing for ExternalDNS
        gateways[gw.key] = gw
        addresses[gw.key] = published(by_key.get(plane.service), lb_ips.get(plane.service, []), lb_hostnames.get(plane.service, []))
        _servers, _ups, _listeners, statuses, _warnings = build(gw, record.routes_of(gw), services, endpoints, certs)
        for route_key, parents in statuses.items():
            accepted |= {(route_key, p.gateway, p.section) for p in parents if any(c.type == "Accepted" and c.status == "True" for c in p.conditions)}
    return externaldns.route_endpoints(record.routes, gateways, accepted, addresses)


def describe(state: LabState) -> dict[str, Any]:
    """GatewayClasses, Gateways and HTTPRoutes with their status conditions (``netlab status``)."""
    record = GatewayRecord.load(state)
    if not (record.gateways or record.routes):
        return {}
    classes = [{"name": c.name, "controller": c.controller_name,
                "conditions": [str(Condition("Accepted", "True", "Accepted"))] if c.controller_name == NGF_CONTROLLER else []}
               for c in record.classes.values()]
    gateways: list[dict[str, Any]] = []
    routes: dict[str, list[str]] = {}
    warnings: list[str] = []
    route_status: dict[str, list[dict[str, Any]]] = {}
    for gw in record.gateways:
        plane = record.planes.get(gw.key)
        if not record.ours(gw):
            warnings.append(f"gateway {gw.key}: GatewayClass {gw.spec.gateway_class_name} is not served by NGINX Gateway Fabric "
                            f"({NGF_CONTROLLER}): no controller programs it, no status")
            gateways.append({"gateway": gw.key, "class": gw.spec.gateway_class_name, "conditions": [], "listeners": [], "dataPlane": None})
            continue
        rendered = render_gateway(state, record, gw)
        alive = plane is not None and processes.alive(plane.pid)
        error = plane.last_error if plane else "no data plane"
        programmed = (Condition("Programmed", "True", "Programmed") if alive and not error
                      else Condition("Programmed", "False", "Invalid" if error else "Pending", error or "nginx is not running"))
        gateways.append({
            "gateway": gw.key, "class": gw.spec.gateway_class_name,
            "conditions": [str(Condition("Accepted", "True", "Accepted")), str(programmed)],
            "listeners": [{"name": ls.name, "port": ls.port, "protocol": ls.protocol, "hostname": ls.hostname or "*",
                           "attachedRoutes": ls.attached, "conditions": [str(c) for c in ls.conditions]} for ls in rendered.listeners],
            "dataPlane": {"pod": plane.pod, "service": plane.service, "nginx_pid": plane.pid if alive else None,
                          "generation": plane.generation, "config": str(paths(state.lab, gw.key).conf)} if plane else None,
        })
        warnings += ([error] if plane and error else []) + rendered.warnings
        for key, statuses in rendered.routes.items():
            route_status.setdefault(key, []).extend(
                {"parent": p.gateway, "sectionName": p.section, "conditions": [str(c) for c in p.conditions]} for p in statuses)
        for server in rendered.servers:
            host = "*" if server.hostname == ANY_HOST else server.hostname
            for loc, rules in sorted(server.locations.items()):
                for mr in rules:
                    m = mr.match
                    cond = [f"{h.name}={h.value}" for h in m.headers] + [f"?{q.name}={q.value}" for q in m.query_params]
                    cond += [m.method] if m.method else []
                    shares = ", ".join(f"{b.service}:{b.ref.port} w{b.ref.weight}" + (f" (500: {b.reason})" if b.reason else "")
                                       for b in mr.backends) or "-"
                    filters = ",".join(f.type for f in mr.rule.filters)
                    routes.setdefault(mr.route.key, []).append(
                        f":{server.port} {host} location {loc}" + (f" [{' '.join(cond)}]" if cond else "")
                        + (f" {{{filters}}}" if filters else "") + f" -> {shares}")
    rows = []
    for route in record.routes:
        parents = route_status.get(route.key, [])
        if not parents:
            targets = ", ".join(f"{p.namespace or route.namespace}/{p.name}" for p in route.spec.parent_refs)
            warnings.append(f"httproute {route.key}: no Gateway {targets} served by NGINX Gateway Fabric: no status, no traffic")
        rows.append({"httproute": route.key, "hostnames": list(route.spec.hostnames) or ["*"], "parents": parents,
                     "routes": routes.get(route.key, [])})
    return {"gatewayClasses": classes, "gateways": gateways, "httproutes": rows, "warnings": list(dict.fromkeys(warnings))}
