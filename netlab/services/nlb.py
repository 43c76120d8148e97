"""An emulated AWS Network Load Balancer for vpc-native labs: what the AWS Load Balancer
Controller builds for a ``type: LoadBalancer`` Service, and the NLB's data plane.

**The controller** (:func:`balancers`): a Service it claims (:func:`netlab.model.aws_lb.claimed`)
gets an NLB named as pkg/service/model_build_load_balancer.go ``buildLoadBalancerName`` names
it, ``k8s-<ns, 8>-<name, 8>-<sha256(cluster, uid, scheme), 10>`` (netlab has no UIDs: the lab
and the Service key stand in), and a DNS name of AWS's form ``<name>-<16 hex>.elb.<region>.amazonaws.com``,
which goes into the Service's ``status.loadBalancer.ingress[].hostname`` and into the zone
``elb.<region>.amazonaws.com`` of the internet's authoritative DNS. One target group per
Service port: in *instance* mode every node, on the port's NodePort; in *ip* mode every ready
endpoint (pod IP, targetPort). The targets are registered as the endpoints change (a
Deployment scaled up registers its new pods; a removed one is deregistered and drains).

**The NLB** is one namespace (``nlb``) on the VPC subnet; each NLB has its own address on its
``eth0`` (from the top of the first subnet down). It forwards in the kernel, L4 and
transparent, as the real one does in AWS's fabric: iptables DNAT to a healthy target, the
target chosen per new flow (``-m statistic --mode random``, as a flow-hash L4 balancer spreads
flows; conntrack keeps a flow on its target). Where client IP preservation is off (ip targets
with TCP, by AWS's default) it SNATs to the NLB's own address; where it is on (instance
targets, or the attribute), the targets see the client's address, and the VPC router sends
their replies to such clients back through the NLB (:func:`gateway_rules`: in AWS the fabric
does this; here a mark in the gateway's mangle table and a policy route). A target group with
proxy protocol v2 (``TargetGroup.proxy_protocol``) is the exception: a PROXY header cannot be
added by NAT, so its listener has no DNAT and the NLB's process relays it in user space, header
first (:class:`netlab.services.nlbhealth.Forwarder`; AWS inserts the header into the client's
own flow, netlab's target sees a second connection: from the NLB's address, or, where the
client's address is preserved, from the client's address and port, a transparent socket
(``IP_TRANSPARENT``) whose replies the VPC router returns to the NLB as for DNAT, and a mark
(``FORWARDER_MARK``) and a local route there deliver to the forwarder).

**Target health** is a process in the NLB namespace (:mod:`netlab.services.nlbhealth`): it
probes every target (TCP connect, or HTTP with 200-399 as healthy) from the NLB's address,
moves it through ``initial`` -> ``healthy``/``unhealthy`` by the thresholds, keeps a
deregistered target ``draining`` for ``deregistration_delay``, rewrites the DNAT rules
(iptables-restore) when the set of healthy targets changes and writes what
``aws elbv2 describe-target-health`` would show to a JSON file ``netlab status`` reads.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netlab.model import Topology, aws_lb
from netlab.model.service import Service
from netlab.services.kubeproxy import Endpoint
from netlab.services.nlbhealth import FORWARDER_MARK, ruleset
from netlab.services.nlbhealth import check_addresses as _check

__all__ = ["FORWARDER_MARK", "ruleset"]

HOST = "nlb"  # the namespace's host name: netlab exec LAB nlb ...
REGION = "us-east-1"
ZONE = f"elb.{REGION}.amazonaws.com"
RETURN_MARK = 0x4E  # the gateway's mark for replies that go back through the NLB
RETURN_TABLE = 78
RETURN_PRIORITY = 2000
# proxy protocol with client IP preservation: the forwarder's transparent connections (from the
# client's address) get their replies through this mark and a local route in the NLB's namespace
FORWARDER_TABLE = 79  # (the mark is nlbhealth.FORWARDER_MARK, set by the NLB's own rules)
_CHAIN_OK = re.compile(r"[A-Z0-9-]{1,28}")


@dataclass
class TargetGroup:
    """One listener (Service port) and its target group."""

    name: str  # k8s-<ns>-<name>-<hash>, as the controller names target groups
    port: int  # the listener's port on the NLB
    protocol: str  # tcp | udp
    targets: list[dict[str, Any]] = field(default_factory=list)  # {"id", "ip", "port", "hc_port"}
    health: dict[str, Any] = field(default_factory=dict)
    preserve_client_ip: bool = True
    deregistration_delay: int = aws_lb.DEFAULT_DEREGISTRATION_DELAY
    proxy_protocol: bool = False  # proxy_protocol_v2.enabled: served by the NLB's forwarder, not by DNAT


@dataclass
class Balancer:
    """One NLB: the Service it serves, its name, DNS name, address and target groups."""

    key: str
    name: str
    dns: str
    ip: str
    scheme: str
    target_type: str
    groups: list[TargetGroup] = field(default_factory=list)
    pending: str = ""
    ignored: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "name": self.name, "dns": self.dns, "ip": self.ip, "scheme": self.scheme,
            "target_type": self.target_type, "pending": self.pending, "ignored": self.ignored,
            "groups": [vars(g) for g in self.groups],
        }


def lb_name(cluster: str, svc: Service, scheme: str) -> str:
    """The controller's NLB name (``buildLoadBalancerName``)."""
    digest = hashlib.sha256(f"{cluster}{svc.key}{scheme}".encode()).hexdigest()
    clean = lambda s: re.sub(r"[^A-Za-z0-9]", "", s)  # noqa: E731 - invalidLoadBalancerNamePattern
    return f"k8s-{clean(svc.namespace)[:8]}-{clean(svc.name)[:8]}-{digest[:10]}"


def tg_name(cluster: str, svc: Service, port: int, protocol: str, target_type: str) -> str:
    """The controller's target group name (``buildTargetGroupName``, same shape)."""
    digest = hashlib.sha256(f"{cluster}{svc.key}{port}{protocol}{target_type}".encode()).hexdigest()
    clean = lambda s: re.sub(r"[^A-Za-z0-9]", "", s)  # noqa: E731
    return f"k8s-{clean(svc.namespace)[:8]}-{clean(svc.name)[:8]}-{digest[:10]}"


def dns_name(name: str) -> str:
    """AWS's DNS name for an NLB: ``<name>-<16 hex>.elb.<region>.amazonaws.com``."""
    return f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:16]}.{ZONE}".lower()


def claimed(svc: Service) -> bool:
    return svc.type == "LoadBalancer" and aws_lb.claimed(svc.annotations, svc.load_balancer_class)


def addresses(topology: Topology, taken: set[str]) -> list[str]:
    """Free NLB addresses of the first subnet, from the top down (the pods' pool grows upward)."""
    subnet = topology.network.subnets[0].cidr
    out = []
    ip = subnet.broadcast_address - 1
    while ip > subnet.network_address + 1:
        if str(ip) not in taken:
            out.append(str(ip))
        ip -= 1
    return out


def balancers(
    topology: Topology,
    cluster: str,
    services: Sequence[Service],
    endpoints: Mapping[str, list[Endpoint]],
    previous: Mapping[str, Mapping[str, Any]],
    taken: set[str],
) -> dict[str, Balancer]:
    """The controller over all Services: an NLB per claimed Service (addresses kept across syncs)."""
    out: dict[str, Balancer] = {}
    node_ips = [(n.name, str(topology.node_ip(n))) for n in topology.nodes]
    kept = {str(p["ip"]) for k, p in previous.items() if p.get("ip") and any(s.key == k for s in services)}
    free = iter(addresses(topology, taken | kept))
    for svc in services:
        if not claimed(svc):
            continue
        conf = aws_lb.settings(svc.annotations, svc.external_traffic_policy)
        name = lb_name(cluster, svc, conf.scheme)
        before = previous.get(svc.key, {})
        ip = str(before["ip"]) if before.get("ip") else next(free, "")
        lb = Balancer(svc.key, name, dns_name(name), ip, conf.scheme, conf.target_type, ignored=list(conf.ignored))
        if not ip:
            lb.pending = "no free address left in the subnet for the NLB"
        elif conf.target_type == "instance" and not svc.has_node_ports:
            lb.pending = "instance targets need NodePorts (allocateLoadBalancerNodePorts is false): use target type ip"
        for port in svc.ports if not lb.pending else ():
            group = TargetGroup(
                tg_name(cluster, svc, port.port, port.protocol, conf.target_type), port.port, port.protocol.lower(),
                preserve_client_ip=conf.preserve_client_ip or port.protocol == "UDP",  # always on for UDP (AWS)
                deregistration_delay=conf.deregistration_delay,
                proxy_protocol=conf.proxy_protocol and port.protocol == "TCP",  # PPv2 is for TCP target groups
            )
            h = conf.health
            group.health = {"protocol": h.protocol, "path": h.path, "interval": h.interval, "timeout": h.timeout,
                            "healthy": h.healthy, "unhealthy": h.unhealthy, "port": h.port}
            if conf.target_type == "instance":
                traffic = [(f"i-{node}", ip_, int(port.node_port or 0)) for node, ip_ in node_ips]
            else:
                traffic = [(b.ip, b.ip, port.target) for b in endpoints.get(svc.key, []) if ":" not in b.ip]
            for tid, tip, tport in traffic:
                hc = {"traffic-port": tport, "health-check-node-port": svc.health_check_node_port or tport}.get(h.port) or int(h.port)
                group.targets.append({"id": tid, "ip": tip, "port": tport, "hc_port": int(hc)})
            lb.groups.append(group)
        out[svc.key] = lb
    return out


def gateway_rules(config: Sequence[Mapping[str, Any]], subnets: Sequence[tuple[str, str]], vpc: Sequence[str]) -> str:
    """The VPC router's part: replies of targets that saw a preserved client address go back
    through the NLB (marked here, routed by ``fwmark`` to table 78 whose default is the NLB).

    In AWS the Hyperplane fabric returns them; netlab's gateway is the VPC router, so it does.
    ``subnets`` are (interface, cidr) of the gateway; the chain is rewritten whole each time.
    """
    lines = ["*mangle", ":NETLAB-NLB-RETURN - [0:0]"]
    _check(*vpc, *(c for _i, c in subnets))
    for lb in config:
        for group in lb.get("groups", []):
            if not group.get("preserve_client_ip", True) or lb.get("pending"):
                continue
            proto = str(group["protocol"])
            if proto not in ("tcp", "udp"):
                raise ValueError(f"refusing protocol {proto!r}")
            for target in group.get("targets", []) + group.get("draining", []):
                _check(str(target["ip"]))
                line = f"-A NETLAB-NLB-RETURN -s {target['ip']}/32 -p {proto} -m {proto} --sport {int(target['port'])}"
                line += f' -m comment --comment "reply from an NLB target: back through {lb["ip"]}" -j MARK --set-xmark {RETURN_MARK:#x}/0xff'
                if line not in lines:
                    lines.append(line)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def gateway_jumps(subnets: Sequence[tuple[str, str]], vpc: Sequence[str]) -> str:
    """The jumps into NETLAB-NLB-RETURN: packets entering from a subnet to outside the VPC."""
    lines = ["*mangle"]
    for iface, _cidr in subnets:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", iface):
            raise ValueError(f"refusing interface {iface!r}")
        excluded = " ".join(f"! -d {c}" for c in vpc[:1])
        lines.append(f"-A PREROUTING -i {iface} {excluded} -j NETLAB-NLB-RETURN")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def vpc_cidrs(topology: Topology) -> list[str]:
    """The VPC's CIDR as netlab has it: the smallest network holding every subnet."""
    nets = [s.cidr for s in topology.network.subnets]
    net = nets[0]
    while not all(n.subnet_of(net) for n in nets):
        net = net.supernet()
    return [str(net)]


def status_rows(config: Mapping[str, Any], health: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``aws elbv2 describe-target-health`` rows for one NLB, from the health checker's file."""
    rows = []
    for group in config.get("groups", []):
        states = health.get("groups", {}).get(group["name"], [])
        for target in states:
            rows.append({"targetGroup": group["name"], "port": group["port"], **target})
    return rows


def ipaddress_ok(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True
