"""A running lab's Services: endpoints, kube-proxy sync, cluster DNS, workloads, pods.

This is netlab's endpoints controller, kube-proxy and kubelet in one: after the datapath is
built (:func:`start`), and whenever services or pods change (:func:`sync`), it

1. computes each Service's endpoints from the pods whose labels match its selector,
2. writes kube-proxy's rules into every node (iptables-restore, or IPVS),
3. rewrites the cluster DNS records (the ``coredns`` pod in kube-system rereads them),
4. gives every pod ``/etc/netns/<netns>/resolv.conf`` (what ``ip netns exec`` mounts on
   /etc/resolv.conf) and starts the hostname server in pods that back a Service.

Pods are added to a running lab with the datapath's own plan: the plan of the topology
with the new pods, minus the plan of the topology without them, applied and journaled
like ``up``. Everything it starts runs inside the lab's namespaces, and every file it
writes outside them is journaled (:meth:`LabState.will_write`), so ``netlab down`` removes
it all. State lives in the lab record's ``extra``.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netlab import names
from netlab.errors import BuildError, EnvironmentProblem, UsageError
from netlab.kernel import netns
from netlab.model import Topology, parse_topology
from netlab.model.service import CLUSTER_DOMAIN, DNS_SERVICE_INDEX, Service, system_services
from netlab.plan import CreateNamespace, Host, LoadIptables, Operation, Plan, describe
from netlab.services import kubeproxy
from netlab.services.allocate import allocate
from netlab.state import LabState, state_dir

DNS_POD = "coredns"
BRIDGED_CNIS = ("vxlan", "host-gw")  # pods on cni0
DNS_LABELS = {"k8s-app": "kube-dns"}
READY_TIMEOUT = 180.0 if os.environ.get("NETLAB_IN_VM") else 15.0  # an emulated CPU starts Python slowly
_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes


@dataclass(frozen=True)
class PodInfo:
    name: str
    namespace: str
    labels: dict[str, str]
    ip: str | None
    node: str | None
    netns: str
    host_network: bool = False
    ports: tuple[tuple[int, str], ...] = field(default=())


# --------------------------------------------------------------------- reading the record
def topology_of(state: LabState) -> Topology:
    return parse_topology(state.topology, state.source or state.lab)


def services_of(state: LabState) -> list[Service]:
    return [Service.model_validate(d) for d in state.extra.get("services", [])]


def _dump(svc: Service) -> dict[str, Any]:
    return svc.model_dump(mode="json", by_alias=True)


def pods_of(state: LabState, topology: Topology | None = None) -> list[PodInfo]:
    topo = topology or topology_of(state)
    eps = {e.name: e for e in state.host_objects() if e.kind == "pod"}
    pod_ns = state.extra.get("pod_namespaces", {})
    pod_ports = state.extra.get("pod_ports", {})
    out = []
    for node, pod in topo.pods():
        ep = eps.get(pod.name)
        if ep is None:
            continue
        out.append(
            PodInfo(
                pod.name, pod_ns.get(pod.name, "default"), dict(pod.labels), str(ep.ip) if ep.ip else None, node.name,
                ep.ns, ep.host_network, tuple((int(p), str(proto)) for p, proto in pod_ports.get(pod.name, [])),
            )
        )
    return out


def cluster_cidr(topology: Topology) -> str:
    """What kube-proxy's --cluster-cidr is: the pod CIDR (VPC-native pods live in the subnets)."""
    if topology.network.cni == "vpc-native":
        return str(topology.subnet_of(topology.nodes[0]).cidr)
    return str(topology.network.pod_cidr)


# --------------------------------------------------------------------- endpoints controller
def selects(svc: Service, pod: PodInfo) -> bool:
    return bool(svc.selector) and pod.namespace == svc.namespace and all(pod.labels.get(k) == v for k, v in svc.selector.items())


def endpoints_for(services: list[Service], pods: list[PodInfo]) -> dict[str, list[kubeproxy.Endpoint]]:
    """Each Service's ready endpoints, like the endpoints controller (sorted by address)."""
    out: dict[str, list[kubeproxy.Endpoint]] = {}
    for svc in services:
        if svc.endpoints:
            out[svc.key] = [kubeproxy.Endpoint(e) for e in svc.endpoints]
            continue
        chosen = [kubeproxy.Endpoint(p.ip, p.node, p.name) for p in pods if p.ip and selects(svc, p)]
        out[svc.key] = sorted(chosen, key=lambda b: ipaddress.IPv4Address(b.ip))
    return out


def workload_ports(services: list[Service], pod: PodInfo) -> list[tuple[int, str]]:
    """The ports a pod's hostname server listens on: Services' targetPorts and its containerPorts."""
    ports = set(pod.ports)
    for svc in services:
        if svc.type != "ExternalName" and selects(svc, pod):
            ports |= {(p.target, p.protocol) for p in svc.ports}
    return sorted(ports)


# --------------------------------------------------------------------- lifecycle
def start(state: LabState) -> None:
    """Turn a freshly built pod network into a cluster with Services (idempotent)."""
    topo = topology_of(state)
    if topo.network.cni == "docker0":
        raise UsageError("Services need a Kubernetes pod network (cni vxlan, ipip, host-gw or vpc-native), not docker0")
    if topo.network.proxy_mode == "ipvs":
        from netlab.services import ipvs

        ipvs.require()
    if "services" not in state.extra:
        api = f"{topo.node_ip(topo.nodes[0])}:6443"  # the API server, on the first node's address
        state.extra["services"] = [_dump(s) for s in allocate(system_services(api) + list(topo.services), topo.network.service_cidr)]
        state.save()
    if not any(p.name == DNS_POD for _n, p in topo.pods()):
        if any(e.name == DNS_POD for e in state.host_objects()):
            raise UsageError(f"a pod or node is already named {DNS_POD!r}: rename it (netlab runs cluster DNS in that pod)")
        node = next((n for n in topo.nodes), topo.nodes[0])
        add_pods(state, [(node.name, {"name": DNS_POD, "labels": DNS_LABELS})], namespace="kube-system")
    sync(state)


def sync(state: LabState) -> None:
    """Bring kube-proxy rules, DNS records, resolv.conf files and workloads up to date."""
    topo = topology_of(state)
    services = services_of(state)
    pods = pods_of(state, topo)
    backends = endpoints_for(services, pods)
    cidr = cluster_cidr(topo)
    for node in topo.nodes:
        ns = names.namespace(state.lab, node.name)
        if topo.network.cni in BRIDGED_CNIS:
            netns.run_in(ns, _bridge_netfilter)
        if topo.network.proxy_mode == "ipvs":
            from netlab.services import ipvs

            ipvs.sync(ns, node.name, str(topo.node_ip(node)), services, backends, cidr, topo.network.ipvs_scheduler)
        else:
            rules = kubeproxy.ruleset(node.name, services, backends, cidr, iptables_save(ns))
            from netlab.kernel.backend import run_iptables_restore

            run_iptables_restore(ns, rules)
    _write_dns_records(state, services, pods, backends)
    for pod in pods:
        if not pod.host_network:
            _resolv_conf(state, pod, topo.network.service_cidr)
    _start_dns(state, pods)
    _start_workloads(state, services, pods)
    state.save()


def _bridge_netfilter() -> None:
    """In a node's namespace: bridged pod traffic goes through iptables (and IPVS).

    A client pod and the endpoint it was DNATed to can sit on the same ``cni0``; the reply
    is then bridged, and only br_netfilter lets conntrack undo the DNAT on it (kubeadm
    refuses to install without it for the same reason).
    """
    key = "net/bridge/bridge-nf-call-iptables"
    if not os.path.exists("/proc/sys/" + key) and os.environ.get("NETLAB_IN_VM"):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)  # a throwaway VM kernel
    try:
        if netns.read_sysctl(key) != "1":
            netns.write_sysctl(key, "1")
    except FileNotFoundError:
        raise EnvironmentProblem(
            "Services on a bridged pod network need br_netfilter (replies from a pod on the same cni0 bridge must pass "
            "conntrack): run `modprobe br_netfilter`, as kubeadm requires"
        ) from None


def iptables_save(ns: str) -> str:
    argv = ["nsenter", f"--net={netns.path(ns)}", "iptables-save"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise EnvironmentProblem(f"{exc.filename} is not installed: run scripts/setup.sh (iptables, util-linux)") from None
    return done.stdout


# --------------------------------------------------------------------- files outside the namespaces
def _write_file(state: LabState, path: Path, text: str) -> None:
    """Write ``path`` atomically, journaling it (and any directory made for it) first."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        state.will_write(directory)
        directory.mkdir()
    if not path.exists():
        state.will_write(path)
    tmp = path.with_name(path.name + ".netlab-tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def resolv_conf(namespace: str, nameserver: str) -> str:
    """A pod's /etc/resolv.conf, as the kubelet writes it (ClusterFirst)."""
    return (
        f"search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n"
        f"nameserver {nameserver}\n"
        "options ndots:5\n"
    )


def _resolv_conf(state: LabState, pod: PodInfo, service_cidr: ipaddress.IPv4Network) -> None:
    path = Path("/etc/netns") / pod.netns / "resolv.conf"
    text = resolv_conf(pod.namespace, str(service_cidr.network_address + DNS_SERVICE_INDEX))
    if not path.exists() or path.read_text() != text:
        _write_file(state, path, text)


def dns_records(services: list[Service], pods: list[PodInfo], backends: dict[str, list[kubeproxy.Endpoint]]) -> dict[str, Any]:
    """What the cluster DNS serves (see :mod:`netlab.services.dns`)."""
    return {
        "domain": CLUSTER_DOMAIN,
        "services": [
            {
                "name": s.name,
                "namespace": s.namespace,
                "clusterIP": None if s.headless else s.cluster_ip,
                "headless": s.headless,
                "externalName": s.external_name,
                "ports": [{"name": p.name, "port": p.port, "targetPort": p.target, "protocol": p.protocol} for p in s.ports],
                "endpoints": [{"ip": b.ip.split(":")[0], "pod": b.pod} for b in backends.get(s.key, [])],
            }
            for s in services
        ],
        "pods": [{"name": p.name, "namespace": p.namespace, "ip": p.ip} for p in pods if p.ip and not p.host_network],
    }


def records_path(lab: str) -> Path:
    return state_dir() / f"{lab}.coredns-records"  # not *.json: LabState.all() reads those as lab records


def _write_dns_records(state: LabState, services: list[Service], pods: list[PodInfo], backends: dict[str, list[kubeproxy.Endpoint]]) -> None:
    _write_file(state, records_path(state.lab), json.dumps(dns_records(services, pods, backends), indent=1))


# --------------------------------------------------------------------- processes in pods
def program(name: str) -> list[str]:
    """How to run one of this package's servers/clients: by file, not ``-m netlab...``, so the
    process imports only the standard library (and dnslib), not netlab and pydantic: it
    starts in a tenth of the time, which matters for N pods (and on an emulated CPU)."""
    return ["-I", str(Path(__file__).with_name(f"{name}.py"))]  # -I: not its own directory on sys.path


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


def _spawn(state: LabState, ns: str, log_name: str, argv: list[str]) -> tuple[int, Path]:
    log = state_dir() / f"{state.lab}.{log_name}.log"
    if not log.exists():
        state.will_write(log)
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            netns.exec_argv(ns, [sys.executable, *argv]),
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
    # the server outlives this call (netlab down stops it); reap it when it exits, so a
    # long-lived caller (tests, a Python session) keeps no zombie
    threading.Thread(target=proc.wait, name=f"reap-{log_name}", daemon=True).start()
    return proc.pid, log


def _wait_ready(started: list[tuple[str, int, Path]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    pending = list(started)
    while pending:
        for item in list(pending):
            name, pid, log = item
            text = log.read_text() if log.exists() else ""
            if "serving" in text:
                pending.remove(item)
            elif not _alive(pid):
                raise EnvironmentProblem(f"the server in pod {name} exited at start: {text.strip()[-400:] or 'no output'}")
            elif time.monotonic() > deadline:
                raise EnvironmentProblem(f"the server in pod {name} was not serving after {READY_TIMEOUT:.0f} s: {text.strip()[-400:] or 'no output'}")
        time.sleep(0.02)


def _stop(pid: int | None) -> None:
    if _alive(pid):
        assert pid is not None
        os.kill(pid, 15)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.01)


def _start_dns(state: LabState, pods: list[PodInfo]) -> None:
    dns = state.extra.setdefault("dns", {})
    pod = next((p for p in pods if p.name == DNS_POD), None)
    if pod is None or _alive(dns.get("pid")):
        return
    pid, log = _spawn(state, pod.netns, DNS_POD, [*program("dns"), "--records", str(records_path(state.lab))])
    dns.update(pid=pid, pod=DNS_POD, log=str(log))
    _wait_ready([(DNS_POD, pid, log)])


def _start_workloads(state: LabState, services: list[Service], pods: list[PodInfo]) -> None:
    running = state.extra.setdefault("workloads", {})
    started = []
    for pod in pods:
        if pod.name == DNS_POD or pod.host_network:
            continue
        ports = workload_ports(services, pod)
        current = running.get(pod.name)
        if current and [tuple(p) for p in current["ports"]] == ports and _alive(current.get("pid")):
            continue
        if current:
            _stop(current.get("pid"))
            running.pop(pod.name, None)
        if not ports:
            continue
        argv = [*program("workload"), "--name", pod.name]
        for port, proto in ports:
            argv += [f"--{proto.lower()}", str(port)]
        pid, log = _spawn(state, pod.netns, pod.name, argv)
        running[pod.name] = {"pid": pid, "ports": [list(p) for p in ports], "log": str(log)}
        started.append((pod.name, pid, log))
    _wait_ready(started)


# --------------------------------------------------------------------- pods in a running lab
def add_pods(state: LabState, pods: list[tuple[str, dict[str, Any]]], namespace: str = "default", ports: list[tuple[int, str]] | None = None) -> list[Host]:
    """Add pods (``(node, {"name":..., "labels":...})``) with the datapath's own operations.

    A pod takes the slot of a deleted pod on its node if there is one (so it gets the freed
    address, as an IPAM would hand it out again), else the next one.
    """
    from netlab.datapaths import make_plan
    from netlab.kernel.backend import NetlinkBackend
    from netlab.lab import stop_processes

    source = state.source or state.lab
    old_topo = topology_of(state)
    data = copy.deepcopy(state.topology)
    deleted: dict[str, str] = state.extra.setdefault("deleted_pods", {})
    reused: list[str] = []
    for node_name, pod in pods:
        if pod["name"] in deleted:  # a deleted pod's name comes back in its old slot (and address)
            node_name = next(n["name"] for n in data["nodes"] if any(p["name"] == pod["name"] for p in n.get("pods", [])))
        node = next((n for n in data["nodes"] if n["name"] == node_name), None)
        if node is None:
            raise UsageError(f"lab {state.lab!r} has no node {node_name!r}; nodes: {', '.join(n['name'] for n in data['nodes'])}")
        slots = node.setdefault("pods", [])
        free = [i for i, p in enumerate(slots) if p["name"] in deleted and p["name"] not in reused]
        same = [i for i in free if slots[i]["name"] == pod["name"]]
        if same or free:
            index = (same or free)[0]
            reused.append(slots[index]["name"])
            slots[index] = pod
        else:
            slots.append(pod)
    new_topo = parse_topology(data, source)
    old_plan, new_plan = make_plan(old_topo, source), make_plan(new_topo, source)
    recorded = {e.name: e for e in state.host_objects()}
    for ep in new_plan.hosts:
        before = recorded.get(ep.name)
        if before is not None and before.ip != ep.ip:
            raise UsageError(f"adding pods would renumber {ep.name} ({before.ip} -> {ep.ip}); netlab cannot do that to a running lab")
    ops = incremental_ops(old_plan, new_plan, {names.namespace(state.lab, name) for name in reused})
    kernel = NetlinkBackend()
    created: list[str] = []
    current = None
    try:
        for current in ops:
            if isinstance(current, CreateNamespace):
                state.will_create(current.ns)
                created.append(current.ns)
            kernel.apply(current)
    except BaseException as exc:
        for ns in reversed(created):
            stop_processes(ns)
            kernel.remove_namespace(ns)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or current is None:
            raise
        raise BuildError(describe(current), exc, len(created)) from exc
    finally:
        kernel.close()
    for name in reused:
        if name not in {p["name"] for _n, p in pods}:
            deleted.pop(name, None)
    for _node, pod in pods:
        deleted.pop(pod["name"], None)
    state.topology = new_topo.model_dump(mode="json", by_alias=True)
    state.hosts = [asdict(e) for e in new_plan.hosts if e.name not in deleted]
    for _node, pod in pods:
        state.extra.setdefault("pod_namespaces", {})[pod["name"]] = namespace
        if ports:
            state.extra.setdefault("pod_ports", {})[pod["name"]] = [list(p) for p in ports]
    state.save()
    added = {p["name"] for _n, p in pods}
    return [e for e in new_plan.hosts if e.name in added]


def incremental_ops(old: Plan, new: Plan, reused: set[str]) -> list[Operation]:
    """What building ``new`` takes when ``old`` is built: the operations ``old`` lacks.

    ``reused`` are namespaces of deleted pods whose slots new pods take: their operations
    count as not built. Rules a datapath loads into existing namespaces are not reloaded.
    """
    known = {op for op in old.operations if not _belongs(op, reused, old.operations)}
    fresh = set(new.namespaces) - set(old.namespaces) | reused
    return [op for op in new.operations if op not in known and not (isinstance(op, LoadIptables) and op.ns not in fresh)]


def _belongs(op: Any, namespaces: set[str], plan_ops: tuple[Any, ...]) -> bool:
    """Is ``op`` part of building a pod whose namespace is in ``namespaces``?

    Its own namespace's operations, the veth to it, and what the node does with that veth
    (enslave, up, routes through it). Node-wide state that outlives the pod (policy rules)
    is not: it is still in the kernel.
    """
    if not namespaces:
        return False
    if getattr(op, "ns", None) in namespaces or getattr(op, "peer_ns", None) in namespaces:
        return True
    veths = {(o.ns, o.name) for o in plan_ops if getattr(o, "peer_ns", None) in namespaces}
    ns = getattr(op, "ns", None)
    return any((ns, getattr(op, attr, None)) in veths for attr in ("name", "dev"))


def remove_pods(state: LabState, pod_names: list[str]) -> None:
    """Delete pods: stop what runs in them and remove their namespaces (veths go with them).

    The pod stays in the lab's topology record as a free slot (``deleted_pods``), so the
    datapath's numbering of the other pods does not move; the next pod on that node takes it.
    """
    from netlab.lab import stop_processes

    eps = {e.name: e for e in state.host_objects()}
    deleted: dict[str, str] = state.extra.setdefault("deleted_pods", {})
    for name in pod_names:
        ep = eps.get(name)
        if ep is None or ep.kind != "pod":
            raise UsageError(f"lab {state.lab!r} has no pod {name!r}")
        if not ep.host_network:
            stop_processes(ep.ns)
            netns.remove(ep.ns)
            resolv = Path("/etc/netns") / ep.ns / "resolv.conf"
            resolv.unlink(missing_ok=True)
            try:
                resolv.parent.rmdir()
            except OSError:
                pass
        deleted[name] = ep.node or ""
        for key in ("pod_namespaces", "pod_ports", "workloads"):
            state.extra.get(key, {}).pop(name, None)
    state.hosts = [e for e in state.hosts if e["name"] not in pod_names]
    state.save()


def least_loaded_node(state: LabState) -> str:
    """Where the scheduler puts the next pod: the node with the fewest pods (file order on ties)."""
    topo = topology_of(state)
    deleted = state.extra.get("deleted_pods", {})
    return min(topo.nodes, key=lambda n: sum(1 for p in n.pods if not p.host_network and p.name not in deleted)).name


def pod_name(deployment: str, template: dict[str, Any], taken: set[str]) -> str:
    """``<deployment>-<pod-template-hash>-<5 chars>``, as a Deployment's ReplicaSet names pods."""
    template_hash = _k8s_chars(json.dumps(template, sort_keys=True), 10)
    for i in range(10000):
        name = f"{deployment}-{template_hash}-{_k8s_chars(f'{deployment}/{i}', 5)}"
        if name not in taken and len(name) <= 63:
            return name
    raise UsageError(f"no free pod name for deployment {deployment!r}")


def _k8s_chars(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_K8S_ALPHABET[b % len(_K8S_ALPHABET)] for b in digest[:length])


# --------------------------------------------------------------------- services and deployments
def upsert_services(state: LabState, services: list[Service]) -> list[Service]:
    """Add or replace services (kept ClusterIPs and NodePorts stay), allocating the rest."""
    topo = topology_of(state)
    existing = services_of(state)
    by_key = {s.key: s for s in existing}
    taken_elsewhere = [s for s in existing if s.key not in {n.key for n in services}]
    for svc in services:
        if svc.cluster_ip and not svc.headless:
            address = ipaddress.IPv4Address(svc.cluster_ip)
            if address not in topo.network.service_cidr:
                raise UsageError(f"service {svc.key}: clusterIP {address} is outside the lab's serviceCIDR {topo.network.service_cidr}")
            owner = next((s.key for s in taken_elsewhere if s.cluster_ip == svc.cluster_ip), None)
            if owner:
                raise UsageError(f"service {svc.key}: clusterIP {address} is already taken by {owner}")
        for port in svc.ports:
            owner = next((s.key for s in taken_elsewhere for p in s.ports if p.node_port and p.node_port == port.node_port and p.protocol == port.protocol), None)
            if owner:
                raise UsageError(f"service {svc.key}: nodePort {port.node_port} is already used by {owner}")
    allocated = allocate(services, topo.network.service_cidr, existing)
    for svc in allocated:
        by_key[svc.key] = svc
    state.extra["services"] = [_dump(s) for s in by_key.values()]
    state.save()
    return allocated


def deployments(state: LabState) -> dict[str, dict[str, Any]]:
    """Manifest Deployments, plus netlab's implicit ones: topology pods labelled ``app: <name>``."""
    out: dict[str, dict[str, Any]] = {k: dict(v) for k, v in state.extra.get("deployments", {}).items()}
    for pod in pods_of(state):
        app = pod.labels.get("app")
        if app and app not in out and pod.name != DNS_POD:
            out.setdefault(f"~{app}", {"name": app, "namespace": pod.namespace, "labels": {"app": app}, "ports": [], "pods": [], "implicit": True})
            out[f"~{app}"]["pods"].append(pod.name)
    return {v["name"]: v for v in out.values()}


def scale(state: LabState, name: str, replicas: int, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Set a deployment's replica count: new pods on the least loaded nodes, removals newest first."""
    if replicas < 0:
        raise UsageError("replicas must be 0 or more")
    known = deployments(state)
    deploy = record or known.get(name)
    if deploy is None:
        raise UsageError(f"lab {state.lab!r} has no deployment {name!r}; known: {', '.join(known) or 'none'} (topology pods count by their label app)")
    pods = list(deploy["pods"])
    if replicas > len(pods):
        taken = {e.name for e in state.host_objects()}
        template = {"labels": deploy["labels"], "ports": deploy["ports"]}
        for _ in range(replicas - len(pods)):
            if deploy.get("implicit"):  # topology pods web-1, web-2, ...: the next free number
                new = next(f"{name}-{i}" for i in range(1, 10000) if f"{name}-{i}" not in taken)
            else:
                new = pod_name(name, template, taken)
            taken.add(new)
            labels = dict(deploy["labels"])
            add_pods(state, [(least_loaded_node(state), {"name": new, "labels": labels})], deploy["namespace"], [tuple(p) for p in deploy["ports"]])
            pods.append(new)
    while len(pods) > replicas:
        remove_pods(state, [pods.pop()])  # the newest first
    deploy["pods"] = pods
    deploy["replicas"] = replicas
    if record is not None or name in state.extra.get("deployments", {}):
        state.extra.setdefault("deployments", {})[name] = deploy
    state.save()
    sync(state)
    return deploy


# --------------------------------------------------------------------- what status shows
def describe_services(state: LabState) -> list[dict[str, Any]]:
    services = services_of(state)
    backends = endpoints_for(services, pods_of(state))
    rows = []
    for svc in services:
        ports = []
        for p in svc.ports:
            text = f"{p.port}" + (f":{p.node_port}" if p.node_port else "") + f"/{p.protocol}"
            ports.append(text + (f"->{p.target}" if p.target != p.port else ""))
        rows.append(
            {
                "service": svc.key,
                "type": svc.type,
                "clusterIP": svc.external_name if svc.type == "ExternalName" else ("None" if svc.headless else svc.cluster_ip),
                "ports": ports,
                "affinity": svc.session_affinity,
                "externalTrafficPolicy": svc.external_traffic_policy if svc.has_node_ports else "",
                "endpoints": [(b.ip if ":" in b.ip else b.ip) + (f" ({b.pod}@{b.node})" if b.pod else "") for b in backends.get(svc.key, [])],
            }
        )
    return rows
