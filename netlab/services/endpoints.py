"""The endpoints controller's arithmetic, pure: which pods back which Service, and what
the cluster DNS and a pod's resolv.conf say about them. Nothing here touches the kernel
or the lab record; :mod:`netlab.services.cluster` feeds it and writes the results out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from netlab.model import Topology, k8s_names
from netlab.model.service import CLUSTER_DOMAIN, Service
from netlab.services.kubeproxy import Endpoint


@dataclass(frozen=True)
class PodInfo:
    """A running pod as Services see it."""

    name: str
    namespace: str
    labels: dict[str, str]
    ip: str | None
    node: str | None
    netns: str
    host_network: bool = False
    ports: tuple[tuple[int, str], ...] = field(default=())


def cluster_cidr(topology: Topology) -> str:
    """What kube-proxy's --cluster-cidr is: the pod CIDR (VPC-native pods live in the subnets)."""
    if topology.network.cni == "vpc-native":
        return str(topology.subnet_of(topology.nodes[0]).cidr)
    return str(topology.network.pod_cidr)


def selects(svc: Service, pod: PodInfo) -> bool:
    return bool(svc.selector) and pod.namespace == svc.namespace and all(pod.labels.get(k) == v for k, v in svc.selector.items())


def endpoints_for(services: list[Service], pods: list[PodInfo]) -> dict[str, list[Endpoint]]:
    """Each Service's ready endpoints, like the endpoints controller (sorted by address)."""
    out: dict[str, list[Endpoint]] = {}
    for svc in services:
        if svc.endpoints:
            out[svc.key] = [Endpoint(e) for e in svc.endpoints]
            continue
        chosen = [Endpoint(p.ip, p.node, p.name) for p in pods if p.ip and selects(svc, p)]
        out[svc.key] = sorted(chosen, key=lambda b: ipaddress.IPv4Address(b.ip))
    return out


def workload_ports(services: list[Service], pod: PodInfo) -> list[tuple[int, str]]:
    """The ports a pod's hostname server listens on: Services' targetPorts and its containerPorts."""
    ports = set(pod.ports)
    for svc in services:
        if svc.type != "ExternalName" and selects(svc, pod):
            ports |= {(p.target, p.protocol) for p in svc.ports}
    return sorted(ports)


def resolv_conf(namespace: str, nameserver: str) -> str:
    """A pod's /etc/resolv.conf, as the kubelet writes it (ClusterFirst).

    ``namespace`` must be a Kubernetes namespace name and ``nameserver`` an IPv4 address
    (ValueError otherwise): a newline in either would add lines of its own to the file.
    """
    problem = k8s_names.problem("namespace", namespace, k8s_names.is_dns1123_label)
    if problem is not None:
        raise ValueError(f"refusing to write a resolv.conf: {problem}")
    ipaddress.IPv4Address(nameserver)
    return (
        f"search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n"
        f"nameserver {nameserver}\n"
        "options ndots:5\n"
    )


def dns_records(services: list[Service], pods: list[PodInfo], endpoints: dict[str, list[Endpoint]]) -> dict[str, Any]:
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
                "endpoints": [{"ip": b.ip.split(":")[0], "pod": b.pod} for b in endpoints.get(s.key, [])],
            }
            for s in services
        ],
        "pods": [{"name": p.name, "namespace": p.namespace, "ip": p.ip} for p in pods if p.ip and not p.host_network],
    }
