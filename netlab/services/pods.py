"""Pods added to and removed from a running lab, as the kubelet and a ReplicaSet would.

A pod is added with the datapath's own operations: the plan of the topology with the new
pods, minus the plan of the topology without them (:func:`incremental_ops`), applied by
the lifecycle's one journaled loop (:func:`netlab.lab.apply`). A deleted pod leaves a free
slot in the lab's topology record, so the numbering of the other pods does not move and
the next pod on that node gets the freed address, as an IPAM would hand it out again.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict
from typing import Any

from netlab import lab, names
from netlab.datapaths import make_plan
from netlab.errors import UsageError
from netlab.kernel import netns, processes
from netlab.kernel.backend import NetlinkBackend
from netlab.model import parse_topology
from netlab.plan import Host, LoadIptables, Operation, Plan
from netlab.services.files import remove_resolv_conf
from netlab.services.processes import DNS_POD
from netlab.services.records import ClusterRecord, Deployment, Port, pods_of, topology_of
from netlab.state import LabState

_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes


def add(state: LabState, pods: list[tuple[str, dict[str, Any]]], namespace: str = "default", ports: list[Port] | None = None) -> list[Host]:
    """Add pods (``(node, {"name":..., "labels":...})``) with the datapath's own operations.

    A pod takes the slot of a deleted pod on its node if there is one (so it gets the freed
    address), else the next one. Raises :class:`~netlab.errors.BuildError` (nothing of these
    pods left) when the kernel refuses.
    """
    record = ClusterRecord.load(state)
    source = state.source or state.lab
    old_topo = topology_of(state)
    data = copy.deepcopy(state.topology)
    reused: list[str] = []
    for node_name, pod in pods:
        if pod["name"] in record.deleted_pods:  # a deleted pod's name comes back in its old slot (and address)
            node_name = next(n["name"] for n in data["nodes"] if any(p["name"] == pod["name"] for p in n.get("pods", [])))
        node = next((n for n in data["nodes"] if n["name"] == node_name), None)
        if node is None:
            raise UsageError(f"lab {state.lab!r} has no node {node_name!r}; nodes: {', '.join(n['name'] for n in data['nodes'])}")
        slots = node.setdefault("pods", [])
        free = [i for i, p in enumerate(slots) if p["name"] in record.deleted_pods and p["name"] not in reused]
        same = [i for i in free if slots[i]["name"] == pod["name"]]
        if same or free:
            index = (same or free)[0]
            reused.append(slots[index]["name"])
            slots[index] = pod
        else:
            slots.append(pod)
    new_topo = parse_topology(data, source)
    old_plan, new_plan = make_plan(old_topo, source), make_plan(new_topo, source)
    recorded = {h.name: h for h in state.host_objects()}
    for host in new_plan.hosts:
        before = recorded.get(host.name)
        if before is not None and before.ip != host.ip:
            raise UsageError(f"adding pods would renumber {host.name} ({before.ip} -> {host.ip}); netlab cannot do that to a running lab")
    ops = incremental_ops(old_plan, new_plan, {names.namespace(state.lab, name) for name in reused})
    kernel = NetlinkBackend()
    try:
        lab.apply(state, ops, kernel)
    finally:
        kernel.close()
    added = {p["name"] for _n, p in pods}
    for name in reused:
        if name not in added:
            record.deleted_pods.pop(name, None)
    for name in added:
        record.deleted_pods.pop(name, None)
        record.pod_namespaces[name] = namespace
        if ports:
            record.pod_ports[name] = list(ports)
    state.topology = new_topo.model_dump(mode="json", by_alias=True)
    state.hosts = [asdict(h) for h in new_plan.hosts if h.name not in record.deleted_pods]
    record.store(state)
    return [h for h in new_plan.hosts if h.name in added]


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


def remove(state: LabState, pod_names: list[str]) -> None:
    """Delete pods: stop what runs in them and remove their namespaces (veths go with them).

    The pod stays in the lab's topology record as a free slot (``deleted_pods``), so the
    datapath's numbering of the other pods does not move; the next pod on that node takes it.
    """
    record = ClusterRecord.load(state)
    hosts = {h.name: h for h in state.host_objects()}
    for name in pod_names:
        host = hosts.get(name)
        if host is None or host.kind != "pod":
            raise UsageError(f"lab {state.lab!r} has no pod {name!r}")
        if not host.host_network:
            processes.stop_in([host.ns])
            netns.remove(host.ns)
            remove_resolv_conf(host.ns)
        record.deleted_pods[name] = host.node or ""
        record.pod_namespaces.pop(name, None)
        record.pod_ports.pop(name, None)
        record.workloads.pop(name, None)
    state.hosts = [h for h in state.hosts if h["name"] not in pod_names]
    state.forget(*(hosts[name].ns for name in pod_names if not hosts[name].host_network))  # no longer the lab's
    record.store(state)


def least_loaded_node(state: LabState) -> str:
    """Where the scheduler puts the next pod: the node with the fewest pods (file order on ties)."""
    topo = topology_of(state)
    deleted = ClusterRecord.load(state).deleted_pods
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


def deployments(state: LabState) -> dict[str, Deployment]:
    """Manifest Deployments, plus netlab's implicit ones: topology pods labelled ``app: <name>``."""
    record = ClusterRecord.load(state)
    out = {name: copy.deepcopy(d) for name, d in record.deployments.items()}
    for pod in pods_of(state, record):
        app = pod.labels.get("app")
        if app and app not in out and pod.name != DNS_POD:
            implicit = out.setdefault(f"~{app}", Deployment(app, pod.namespace, {"app": app}, implicit=True))
            implicit.pods.append(pod.name)
    return {d.name: d for d in out.values()}
