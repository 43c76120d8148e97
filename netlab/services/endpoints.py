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
    hostname: str | None = None  # spec.hostname
    subdomain: str | None = None  # spec.subdomain


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


SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")  # every cluster has these


def endpoint_hostname(svc: Service, pod: PodInfo | None) -> str | None:
    """The endpoint's ``hostname`` in the Service's EndpointSlice: the pod's ``spec.hostname``
    when its ``spec.subdomain`` is this Service's name in the same namespace, else none
    (kubernetes pkg/controller/util/endpoint/controller_utils.go ``ShouldSetHostname``)."""
    if pod is None or not pod.hostname or pod.subdomain != svc.name or pod.namespace != svc.namespace:
        return None
    return pod.hostname


def dns_records(services: list[Service], pods: list[PodInfo], endpoints: dict[str, list[Endpoint]]) -> dict[str, Any]:
    """What the cluster DNS serves (see :mod:`netlab.services.dns`): the Services with their
    EndpointSlices (address, hostname, port) and the namespaces that exist."""
    by_name = {p.name: p for p in pods}
    namespaces = set(SYSTEM_NAMESPACES) | {s.namespace for s in services} | {p.namespace for p in pods}

    def endpoint(svc: Service, ep: Endpoint) -> dict[str, Any]:
        ip, _, port = ep.ip.partition(":")
        out: dict[str, Any] = {"ip": ip, "hostname": endpoint_hostname(svc, by_name.get(ep.pod) if ep.pod else None)}
        if port:
            out["port"] = int(port)  # a static endpoint's own port
        return out

    return {
        "domain": CLUSTER_DOMAIN,
        "nameserver": next((s.cluster_ip for s in services if s.key == "kube-system/kube-dns"), None),
        "namespaces": sorted(namespaces),
        "services": [
            {
                "name": s.name,
                "namespace": s.namespace,
                "clusterIP": None if s.headless else s.cluster_ip,
                "headless": s.headless,
                "externalName": s.external_name,
                "ports": [{"name": p.name, "port": p.port, "targetPort": p.target, "protocol": p.protocol} for p in s.ports],
                "endpoints": [endpoint(s, b) for b in endpoints.get(s.key, [])],
            }
            for s in services
        ],
    }
