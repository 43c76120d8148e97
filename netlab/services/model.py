"""Services in topology files: the schema, its checks, and ClusterIP/NodePort allocation.

A ``services:`` entry is a Kubernetes v1 Service spec flattened with its metadata (name,
namespace), with Kubernetes' own key names and defaults. Checks that need the whole
topology (duplicates, addresses inside ``network.serviceCIDR``, NodePort clashes) run in
:func:`check_services`, which :class:`netlab.model.Topology` calls; each problem names the
field. Allocation is deterministic (a hash of ``namespace/name``, then the next free value),
so a lab gets the same addresses every time it is built. Nothing here touches the kernel.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from netlab.model import Topology

NODEPORT_RANGE = range(30000, 32768)
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, Kubernetes' default for sessionAffinity: ClientIP
KUBERNETES_SERVICE_INDEX = 1  # 10.96.0.1: default/kubernetes
DNS_SERVICE_INDEX = 10  # 10.96.0.10: kube-system/kube-dns
CLUSTER_DOMAIN = "cluster.local"
IPVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ServicePort(_Spec):
    name: str | None = None
    port: int = Field(ge=1, le=65535)
    target_port: int | None = Field(None, alias="targetPort", ge=1, le=65535)
    protocol: Literal["TCP", "UDP"] = "TCP"
    node_port: int | None = Field(None, alias="nodePort")

    @field_validator("node_port")
    @classmethod
    def _node_port(cls, value: int | None) -> int | None:
        if value is not None and value not in NODEPORT_RANGE:
            raise ValueError(f"nodePort {value} is outside the NodePort range 30000-32767")
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def target(self) -> int:
        return self.target_port or self.port


class ClientIPConfig(_Spec):
    timeout_seconds: int = Field(DEFAULT_AFFINITY_TIMEOUT, alias="timeoutSeconds", ge=1, le=86400)


class SessionAffinityConfig(_Spec):
    client_ip: ClientIPConfig = Field(ClientIPConfig(), alias="clientIP")


class Service(_Spec):
    """A Kubernetes Service (v1 ``spec`` plus ``name`` and ``namespace``)."""

    name: str
    namespace: str = "default"
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    selector: dict[str, str] = Field(default_factory=dict)
    ports: tuple[ServicePort, ...] = ()
    session_affinity: Literal["None", "ClientIP"] = Field("None", alias="sessionAffinity")
    session_affinity_config: SessionAffinityConfig = Field(SessionAffinityConfig(), alias="sessionAffinityConfig")
    cluster_ip: str | None = Field(None, alias="clusterIP")
    external_traffic_policy: Literal["Cluster", "Local"] = Field("Cluster", alias="externalTrafficPolicy")
    external_name: str | None = Field(None, alias="externalName")
    # netlab's own: endpoints that are not pods (the API server on a node's address)
    endpoints: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _DNS1035.match(value) or len(value) > 63:
            raise ValueError(
                f"invalid service name {value!r}: a DNS label (lowercase letters, digits, '-', starting with a letter, at most 63)"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS1123.match(value) or len(value) > 63:
            raise ValueError(f"invalid namespace {value!r}: lowercase letters, digits and '-', at most 63")
        return value

    @field_validator("cluster_ip", mode="before")
    @classmethod
    def _cluster_ip(cls, value: Any) -> Any:
        if value is None or value == "None" or value == "":
            return value or None
        try:
            ipaddress.IPv4Address(str(value))
        except ValueError:
            raise ValueError(f"clusterIP {value!r} is not an IPv4 address (or None for a headless service)") from None
        return str(value)

    @model_validator(mode="after")
    def _shape(self) -> Service:
        if self.type == "ExternalName":
            if not self.external_name:
                raise ValueError("type ExternalName needs externalName (the DNS name to alias, e.g. example.com)")
            return self
        if self.external_name:
            raise ValueError("externalName is only for type ExternalName")
        if not self.ports:
            raise ValueError(f"service {self.name!r} needs at least one port (ports: [{{port: 80, targetPort: 8080}}])")
        if self.external_traffic_policy == "Local" and self.type not in ("NodePort", "LoadBalancer"):
            raise ValueError("externalTrafficPolicy Local applies only to type NodePort or LoadBalancer")
        if self.headless and self.type != "ClusterIP":
            raise ValueError("a headless service (clusterIP: None) must be type ClusterIP")
        seen: set[tuple[int, str]] = set()
        names: set[str] = set()
        for port in self.ports:
            if (port.port, port.protocol) in seen:
                raise ValueError(f"port {port.port}/{port.protocol} is listed twice")
            seen.add((port.port, port.protocol))
            if len(self.ports) > 1 and not port.name:
                raise ValueError("with more than one port every port needs a name (Kubernetes' rule)")
            if port.name in names:
                raise ValueError(f"port name {port.name!r} is used twice")
            names.add(port.name or "")
            if port.node_port is not None and self.type not in ("NodePort", "LoadBalancer"):
                raise ValueError(f"nodePort {port.node_port} needs type NodePort or LoadBalancer")
        return self

    # ------------------------------------------------------------ derived
    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"

    @property
    def has_node_ports(self) -> bool:
        return self.type in ("NodePort", "LoadBalancer")

    @property
    def affinity_timeout(self) -> int | None:
        return self.session_affinity_config.client_ip.timeout_seconds if self.session_affinity == "ClientIP" else None

    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"

    def port_name(self, port: ServicePort) -> str:
        """kube-proxy's ServicePortName string: ``ns/name:port`` (``ns/name`` for an unnamed port)."""
        return f"{self.key}:{port.name}" if port.name else self.key


def system_services(api_endpoint: str) -> list[Service]:
    """The two Services every cluster has: the API server and cluster DNS."""
    return [
        Service.model_validate(
            {
                "name": "kubernetes",
                "namespace": "default",
                "ports": [{"name": "https", "port": 443, "targetPort": 6443}],
                "endpoints": [api_endpoint],
            }
        ),
        Service.model_validate(
            {
                "name": "kube-dns",
                "namespace": "kube-system",
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            }
        ),
    ]


# --------------------------------------------------------------------- checks
def check_services(topology: Topology) -> tuple[str, str] | None:
    """The first cross-field problem with ``topology``'s services as (field, message), or None."""
    net = topology.network
    cidr = net.service_cidr
    if cidr.num_addresses < 16:
        return "network.serviceCIDR", f"{cidr} is too small: use a /28 or larger (10.96.0.0/12 is Kubernetes' default)"
    ranges = [("network.podCIDR", net.pod_cidr)] + [(f"network.subnets {s.cidr}", s.cidr) for s in net.subnets]
    if net.internet is not None:
        ranges.append(("network.internet", net.internet))
    for label, other in ranges:
        if cidr.overlaps(other) and not (label == "network.podCIDR" and net.cni == "docker0"):
            return "network.serviceCIDR", f"{cidr} overlaps {label} {other}; choose a range that does not overlap"
    if net.proxy_mode == "ipvs" and net.ipvs_scheduler not in IPVS_SCHEDULERS:
        return "network.ipvsScheduler", f"unknown IPVS scheduler {net.ipvs_scheduler!r}; valid: {', '.join(IPVS_SCHEDULERS)}"
    if topology.services and net.cni == "docker0":
        return "services", "Services need a Kubernetes pod network (cni vxlan, ipip, host-gw or vpc-native), not docker0"
    reserved = {
        str(cidr.network_address + KUBERNETES_SERVICE_INDEX): "default/kubernetes",
        str(cidr.network_address + DNS_SERVICE_INDEX): "kube-system/kube-dns",
    }
    keys: dict[str, int] = {}
    ips: dict[str, str] = dict(reserved)
    node_ports: dict[tuple[int, str], str] = {}
    for i, svc in enumerate(topology.services):
        if svc.key in keys or svc.key in reserved.values():
            return f"services[{i}].name", f"duplicate service {svc.key!r}" + (
                " (netlab creates it)" if svc.key in reserved.values() else f" (already services[{keys[svc.key]}])"
            )
        keys[svc.key] = i
        if svc.cluster_ip and not svc.headless:
            address = ipaddress.IPv4Address(svc.cluster_ip)
            if address not in cidr or address in (cidr.network_address, cidr.broadcast_address):
                return f"services[{i}].clusterIP", f"{address} is not a usable address of network.serviceCIDR {cidr}"
            if str(address) in ips:
                return f"services[{i}].clusterIP", f"{address} is already taken by {ips[str(address)]}"
            ips[str(address)] = svc.key
        for j, port in enumerate(svc.ports):
            if port.node_port is not None:
                owner = node_ports.get((port.node_port, port.protocol))
                if owner:
                    return f"services[{i}].ports[{j}].nodePort", f"nodePort {port.node_port}/{port.protocol} is already used by {owner}"
                node_ports[(port.node_port, port.protocol)] = svc.key
    return None


# --------------------------------------------------------------------- allocation
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
        out.append(svc.model_copy(update=update) if update else svc)
    return out
