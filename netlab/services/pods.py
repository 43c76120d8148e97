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
import heapq
import json
from dataclasses import asdict, dataclass
from typing import Any

from netlab import lab, names
from netlab.datapaths import make_plan
from netlab.errors import TopologyError, UsageError
from netlab.kernel import limits, netns, processes
from netlab.kernel.backend import NetlinkBackend
from netlab.model import Topology, parse_topology
from netlab.model.limits import PodLimit
from netlab.plan import AddVeth, Host, LoadIptables, Operation, Plan
from netlab.services.files import remove_resolv_conf
from netlab.services.processes import DNS_POD
from netlab.services.records import ClusterRecord, Deployment, Port, pods_of, topology_of
from netlab.state import LabState

_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes


def add(state: LabState, pods: list[tuple[str, dict[str, Any]]], namespace: str = "default", ports: list[Port] | None = None) -> list[Host]:
    """Add pods (``(node, {"name":..., "labels":...})``) with the datapath's own operations.

    A pod takes the slot of a deleted pod on its node if there is one (so it gets the freed
    address), else the next one. All of them are checked before the first is built, and built
    in one journaled apply: :class:`~netlab.errors.UsageError` (nothing built) when they do not
    fit (a limit of :mod:`netlab.model.limits`, an address, vpc-native's max pods, the kernel's
    namespaces), :class:`~netlab.errors.BuildError` (none of them left) when the kernel refuses.
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
    what = f"cannot add {len(pods)} pod(s) to lab {state.lab!r}"
    try:
        new_topo = parse_topology(data, source)
        old_plan, new_plan = make_plan(old_topo, source), make_plan(new_topo, source)
    except TopologyError as exc:  # a limit the new pods cross: the file is not to blame
        raise UsageError(f"{what}: the lab's topology with them would be refused at {exc.field}: {exc.message}; nothing was built") from None
    recorded = {h.name: h for h in state.host_objects()}
    placed = {h.name: h for h in new_plan.hosts}
    for host in new_plan.hosts:
        before = recorded.get(host.name)
        if before is not None and before.ip != host.ip:
            raise UsageError(f"adding pods would renumber {host.name} ({before.ip} -> {host.ip}); netlab cannot do that to a running lab")
    planned = {h.name for h in old_plan.hosts}  # hosts added beside the datapath (the NLB's) are not the plan's to move
    for name in recorded:
        if name in planned and name not in placed:
            raise UsageError(f"{what}: {name} would lose its address (vpc-native hands out the subnet in node order); nothing was built")
    pending = [p["name"] for _n, p in pods if p["name"] not in placed]
    if pending:  # vpc-native: no free IP, or max pods reached
        why = next((note.split(" is Pending: ", 1)[1] for note in new_plan.notes if note.startswith(f"pod {pending[0]} on ")), "")
        raise UsageError(
            f"{what}: {pending[0]} would not run ({why}; Kubernetes would leave it Pending)"
            + (f", nor would {len(pending) - 1} more" if len(pending) > 1 else "") + "; nothing was built"
        )
    ops = incremental_ops(old_plan, new_plan, {names.namespace(state.lab, name) for name in reused})
    limits.check_namespaces(len(set(new_plan.namespaces) - set(old_plan.namespaces)), f"adding {len(pods)} pod(s) to lab {state.lab!r}")
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
    veths = {(o.ns, o.name) for o in old.operations if isinstance(o, AddVeth) and o.peer_ns in reused}
    known = {op for op in old.operations if not _belongs(op, reused, veths)}
    fresh = set(new.namespaces) - set(old.namespaces) | reused
    return [op for op in new.operations if op not in known and not (isinstance(op, LoadIptables) and op.ns not in fresh)]


def _belongs(op: Any, namespaces: set[str], veths: set[tuple[str, str]]) -> bool:
    """Is ``op`` part of building a pod whose namespace is in ``namespaces`` (``veths``: the
    plan's veths to them, as ``(namespace, name)``)?

    Its own namespace's operations, the veth to it, and what the node does with that veth
    (enslave, up, routes through it). Node-wide state that outlives the pod (policy rules)
    is not: it is still in the kernel.
    """
    if not namespaces:
        return False
    if getattr(op, "ns", None) in namespaces or getattr(op, "peer_ns", None) in namespaces:
        return True
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


@dataclass(frozen=True)
class NodeRoom:
    """How many more pods a node of a running lab can take, and the limit that says so."""

    node: str
    load: int  # its pods with their own namespace: what the scheduler balances
    free: int  # how many more fit
    limit: PodLimit


def room(state: LabState) -> list[NodeRoom]:
    """Each node's room for more pods (file order), by :meth:`netlab.model.Topology.pod_limit`;
    a deleted pod's slot is free again."""
    return rooms_of(topology_of(state), set(ClusterRecord.load(state).deleted_pods))


def rooms_of(topo: Topology, deleted: set[str] | None = None) -> list[NodeRoom]:
    """:func:`room` of a topology (pure): ``deleted`` pods' slots are free."""
    deleted = deleted or set()
    out = []
    for i, node in enumerate(topo.nodes):
        limit = topo.pod_limit(node, i)
        load = sum(1 for pod in node.pods if not pod.host_network and pod.name not in deleted)
        out.append(NodeRoom(node.name, load, limit.free(node.pods, deleted), limit))
    return out


def place(rooms: list[NodeRoom], wanted: list[str | None]) -> list[str]:
    """Nodes for new pods: ``wanted[i]`` is the node pod ``i`` must go to (a deleted pod's name
    comes back to its slot there) or None, and then the scheduler picks: each time the node with
    the fewest pods that still has room (file order on ties). The caller checked the room."""
    index = {r.node: i for i, r in enumerate(rooms)}
    free = [r.free for r in rooms]
    load = [r.load for r in rooms]
    for node in wanted:
        if node is not None and node in index:
            free[index[node]] -= 1
            load[index[node]] += 1
    heap = [(load[i], i) for i in range(len(rooms)) if free[i] > 0]
    heapq.heapify(heap)
    out = []
    for node in wanted:
        if node is not None:
            out.append(node)
            continue
        current, i = heapq.heappop(heap)  # IndexError: more pods than room
        out.append(rooms[i].node)
        free[i] -= 1
        if free[i] > 0:
            heapq.heappush(heap, (current + 1, i))
    return out


def no_room(what: str, count: int, rooms: list[NodeRoom], instead: str = "") -> UsageError:
    """The refusal of ``count`` more pods than ``rooms`` hold: which limit, where from, what to do."""
    total = sum(r.free for r in rooms)
    shown = ", ".join(f"{r.node} {r.free}" for r in rooms[:8]) + (f", … ({len(rooms) - 8} more nodes)" if len(rooms) > 8 else "")
    full = next((r for r in rooms if r.free == 0), rooms[0])
    return UsageError(
        f"{what}: {count} more pod(s), but the nodes have room for {total} ({shown}): {full.node} runs at most "
        f"{full.limit.count} pods: {full.limit.why}. Nothing was built; "
        + (f"{instead}, or {full.limit.advice}" if instead else full.limit.advice)
    )


def least_loaded_node(state: LabState) -> str:
    """Where the scheduler puts the next pod: the node with the fewest pods that has room
    (file order on ties); :class:`UsageError` when every node is full."""
    rooms = room(state)
    if not any(r.free for r in rooms):
        raise no_room(f"cannot add a pod to lab {state.lab!r}", 1, rooms)
    return place(rooms, [None])[0]


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
