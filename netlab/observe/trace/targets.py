"""The ends of a trace: a lab name or an address, and the pods a DNAT may rewrite it to.

:func:`resolve` turns a trace's SRC or DST (a node, pod or lab host, a Service's name, or an
IPv4 address) into an address and a kind. Behind an address a DNAT may rewrite (a Service's
ClusterIP or NodePort, a published port), :func:`dnat_targets` lists every possible target
pod, read from the lab's record: the trace walks a branch to each.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from netlab.errors import UsageError
from netlab.plan import Host
from netlab.services import records
from netlab.services.endpoints import endpoints_for


def resolve(state: Any, name: str) -> tuple[Host | None, str, str]:
    """A trace end: (endpoint or None, address, kind) for a lab name or an IPv4 address."""
    for ep in state.host_objects():
        if ep.name == name:
            if ep.ip is None:
                raise UsageError(f"{name!r} has no address to trace to or from")
            return ep, str(ep.ip), ep.kind
    for svc in records.ClusterRecord.load(state).services:
        if svc.name == name and svc.cluster_ip:
            return None, str(svc.cluster_ip), "service"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        valid = ", ".join(e.name for e in state.host_objects() if e.ip is not None)
        raise UsageError(f"lab {state.lab!r} has no node or pod named {name!r}; valid: {valid} (or an IPv4 address)") from None
    for ep in state.host_objects():
        if ep.ip is not None and str(ep.ip) == name:
            return ep, name, ep.kind
    return None, name, "address"



@dataclass(frozen=True)
class Target:
    """Where a DNAT may send the probe: a pod behind a Service or a published port."""

    endpoint: Host
    port: int | None  # the port the pod listens on
    why: str  # "service web" | "published port 8080"


def dnat_targets(state: Any, dst_ip: str, proto: str, port: int | None) -> tuple[str, list[Target]]:
    """The pods a DNAT rule may rewrite ``dst_ip:port`` to, and what the address is."""
    eps = state.host_objects()
    by_name = {e.name: e for e in eps}
    node_ips = {str(e.ip): e.name for e in eps if e.kind == "node" and e.ip is not None}
    out: list[Target] = []
    kind = ""
    if records.has_services(state):
        record = records.ClusterRecord.load(state)
        services = record.services
        backends = endpoints_for(services, records.pods_of(state, record))
        for svc in services:
            for sp in svc.ports:
                if sp.protocol.lower() != proto:
                    continue
                hit_cluster = svc.cluster_ip == dst_ip and (port is None or sp.port == port)
                hit_node = dst_ip in node_ips and sp.node_port is not None and sp.node_port == port
                if not (hit_cluster or hit_node):
                    continue
                kind = kind or ("service" if hit_cluster else "")
                for backend in backends.get(svc.key, []):
                    ep = by_name.get(backend.pod or "") or next((e for e in eps if e.ip is not None and str(e.ip) == backend.ip), None)
                    if ep is not None:
                        out.append(Target(ep, sp.target_port or sp.port, f"service {svc.name}"))
    if dst_ip in node_ips and port is not None:
        topo = state.topology or {}
        for node in topo.get("nodes", []):
            if node.get("name") != node_ips[dst_ip]:
                continue
            for pod in node.get("pods", []):
                for mapping in pod.get("ports", []):
                    if mapping.get("host_port") == port and mapping.get("protocol", "tcp") == proto and pod["name"] in by_name:
                        out.append(Target(by_name[pod["name"]], mapping.get("container_port"), f"published port {port}"))
    return kind, out

