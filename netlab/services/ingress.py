"""The ingress-nginx controller of a running lab: its record, and real nginx kept in step.

The controller pod (namespace ``ingress-nginx``, installed by :mod:`.ingress_apply`) runs the
distribution's nginx, one master per controller, started by netlab with its own
configuration and state directory (``<state dir>/<lab>.ingress/``: nginx.conf, pid, logs,
certificates, temp directories), never /etc/nginx or a system service. Whenever Ingresses,
Secrets, Services or endpoints change, :func:`sync` (called by
:func:`netlab.services.cluster.sync`) renders nginx.conf again (:mod:`.nginx`), and if it
changed, tests it with ``nginx -t`` and reloads nginx (SIGHUP), as ingress-nginx does. A
configuration nginx refuses is kept next to the live one (``nginx.conf.rejected``) and the
previous one keeps serving; the record says why (:attr:`Controller.last_error`).

nginx runs in the lab's cgroup, and every file and directory is journaled in the lab's
files journal before it exists, so ``netlab down`` and ``netlab clean`` leave nothing behind,
even after a crash. What the controller remembers (the Ingresses, IngressClasses and TLS
Secrets applied, and the nginx it runs) is an :class:`IngressRecord` under the lab record's
``ingress`` key.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netlab.errors import EnvironmentProblem
from netlab.kernel import cgroup, processes
from netlab.model.ingress import CLASS_ANNOTATION, NGINX_CLASS, NGINX_CONTROLLER, Ingress, IngressClass
from netlab.model.service import Service
from netlab.services import externaldns, loadbalancer, tls
from netlab.services.endpoints import endpoints_for
from netlab.services.nginx import DEFAULT_SERVER, DEFAULT_UPSTREAM, TEMP_DIRS, Cert, Paths, Rendered, render
from netlab.services.records import ClusterRecord, pods_of, topology_of
from netlab.state import LabState, state_dir

NAMESPACE = "ingress-nginx"
NAME = "ingress-nginx-controller"  # the Deployment and the Service, as the Helm chart names them
LABELS = {
    "app.kubernetes.io/name": "ingress-nginx",
    "app.kubernetes.io/instance": "ingress-nginx",
    "app.kubernetes.io/component": "controller",
}
MIN_NGINX = (1, 19, 10)  # -e (1.19.5) and keepalive_time (1.19.10)
READY_TIMEOUT = 60.0 if os.environ.get("NETLAB_IN_VM") else 10.0


def is_controller(labels: dict[str, str]) -> bool:
    """Is a pod with these labels an ingress-nginx controller (which runs nginx, not the hostname server)?"""
    return all(labels.get(k) == v for k, v in LABELS.items())


@dataclass
class Controller:
    """The nginx netlab runs for the controller pod."""

    pod: str
    pid: int = 0
    generation: int = 0  # configurations loaded so far
    last_error: str = ""  # why the last configuration was not loaded ("" when it was)
    warnings: list[str] = field(default_factory=list)  # what the last rendering noticed


@dataclass
class SecretRecord:
    type: str
    pem: str = ""  # kubernetes.io/tls: certificate and key, one file
    names: list[str] = field(default_factory=list)
    not_after: str = ""


@dataclass
class IngressRecord:
    controller: Controller | None = None
    ingresses: list[Ingress] = field(default_factory=list)  # in creation order, as ingress-nginx sorts them
    classes: dict[str, IngressClass] = field(default_factory=dict)
    secrets: dict[str, SecretRecord] = field(default_factory=dict)  # "<namespace>/<name>"

    @classmethod
    def load(cls, state: LabState) -> IngressRecord:
        data: dict[str, Any] = state.extra.get("ingress") or {}
        ctl = data.get("controller")
        return cls(
            controller=Controller(**ctl) if ctl else None,
            ingresses=[Ingress.model_validate(i) for i in data.get("ingresses", [])],
            classes={k: IngressClass.model_validate(v) for k, v in data.get("classes", {}).items()},
            secrets={k: SecretRecord(**v) for k, v in data.get("secrets", {}).items()},
        )

    def store(self, state: LabState) -> None:
        state.extra["ingress"] = {
            "controller": asdict(self.controller) if self.controller else None,
            "ingresses": [i.model_dump(mode="json", by_alias=True) for i in self.ingresses],
            "classes": {k: v.model_dump(mode="json") for k, v in self.classes.items()},
            "secrets": {k: asdict(v) for k, v in self.secrets.items()},
        }
        state.save()

    def class_problem(self, ing: Ingress) -> str | None:
        """Why the ingress-nginx controller does not serve ``ing`` (None: it does), as its
        store decides (internal/ingress/controller/store: the deprecated annotation, else
        the IngressClass named by ingressClassName and its spec.controller)."""
        annotation = ing.annotations.get(CLASS_ANNOTATION)
        if annotation is not None and not ing.spec.ingress_class_name:
            return None if annotation == NGINX_CLASS else f"annotation {CLASS_ANNOTATION}: {annotation} is not nginx"
        name = ing.spec.ingress_class_name
        if not name:
            return "no ingressClassName and no default IngressClass when it was created"
        klass = self.classes.get(name)
        if klass is None:
            return f"IngressClass {name} does not exist"
        if klass.controller != NGINX_CONTROLLER:
            return f"IngressClass {name} belongs to controller {klass.controller}"
        return None

    def served(self) -> list[Ingress]:
        return [i for i in self.ingresses if self.class_problem(i) is None]

    def certs(self) -> dict[str, Cert]:
        return {k: Cert(k, s.pem, tuple(s.names)) for k, s in self.secrets.items() if s.pem}


def directory(lab: str) -> Path:
    return state_dir() / f"{lab}.ingress"  # not *.json: LabState.all() reads those as lab records


def paths(lab: str) -> Paths:
    return Paths(directory(lab))


def mkdir(state: LabState, path: Path) -> None:
    """Make a directory (and its missing parents), each journaled before it exists."""
    missing = []
    parent = path
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory_ in reversed(missing):
        state.will_write(directory_)
        directory_.mkdir(mode=0o755)


def prepare(state: LabState) -> Paths:
    """The controller's directory: temp directories, the default certificate, the log files
    nginx opens (all journaled first)."""
    p = paths(state.lab)
    if p.default_cert.exists():
        return p
    mkdir(state, p.prefix)
    mkdir(state, p.ssl)
    for name in TEMP_DIRS:
        mkdir(state, p.temp(name))
    for path in (p.error_log, p.access_log, p.pid, p.prefix / "nginx.conf.next", p.prefix / "nginx.conf.rejected", p.conf):
        state.will_write(path)
    state.will_write(p.default_cert)
    tls.fake_certificate(p.default_cert)
    return p


def nginx_binary() -> str:
    """The nginx executable; EnvironmentProblem naming how to get it when missing or too old."""
    path = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.path.exists(p)), None)
    if path is None:
        raise EnvironmentProblem(
            "the ingress controller runs real nginx, which is not installed: apt install nginx (scripts/setup.sh does); "
            "netlab starts its own nginx per controller pod, never the system service"
        )
    done = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", done.stderr + done.stdout)
    if match and tuple(int(g) for g in match.groups()) < MIN_NGINX:
        raise EnvironmentProblem(f"nginx {'.'.join(match.groups())} is too old for the ingress controller: it needs {'.'.join(map(str, MIN_NGINX))} or newer")
    return path


def render_current(state: LabState, record: IngressRecord) -> Rendered:
    """nginx.conf for the lab as it is now (the Services' endpoints of this moment)."""
    cluster = ClusterRecord.load(state)
    services = list(cluster.services)
    running = pods_of(state, cluster)
    endpoints = endpoints_for(services, running)
    pod = record.controller.pod if record.controller else ""
    proxy_protocol = topology_of(state).ingress_controller.use_proxy_protocol
    return render(record.served(), services, endpoints, record.certs(), paths(state.lab), pod, proxy_protocol)


def test_nginx(nginx: str, conf: Path, p: Paths) -> str | None:
    """``nginx -t`` on ``conf``: None if nginx accepts it, else nginx's own message."""
    done = subprocess.run(
        [nginx, "-t", "-q", "-c", str(conf), "-p", f"{p.prefix}/", "-e", str(p.error_log)],
        capture_output=True, text=True, timeout=30,
    )
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if "[emerg]" in line or "[alert]" in line or "[crit]" in line]
    return "; ".join(lines) or done.stderr.strip() or f"nginx -t exited {done.returncode}"


def sync(state: LabState) -> None:
    """Bring the controller's nginx up to date with the lab's Ingresses and endpoints (no-op
    without a controller). Never raises for a configuration nginx refuses: that is recorded
    in :attr:`Controller.last_error`, and what nginx ran before keeps serving."""
    record = IngressRecord.load(state)
    ctl = record.controller
    if ctl is None:
        return
    host = next((h for h in state.host_objects() if h.name == ctl.pod), None)
    if host is None:
        ctl.last_error = f"the controller pod {ctl.pod} is gone"
        record.store(state)
        return
    rendered = render_current(state, record)
    ctl.warnings = rendered.warnings
    p = prepare(state)
    running = processes.alive(ctl.pid)
    if running and p.conf.exists() and p.conf.read_text() == rendered.text:
        ctl.last_error = ""
        record.store(state)
        return
    nginx = nginx_binary()
    candidate = p.prefix / "nginx.conf.next"  # journaled by prepare()
    candidate.write_text(rendered.text)
    rejected = p.prefix / "nginx.conf.rejected"
    problem = test_nginx(nginx, candidate, p)
    if problem is not None:
        os.replace(candidate, rejected)
        problem = problem.replace(str(candidate), str(rejected))
        keeps = "the previous configuration keeps serving" if running else "nginx is not running"
        where = "" if str(rejected) in problem else f" (rendered file: {rejected})"
        ctl.last_error = (
            f"nginx -t refused the configuration rendered for the Ingresses: {problem}{where}; {keeps}, "
            "and every change fails to load until the Ingress is fixed (apply it again) or deleted (netlab delete)"
        )
        record.store(state)
        return
    os.replace(candidate, p.conf)
    rejected.unlink(missing_ok=True)
    try:
        if running:
            reload_nginx(ctl.pid, p)
        else:
            ctl.pid = start_nginx(state, host.ns, nginx, p)
    except EnvironmentProblem as exc:
        ctl.last_error = str(exc)
        record.store(state)
        raise
    ctl.generation += 1
    ctl.last_error = ""
    record.store(state)


def start_nginx(state: LabState, ns: str, nginx: str, p: Paths, log_name: str = "ingress-nginx", where: str = "the ingress controller pod") -> int:
    """Start nginx's master in the controller pod (the lab's cgroup); return its pid once it listens."""
    log = state_dir() / f"{state.lab}.{log_name}.log"
    if not log.exists():
        state.will_write(log)
    argv = [nginx, "-c", str(p.conf), "-p", f"{p.prefix}/", "-e", str(p.error_log), "-g", "daemon off; master_process on;"]
    pid = processes.start_program(ns, argv, log, "nginx", group=cgroup.create(state.lab))
    deadline = time.monotonic() + READY_TIMEOUT
    while True:  # nginx writes its pid file once its listening sockets are open
        written = p.pid.read_text().strip() if p.pid.exists() else ""
        if written == str(pid) and processes.children(pid):
            return pid
        if not processes.alive(pid) or time.monotonic() > deadline:
            processes.terminate(pid)
            output = (log.read_text() if log.exists() else "").strip() or _tail(p.error_log)
            raise EnvironmentProblem(
                f"nginx did not start in {where}: {output[-600:] or 'no output'} "
                f"(configuration: {p.conf}, error log: {p.error_log})"
            )
        time.sleep(0.02)


def reload_nginx(pid: int, p: Paths) -> None:
    """SIGHUP, as ``nginx -s reload``; wait until the old workers are gone and new ones serve."""
    old = set(processes.children(pid))
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        now = set(processes.children(pid))
        if now and not (now & old):
            return
        if not processes.alive(pid):
            raise EnvironmentProblem(f"nginx exited while reloading its configuration: {_tail(p.error_log)} (configuration: {p.conf})")
        time.sleep(0.02)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text().strip().splitlines()[-lines:])
    except OSError:
        return ""


def published(service: Service | None, lb_ips: Sequence[str], lb_hostnames: Sequence[str], node_ip: str | None) -> list[str]:
    """What the controller writes into ``status.loadBalancer.ingress`` of the Ingresses it serves
    (internal/ingress/status/status.go ``runningAddresses``). A LoadBalancer Service is installed
    as the cloud manifests install it (deploy/static/provider/cloud/deploy.yaml), with
    ``--publish-service``: the Service's own ``status.loadBalancer.ingress``
    (``statusAddressFromService``; none while <pending>). A NodePort Service is the bare-metal
    manifests' (deploy/static/provider/baremetal/deploy.yaml), without ``--publish-service``:
    the InternalIP of the node the controller pod runs on (internal/k8s ``GetNodeIPs``: nodes
    here have no ExternalIP)."""
    if service is None:
        return []
    if service.type == "LoadBalancer":
        return list(lb_ips) or list(lb_hostnames)
    return [node_ip] if node_ip else []


def status_addresses(state: LabState, services: Sequence[Service], lb_ips: Mapping[str, Sequence[str]],
                     lb_hostnames: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Each served Ingress's ``status.loadBalancer.ingress`` (IPs or hostnames), by Ingress key."""
    record = IngressRecord.load(state)
    ctl = record.controller
    if ctl is None:
        return {}
    key = f"{NAMESPACE}/{NAME}"
    service = next((s for s in services if s.key == key), None)
    host = next((h for h in state.host_objects() if h.name == ctl.pod), None)
    node_ip = None
    if host is not None and host.node:
        topo = topology_of(state)
        node_ip = next((str(topo.node_ip(n)) for n in topo.nodes if n.name == host.node), None)
    addresses = published(service, lb_ips.get(key, []), lb_hostnames.get(key, []), node_ip)
    return {i.key: addresses for i in record.served()}


def dns_endpoints(state: LabState, services: Sequence[Service], lb_ips: Mapping[str, Sequence[str]],
                  lb_hostnames: Mapping[str, Sequence[str]]) -> tuple[list[externaldns.DNSEndpoint], list[str]]:
    """ExternalDNS's ingress source over the lab's Ingresses and their status."""
    record = IngressRecord.load(state)
    if not record.ingresses:
        return [], []
    return externaldns.ingress_endpoints(record.ingresses, status_addresses(state, services, lb_ips, lb_hostnames))


def describe(state: LabState) -> dict[str, Any]:
    """The controller and the Ingresses as ``netlab status`` shows them (and its ``--json``)."""
    record = IngressRecord.load(state)
    if record.controller is None and not record.ingresses:
        return {}
    ctl = record.controller
    rendered = render_current(state, record) if ctl else None
    cluster = ClusterRecord.load(state)
    lb_ips = loadbalancer.ingress({k: loadbalancer.Assignment.from_json(v) for k, v in cluster.load_balancers.items()})
    status = status_addresses(state, cluster.services, lb_ips, {})
    rows = []
    for ing in record.ingresses:
        problem = record.class_problem(ing)
        routes = []
        if rendered is not None and problem is None:
            for server in rendered.servers:
                for loc in server.locations:
                    if loc.ingress is None or loc.ingress.key != ing.key or loc.backend == DEFAULT_UPSTREAM:
                        continue
                    up = rendered.upstreams[loc.backend]
                    target = ", ".join(up.endpoints) or f"503 ({up.problem})"
                    host = "*" if server.hostname == DEFAULT_SERVER else server.hostname
                    exact = " (Exact)" if loc.path_type == "Exact" else ""
                    routes.append(f"{host}{loc.path}{exact} -> {up.service}:{up.port} -> {target}")
        rows.append({
            "ingress": ing.key,
            "class": ing.spec.ingress_class_name or ing.annotations.get(CLASS_ANNOTATION) or "",
            "served": problem is None,
            "why_not": problem or "",
            "hosts": sorted({r.host or "*" for r in ing.spec.rules}) or ["*"],
            "address": status.get(ing.key, []),  # status.loadBalancer.ingress (kubectl get ingress's ADDRESS)
            "tls": [f"{','.join(t.hosts) or '*'} ({t.secret_name or 'default certificate'})" for t in ing.spec.tls],
            "routes": routes,
        })
    warnings = list(ctl.warnings) if ctl else []
    if ctl and ctl.last_error:
        warnings.insert(0, ctl.last_error)
    for row in rows:
        if not row["served"]:
            warnings.append(f"ingress {row['ingress']} is not served by ingress-nginx: {row['why_not']}")
    return {
        "controller": {
            "pod": ctl.pod, "namespace": NAMESPACE, "nginx_pid": ctl.pid if processes.alive(ctl.pid) else None,
            "generation": ctl.generation, "config": str(paths(state.lab).conf),
        } if ctl else None,
        "ingresses": rows,
        "warnings": warnings,
    }
