"""Kubernetes Services as netlab reads them: the schema and Kubernetes' own constants.

A ``services:`` entry is a Kubernetes v1 Service spec flattened with its metadata (name,
namespace), with Kubernetes' own key names and defaults. Checks that need the whole
topology (duplicates, addresses inside ``network.serviceCIDR``, NodePort clashes) run in
:func:`netlab.model.topology.check_services`; each problem names the field. ClusterIPs and
NodePorts are allocated by :mod:`netlab.services.allocate`. Nothing here touches the kernel.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from netlab.model import aws_lb, k8s_names

NODEPORT_RANGE = range(30000, 32768)
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, Kubernetes' default for sessionAffinity: ClientIP
KUBERNETES_SERVICE_INDEX = 1  # 10.96.0.1: default/kubernetes
DNS_SERVICE_INDEX = 10  # 10.96.0.10: kube-system/kube-dns
CLUSTER_DOMAIN = "cluster.local"
IPVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq")
_ENDPOINT = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,3}){3})(?::([0-9]{1,5}))?")


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ServicePort(_Spec):
    name: str | None = None  # a DNS-1123 label (Kubernetes' rule for a Service's port names)
    port: int = Field(ge=1, le=65535)
    target_port: int | None = Field(None, alias="targetPort", ge=1, le=65535)
    protocol: Literal["TCP", "UDP"] = "TCP"
    node_port: int | None = Field(None, alias="nodePort")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else k8s_names.require("port name", value, k8s_names.is_dns1123_label)

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
    # type LoadBalancer (netlab/services/loadbalancer.py): a requested address, the client
    # ranges kube-proxy lets in (KUBE-FW-*), which controller owns it, and whether it gets NodePorts
    load_balancer_ip: str | None = Field(None, alias="loadBalancerIP")
    load_balancer_source_ranges: tuple[ipaddress.IPv4Network, ...] = Field((), alias="loadBalancerSourceRanges")
    load_balancer_class: str | None = Field(None, alias="loadBalancerClass")
    allocate_load_balancer_node_ports: bool = Field(True, alias="allocateLoadBalancerNodePorts")
    # type LoadBalancer with externalTrafficPolicy Local: kube-proxy answers /healthz on it on every node
    health_check_node_port: int | None = Field(None, alias="healthCheckNodePort")
    # metadata.annotations (MetalLB's and ExternalDNS's are read; others are reported as ignored)
    annotations: dict[str, str] = Field(default_factory=dict)
    # netlab's own: endpoints that are not pods (the API server on a node's address)
    endpoints: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return k8s_names.require("service name", value, k8s_names.is_dns1035_label)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return k8s_names.require("namespace", value, k8s_names.is_dns1123_label)

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        return k8s_names.require_labels("selector", value)

    @field_validator("external_name")
    @classmethod
    def _external_name(cls, value: str | None) -> str | None:
        return None if value is None else k8s_names.require("externalName", value, k8s_names.is_external_name)

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for endpoint in value:
            match = _ENDPOINT.fullmatch(endpoint)
            try:
                ipaddress.IPv4Address(match.group(1) if match else "")
            except ValueError:
                raise ValueError(f"endpoint {endpoint!r} is not an IPv4 address, or IPv4:PORT") from None
            if match and match.group(2) and not 1 <= int(match.group(2)) <= 65535:
                raise ValueError(f"endpoint {endpoint!r}: port {match.group(2)} is outside 1-65535")
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

    @field_validator("load_balancer_ip", mode="before")
    @classmethod
    def _lb_ip(cls, value: Any) -> Any:
        if value in (None, ""):
            return None
        try:
            ipaddress.IPv4Address(str(value))
        except ValueError:
            raise ValueError(f"loadBalancerIP {value!r} is not an IPv4 address") from None
        return str(value)

    @field_validator("load_balancer_source_ranges", mode="before")
    @classmethod
    def _source_ranges(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise ValueError("must be a list of CIDRs, e.g. [203.0.113.0/24]")
        out = []
        for item in value:
            try:
                out.append(ipaddress.IPv4Network(str(item).strip(), strict=False))  # as Go's ParseCIDR: host bits dropped
            except ValueError:
                raise ValueError(f"{item!r} is not an IPv4 CIDR (e.g. 203.0.113.0/24)") from None
        return out

    @field_validator("health_check_node_port")
    @classmethod
    def _hc_node_port(cls, value: int | None) -> int | None:
        if value is not None and value not in NODEPORT_RANGE:
            raise ValueError(f"healthCheckNodePort {value} is outside the NodePort range 30000-32767")
        return value

    @field_validator("load_balancer_ip", "load_balancer_source_ranges", "load_balancer_class", "allocate_load_balancer_node_ports")
    @classmethod
    def _only_load_balancer(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("type", "ClusterIP") != "LoadBalancer" and value not in (None, (), True):
            raise ValueError("may only be used when type is LoadBalancer (the API server refuses it too)")
        return value

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
        if self.health_check_node_port is not None and not self.needs_health_check_node_port:
            raise ValueError("healthCheckNodePort needs type LoadBalancer with externalTrafficPolicy Local")
        if self.type == "LoadBalancer" and aws_lb.claimed(self.annotations, self.load_balancer_class):
            aws_lb.settings(self.annotations, self.external_traffic_policy)  # ValueError names the annotation
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
        """Does it get NodePorts? NodePort always; LoadBalancer unless allocateLoadBalancerNodePorts is false."""
        return self.type == "NodePort" or (self.type == "LoadBalancer" and self.allocate_load_balancer_node_ports)

    @property
    def needs_health_check_node_port(self) -> bool:
        """kube-proxy's healthCheckNodePort: LoadBalancer with externalTrafficPolicy Local."""
        return self.type == "LoadBalancer" and self.external_traffic_policy == "Local"

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
