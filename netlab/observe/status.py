"""What a running lab looks like in the kernel: interfaces, addresses, routes per namespace.

Read-only: :func:`~netlab.kernel.inspect.inspect_namespaces` reads every namespace of the lab
(a few at a time, three netlink dumps each); this module groups what it finds by the lab's
nodes, pods and hosts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from netlab.kernel import netns
from netlab.kernel.inspect import Interface, Route, inspect_namespaces
from netlab.state import LabState


@dataclass
class NamespaceView:
    """One of the lab's namespaces, named after its node, pod or host; empty if it is gone."""

    name: str
    ns: str
    kind: str
    present: bool
    node: str | None = None  # for a pod: the node it runs on
    interfaces: list[Interface] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)


def collect(state: LabState) -> list[NamespaceView]:
    """Every namespace of the lab once (hostNetwork pods share their node's), in the lab's order."""
    views = []
    seen = set()
    for ep in state.host_objects():
        if ep.ns in seen:
            continue
        seen.add(ep.ns)
        views.append(NamespaceView(ep.name, ep.ns, ep.kind, netns.exists(ep.ns), ep.node if ep.kind == "pod" else None))
    found = inspect_namespaces([v.ns for v in views if v.present])
    for view in views:
        tables = found.get(view.ns)
        if tables is None:
            view.present = False  # gone since: removed while we looked
            continue
        view.interfaces, view.routes = tables
    return views


def as_json(state: LabState, views: list[NamespaceView]) -> dict[str, Any]:
    """What ``netlab status LAB --json`` prints (the CLI adds the lab's Services)."""
    return {
        "lab": state.lab,
        "cni": state.cni,
        "status": state.status,
        "source": state.source,
        "notes": state.notes,
        "endpoints": state.hosts,
        "namespaces": [asdict(v) for v in views],
    }


@dataclass
class EniView:
    """One ENI of a vpc-native node as ipamd's datastore holds it (``/v1/enis`` on aws-node's
    introspection port 61679 shows the same): its addresses or /28 prefixes, and which pod has each."""

    node: str
    device: str
    primary: str
    mac: str
    cidrs: list[str]
    assigned: dict[str, str]  # address -> pod
    free: list[str]


def enis(state: LabState) -> list[EniView]:
    """The ENIs of a vpc-native lab's nodes as they are now (pods added by ``apply``/``scale``
    included, a deleted pod's address free again); empty for other pod networks."""
    if state.cni != "vpc-native":
        return []
    from netlab.datapaths import vpc
    from netlab.services.records import ClusterRecord, topology_of

    deleted = set(ClusterRecord.load(state).deleted_pods)
    out = []
    for alloc in vpc.allocate(topology_of(state)).values():
        for eni in alloc.enis:
            assigned = {str(ip): pod for ip, pod in eni.assigned.items() if pod not in deleted}
            out.append(EniView(
                alloc.node.name, eni.device, str(eni.primary), eni.mac, [str(c) for c in eni.cidrs], assigned,
                [str(ip) for ip in eni.addresses if str(ip) not in assigned],
            ))
    return out
