"""North-south traces: the waypoints between the internet and a pod.

A request from outside the cluster meets several rewrites on its way to a pod, each in a
different namespace, and :func:`~netlab.observe.trace.targets.dnat_targets` alone (one DNAT,
one target pod) cannot say where. Here every possible way in is spelled out as a chain of
:class:`Waypoint` s, the namespaces the request is sent to in turn, each rewriting it for
the next:

- **MetalLB (layer 2)**: the Service's ``status.loadBalancer.ingress`` address is on no
  interface; the leader node answers ARP for it (``announced``) and kube-proxy's KUBE-EXT
  rules DNAT it there, as for a NodePort.
- **AWS NLB**: the NLB's namespace owns its address and DNATs to a target: a node's NodePort
  (*instance* targets, then kube-proxy on that node DNATs again) or a pod (*ip* targets).
  With proxy protocol v2 the NLB's forwarder opens a new connection instead (a proxy).
- **NodePort**: the node that owns the address DNATs (and, with externalTrafficPolicy
  Cluster, may SNAT and forward to another node).
- **A proxy** (ingress-nginx's controller pod, a Gateway's data-plane pod): nginx ends the
  connection and opens a new one to an upstream, a Service's **endpoint pod** (nginx
  bypasses the ClusterIP), chosen by host and path. The trace's probe is then an HTTP request
  whose marker rides in the URL and an ``X-Lab-Trace`` header, so the new connection is
  recognised as the same request; every upstream nginx may pick is a candidate.

The branch a probe took is chosen afterwards from the captures, as for any DNAT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from netlab.plan import Host
from netlab.services import gateway, ingress, loadbalancer, nlbrun
from netlab.services.endpoints import endpoints_for
from netlab.services.records import ClusterRecord, pods_of

MAX_DEPTH = 4  # LB -> node -> proxy -> pod is the longest chain a lab builds


@dataclass(frozen=True)
class Waypoint:
    """A namespace the request is sent to on its way, which rewrites it for the next step."""

    endpoint: Host  # where the request arrives (the NLB, a node, a proxy pod)
    address: str  # the address the request is sent to on this step
    port: int | None
    label: str  # how the verdict names this step: "NLB k8s-... (instance)", "node2:31234"
    kind: str = ""  # nlb | loadbalancer | nodeport | proxy
    proxy: bool = False  # a proxy ends the connection here and opens a new one
    announced: bool = False  # the address is answered by ARP (MetalLB), on no interface


@dataclass(frozen=True)
class Exit:
    """Where one step leads: a pod or node (the end, or a waypoint's next step)."""

    endpoint: Host
    address: str
    port: int | None
    why: str


class Cluster:
    """What a lab's record says about its ways in: LB addresses, NLBs, NodePorts, proxies."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.hosts = state.host_objects()
        self.by_name = {h.name: h for h in self.hosts}
        self.by_ip = {str(h.ip): h for h in self.hosts if h.ip is not None and not h.host_network}
        self.nodes = {str(h.ip): h for h in self.hosts if h.kind == "node" and h.ip is not None}
        record = ClusterRecord.load(state)
        self.services = list(record.services)
        self.backends = endpoints_for(self.services, pods_of(state, record))
        assignments = {k: loadbalancer.Assignment.from_json(v) for k, v in record.load_balancers.items()}
        self.metallb = {a.ip: (key, a) for key, a in assignments.items() if a.ip}
        self.nlbs = nlbrun.balancers_of(state) if state.extra.get(nlbrun.KEY) else {}
        self.proxies = _proxies(state)

    # one step
    def exits(self, ip: str, port: int | None, proto: str) -> tuple[Waypoint, list[Exit]] | None:
        """The waypoint at ``ip:port`` and where it sends the request, or None (no rewrite there)."""
        nlb_exit = self._nlb(ip, port, proto)
        if nlb_exit is not None:
            return nlb_exit
        if ip in self.metallb:
            return self._metallb(ip, port, proto)
        if ip in self.nodes and port is not None:
            return self._node_port(ip, port, proto)
        return None

    def _nlb(self, ip: str, port: int | None, proto: str) -> tuple[Waypoint, list[Exit]] | None:
        nlb_host = self.by_name.get("nlb")
        for balancer in self.nlbs.values():
            if balancer.get("ip") != ip or nlb_host is None:
                continue
            for group in balancer.get("groups", []):
                if group.get("protocol", "tcp") != proto or (port is not None and group.get("port") != port):
                    continue
                mode = balancer.get("target_type", "instance")
                ppv2 = bool(group.get("proxy_protocol"))  # served by the NLB's forwarder: a new connection
                label = f"NLB {balancer.get('name')} ({mode} targets{', proxy protocol v2' if ppv2 else ''})"
                here = Waypoint(nlb_host, ip, group.get("port"), label, "nlb", proxy=ppv2)
                out = []
                for target in group.get("targets", []):
                    host = self.nodes.get(target["ip"]) if mode == "instance" else self.by_ip.get(target["ip"])
                    if host is not None:
                        out.append(Exit(host, target["ip"], target.get("port"), f"target {target.get('id', target['ip'])}"))
                return here, out
        return None

    def _metallb(self, ip: str, port: int | None, proto: str) -> tuple[Waypoint, list[Exit]] | None:
        key, assignment = self.metallb[ip]
        leader = self.by_name.get(assignment.leader or "")
        svc = next((s for s in self.services if s.key == key), None)
        if leader is None or svc is None:
            return None
        ports = [p for p in svc.ports if p.protocol.lower() == proto and (port is None or p.port == port)]
        if not ports:
            return None
        here = Waypoint(leader, ip, ports[0].port, f"LoadBalancer {ip} (MetalLB L2, leader {leader.name})", "loadbalancer", announced=True)
        return here, self._service_exits(svc, ports[0].target, f"service {svc.name}")

    def _node_port(self, ip: str, port: int, proto: str) -> tuple[Waypoint, list[Exit]] | None:
        node = self.nodes[ip]
        for svc in self.services:
            for sp in svc.ports:
                if sp.node_port == port and sp.protocol.lower() == proto:
                    here = Waypoint(node, ip, port, f"NodePort {node.name}:{port}", "nodeport")
                    return here, self._service_exits(svc, sp.target, f"service {svc.name}")
        return None

    def _service_exits(self, svc: Any, target_port: int, why: str) -> list[Exit]:
        out = []
        for backend in self.backends.get(svc.key, []):
            host = self.by_name.get(backend.pod or "") or self.by_ip.get(backend.ip)
            if host is not None:
                out.append(Exit(host, str(host.ip), target_port, why))
        return out

    # a proxy's upstreams
    def upstreams(self, pod: str) -> tuple[str, list[Exit]] | None:
        """(what the proxy is, its upstream pods) if ``pod`` is an ingress or gateway proxy."""
        found = self.proxies.get(pod)
        if found is None:
            return None
        what, endpoints = found
        out: list[Exit] = []
        for address, why in endpoints:
            ip, _, port = address.rpartition(":")
            host = self.by_ip.get(ip)
            if host is not None and all(e.endpoint != host or e.port != int(port) for e in out):
                out.append(Exit(host, ip, int(port), why))
        return what, out


def _proxies(state: Any) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """The lab's proxy pods: pod -> (what it is, [(upstream "ip:port", which upstream)])."""
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    if state.extra.get("ingress"):
        record = ingress.IngressRecord.load(state)
        if record.controller is not None:
            rendered = ingress.render_current(state, record)
            ups = [(e, f"upstream {u.name}") for u in rendered.upstreams.values() for e in u.endpoints]
            out[record.controller.pod] = ("ingress-nginx", ups)
    if state.extra.get("gateway"):
        record_gw = gateway.GatewayRecord.load(state)
        for gw in record_gw.gateways:
            plane = record_gw.planes.get(gw.key)
            if plane is None:
                continue
            planes = gateway.render_gateway(state, record_gw, gw)
            ups = [(e, f"upstream {u.name}") for u in planes.upstreams.values() for e in u.endpoints]
            out[plane.pod] = (f"gateway {gw.key} (nginx)", ups)
    return out


@dataclass(frozen=True)
class Chain:
    """One way a request may go: the waypoints in order, then the pod that answers."""

    waypoints: tuple[Waypoint, ...]
    end: Exit


def chains(state: Any, ip: str, port: int | None, proto: str, direct: Sequence[Exit] = ()) -> list[Chain]:
    """Every way a request to ``ip:port`` may go, through LBs, NodePorts and proxies.

    ``direct``: targets a DNAT on the way (a ClusterIP, a published port) sends the request
    to without a waypoint; a proxy among them is followed to its upstreams too.
    """
    cluster = Cluster(state)
    out: list[Chain] = []

    def follow(prefix: tuple[Waypoint, ...], exit_: Exit, depth: int) -> None:
        if depth >= MAX_DEPTH:
            out.append(Chain(prefix, exit_))
            return
        proxied = cluster.upstreams(exit_.endpoint.name) if exit_.endpoint.kind == "pod" and proto == "tcp" else None
        if proxied is not None and proxied[1]:
            what, ups = proxied
            here = Waypoint(exit_.endpoint, exit_.address, exit_.port, what, "proxy", proxy=True)
            for up in ups:
                follow((*prefix, here), up, depth + 1)
            return
        step = cluster.exits(exit_.address, exit_.port, proto) if exit_.endpoint.kind == "node" else None
        if step is not None and step[1]:
            here, nexts = step
            for nxt in nexts:
                follow((*prefix, here), nxt, depth + 1)
            return
        out.append(Chain(prefix, exit_))

    first = cluster.exits(ip, port, proto)
    if first is not None:
        here, nexts = first
        for nxt in nexts:
            follow((here,), nxt, 1)
    for exit_ in direct:
        follow((), exit_, 0)
    return out


def with_port(chain: Chain, port: int | None) -> Chain:
    """``chain`` with its end's port defaulted to ``port``."""
    return chain if chain.end.port else replace(chain, end=replace(chain.end, port=port))
