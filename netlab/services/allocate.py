"""ClusterIP and NodePort allocation, as the API server's allocators hand them out.

Deterministic (a hash of ``namespace/name``, then the next free value), so a lab gets the
same addresses every time it is built; the two system Services get Kubernetes' fixed
addresses (``.1`` for ``default/kubernetes``, ``.10`` for ``kube-system/kube-dns``).
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from netlab.model.service import DNS_SERVICE_INDEX, KUBERNETES_SERVICE_INDEX, NODEPORT_RANGE, Service


def _start(key: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % size


def allocate_cluster_ip(key: str, cidr: ipaddress.IPv4Network, taken: set[str]) -> str:
    """A free address of ``cidr`` for service ``key`` (never .0, .1-.15 or the broadcast)."""
    low, size = 16, cidr.num_addresses - 17
    first = _start(key, size)
    for step in range(size):
        candidate = str(cidr.network_address + low + (first + step) % size)
        if candidate not in taken:
            return candidate
    raise ValueError(f"network.serviceCIDR {cidr} is full: no free ClusterIP for {key}")


def allocate_node_port(key: str, taken: set[int]) -> int:
    size = len(NODEPORT_RANGE)
    first = _start(key, size)
    for step in range(size):
        candidate = NODEPORT_RANGE.start + (first + step) % size
        if candidate not in taken:
            return candidate
    raise ValueError(f"no free NodePort left in 30000-32767 for {key}")


def allocate(services: list[Service], cidr: ipaddress.IPv4Network, existing: list[Service] = ()) -> list[Service]:  # type: ignore[assignment]
    """Fill in ClusterIPs and NodePorts; ``existing`` (already allocated) keep theirs."""
    kept = {s.key: s for s in existing}
    taken_ips = {s.cluster_ip for s in existing if s.cluster_ip and not s.headless}
    taken_ports = {p.node_port for s in existing for p in s.ports if p.node_port}
    taken_ips |= {s.cluster_ip for s in services if s.cluster_ip and not s.headless}
    taken_ports |= {p.node_port for s in services for p in s.ports if p.node_port}
    taken_ports |= {s.health_check_node_port for s in [*existing, *services] if s.health_check_node_port}
    out = []
    for svc in services:
        before = kept.get(svc.key)
        update: dict[str, Any] = {}
        if svc.type != "ExternalName" and svc.cluster_ip is None:
            if svc.key == "default/kubernetes":
                ip = str(cidr.network_address + KUBERNETES_SERVICE_INDEX)
            elif svc.key == "kube-system/kube-dns":
                ip = str(cidr.network_address + DNS_SERVICE_INDEX)
            elif before is not None and before.cluster_ip:
                ip = before.cluster_ip
            else:
                ip = allocate_cluster_ip(svc.key, cidr, taken_ips)
            taken_ips.add(ip)
            update["cluster_ip"] = ip
        if svc.has_node_ports:
            ports = []
            for port in svc.ports:
                if port.node_port is None:
                    old = next((p.node_port for p in (before.ports if before else ()) if p.port == port.port and p.protocol == port.protocol), None)
                    number = old or allocate_node_port(f"{svc.key}:{port.port}/{port.protocol}", taken_ports)
                    taken_ports.add(number)
                    port = port.model_copy(update={"node_port": number})
                ports.append(port)
            update["ports"] = tuple(ports)
        if svc.needs_health_check_node_port and svc.health_check_node_port is None:
            number = (before.health_check_node_port if before else None) or allocate_node_port(f"{svc.key}:healthz", taken_ports)
            taken_ports.add(number)
            update["health_check_node_port"] = number
        out.append(svc.model_copy(update=update) if update else svc)
    return out
