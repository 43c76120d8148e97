"""What a running lab's Services layer remembers, typed, kept in the lab's record.

The lab record (:class:`netlab.state.LabState`) keeps it under its own keys of
``state.extra`` (``services``, ``deployments``, ``workloads``, ``dns``, ``pod_namespaces``,
``pod_ports``, ``deleted_pods``, ``load_balancers``, ``speakers``, ``external_dns``, ``dns_owners``,
``lb_generation``); :class:`ClusterRecord` is the only code that reads or
writes them. Load it, change it, :meth:`ClusterRecord.store` it: every function that
changes the cluster loads a fresh record, so nothing works on a stale copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from netlab.errors import NetlabError
from netlab.model import Topology, from_pydantic, parse_topology
from netlab.model.service import Service
from netlab.services.endpoints import PodInfo
from netlab.state import LabState

Port = tuple[int, str]  # (port, "TCP" | "UDP")


@dataclass
class Server:
    """A process netlab runs in a pod (the cluster DNS, a hostname workload)."""

    pid: int
    log: str
    ports: list[Port] = field(default_factory=list)
    pod: str = ""


@dataclass
class Deployment:
    """A Deployment from a manifest, or netlab's implicit one for topology pods labelled ``app``."""

    name: str
    namespace: str
    labels: dict[str, str]
    ports: list[Port] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)
    replicas: int | None = None
    hostname: str | None = None  # the pod template's spec.hostname and spec.subdomain (every replica's)
    subdomain: str | None = None
    implicit: bool = False  # topology pods web-1, web-2, ... (not stored: derived from the topology)


@dataclass
class ClusterRecord:
    services: list[Service] = field(default_factory=list)
    deployments: dict[str, Deployment] = field(default_factory=dict)  # from manifests, by name
    workloads: dict[str, Server] = field(default_factory=dict)  # by pod
    dns: Server | None = None
    pod_namespaces: dict[str, str] = field(default_factory=dict)  # pods not in "default"
    pod_ports: dict[str, list[Port]] = field(default_factory=dict)  # containerPorts of manifest pods
    deleted_pods: dict[str, str] = field(default_factory=dict)  # free slots: pod name -> its node
    # LoadBalancer Services (netlab/services/loadbalancer.py): service key -> Assignment.to_json()
    load_balancers: dict[str, dict[str, Any]] = field(default_factory=dict)
    speakers: dict[str, Server] = field(default_factory=dict)  # MetalLB speaker by node
    lb_generation: int = 0  # of the speakers' config file
    external_dns: Server | None = None  # the internet's authoritative DNS server
    dns_owners: dict[str, str] = field(default_factory=dict)  # published name -> resource (TXT registry)

    @classmethod
    def load(cls, state: LabState) -> ClusterRecord:
        extra = state.extra
        dns = extra.get("dns") or None
        try:
            services = [Service.model_validate(d) for d in extra.get("services", [])]
        except ValidationError as exc:  # a record an older netlab wrote, from names it did not check
            problem = from_pydantic(exc, state.path.name, Service)
            raise NetlabError(
                f"lab {state.lab!r}: its record holds a Service netlab refuses ({problem.field}: {problem.message}); "
                f"take the lab down (netlab down {state.lab}) and build it again"
            ) from None
        return cls(
            services=services,
            deployments={k: _deployment(v) for k, v in extra.get("deployments", {}).items()},
            workloads={k: _server(v) for k, v in extra.get("workloads", {}).items()},
            dns=_server(dns) if dns and dns.get("pid") else None,
            pod_namespaces=dict(extra.get("pod_namespaces", {})),
            pod_ports={k: [_port(p) for p in v] for k, v in extra.get("pod_ports", {}).items()},
            deleted_pods=dict(extra.get("deleted_pods", {})),
            load_balancers={k: dict(v) for k, v in extra.get("load_balancers", {}).items()},
            speakers={k: _server(v) for k, v in extra.get("speakers", {}).items()},
            lb_generation=int(extra.get("lb_generation", 0)),
            external_dns=_server(extra["external_dns"]) if (extra.get("external_dns") or {}).get("pid") else None,
            dns_owners=dict(extra.get("dns_owners", {})),
        )

    def store(self, state: LabState) -> None:
        """Write this record into ``state`` and save the lab record."""
        state.extra.update(
            services=[s.model_dump(mode="json", by_alias=True) for s in self.services],
            deployments={k: _json(v) for k, v in self.deployments.items()},
            workloads={k: _json(v) for k, v in self.workloads.items()},
            dns=_json(self.dns) if self.dns else {},
            pod_namespaces=self.pod_namespaces,
            pod_ports={k: [list(p) for p in v] for k, v in self.pod_ports.items()},
            deleted_pods=self.deleted_pods,
            load_balancers=self.load_balancers,
            speakers={k: _json(v) for k, v in self.speakers.items()},
            lb_generation=self.lb_generation,
            external_dns=_json(self.external_dns) if self.external_dns else {},
            dns_owners=self.dns_owners,
        )
        state.save()


def has_services(state: LabState) -> bool:
    """Does this lab run Services (kube-proxy, cluster DNS)?"""
    return bool(state.extra.get("services"))


def topology_of(state: LabState) -> Topology:
    """The lab's topology as it is now (pods added by ``apply``/``scale`` included)."""
    return parse_topology(state.topology, state.source or state.lab)


def pods_of(state: LabState, record: ClusterRecord | None = None, topology: Topology | None = None) -> list[PodInfo]:
    """The lab's running pods, with the namespace, labels and ports Services see."""
    topo = topology or topology_of(state)
    rec = record or ClusterRecord.load(state)
    hosts = {h.name: h for h in state.host_objects() if h.kind == "pod"}
    out = []
    for node, pod in topo.pods():
        host = hosts.get(pod.name)
        if host is None:
            continue
        out.append(
            PodInfo(
                pod.name, rec.pod_namespaces.get(pod.name, "default"), dict(pod.labels), str(host.ip) if host.ip else None,
                node.name, host.ns, host.host_network, tuple(rec.pod_ports.get(pod.name, [])), pod.hostname, pod.subdomain,
            )
        )
    return out


def _port(value: Any) -> Port:
    return int(value[0]), str(value[1])


def _server(data: dict[str, Any]) -> Server:
    return Server(int(data["pid"]), str(data.get("log", "")), [_port(p) for p in data.get("ports", [])], str(data.get("pod", "")))


def _deployment(data: dict[str, Any]) -> Deployment:
    return Deployment(
        data["name"], data["namespace"], dict(data["labels"]), [_port(p) for p in data.get("ports", [])],
        list(data.get("pods", [])), data.get("replicas"), data.get("hostname"), data.get("subdomain"),
    )


def _json(value: Server | Deployment) -> dict[str, Any]:
    data = dict(vars(value))
    data["ports"] = [list(p) for p in value.ports]
    data.pop("implicit", None)
    if isinstance(value, Server) and not value.pod:
        data.pop("pod")
    return data
