"""LoadBalancer Services on a pod network without a cloud: a MetalLB-style layer-2 load balancer.

What MetalLB v0.16 does in layer-2 mode, and netlab with it:

- **The controller** (MetalLB's ``controller`` Deployment; here :func:`assign`) gives every
  ``type: LoadBalancer`` Service an address from the pool (``network.loadBalancerPool``, by
  default .240-.250 of the first subnet: MetalLB's own example ``IPAddressPool``) and writes
  it into the Service's ``status.loadBalancer.ingress``, which is what ``kubectl get svc``
  shows as EXTERNAL-IP. An address once given stays with its Service; a new one gets the
  lowest free address (MetalLB's allocator walks each pool from its first address,
  internal/allocator/allocator.go ``getIPFromCIDR``). A Service may ask for one address with
  the ``metallb.io/loadBalancerIPs`` annotation (or the deprecated
  ``metallb.universe.tf/loadBalancerIPs``, or ``spec.loadBalancerIP``; both at once is an
  error, controller/service.go). A Service with a ``loadBalancerClass`` is another
  controller's (MetalLB runs without ``--lb-class``), and stays ``<pending>``, as does every
  LoadBalancer Service on vpc-native: MetalLB's ARP cannot work on an AWS VPC. There the
  AWS Load Balancer Controller's emulated NLB (:mod:`netlab.services.nlb`) serves the Services
  it claims; the others stay pending.
- **The leader** (speaker/layer2_controller.go ``ShouldAnnounce``): one node answers ARP for
  each address. Candidates are the nodes running a speaker (all of them) when the Service
  has any ready endpoint; with ``externalTrafficPolicy: Local`` only the nodes with a ready
  endpoint of it. They are ordered by ``sha256(node + "#" + ip)`` and the first one wins
  (:func:`leader`), so every speaker agrees without talking, and the address moves when the
  leader stops being a candidate, e.g. when its last local pod goes (Local).
- **The speaker** (a hostNetwork DaemonSet; here :mod:`netlab.services.speaker`, one process in
  each node's namespace) answers ARP requests for the addresses its node leads with its own
  ``eth0`` MAC, and sends gratuitous ARP (a request and a reply, broadcast) when it starts
  leading one (internal/layer2/arp.go, announcer.go), so the router's neighbour entry follows
  a move at once.

Everything after ARP is kube-proxy's: the packet reaches the leader's ``eth0`` addressed to
the LB IP and its ``KUBE-SERVICES`` rule for the address (``<svc> loadbalancer IP``) DNATs it
to an endpoint (:mod:`netlab.services.kubeproxy`, IPVS: :mod:`netlab.services.ipvs`). The load
balancer is L4 and transparent: no user-space proxy is in the path, as with MetalLB.

**Why a speaker process and not a proxy-ARP entry.** A kernel-only variant would be ``ip neigh
add proxy <LB IP> dev eth0`` on the leader (``NTF_PROXY``). The kernel answers such a request
only if its route to the target leaves by *another* device (net/ipv4/arp.c ``arp_process``:
``rt->dst.dev != dev``), but the LB IP is on the node subnet, routed out of ``eth0`` itself: it
would need an invented /32 route no real node has. In IPVS mode the address is local on
``kube-ipvs0`` and kube-proxy's strictARP (``arp_ignore=1``) silences it, so the proxy entry is
never consulted. MetalLB answers from user space for exactly these reasons, and so does
netlab: the node's routes, neighbours and rules stay as on a real node, and ``ps`` in a node
shows the speaker as it would show MetalLB's. Only ARP goes through it; the traffic never does.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from netlab.model import Topology, aws_lb
from netlab.model.service import Service
from netlab.services.kubeproxy import Endpoint

POOL_NAME = "default"  # the one IPAddressPool (metallb-system/default) and its L2Advertisement
ANNOTATION_IPS = ("metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs")
ANNOTATION_POOL = ("metallb.io/address-pool", "metallb.universe.tf/address-pool")
ALLOCATED_FROM = "metallb.io/ip-allocated-from-pool"  # what MetalLB's controller writes on the Service
# annotations the controller and speaker read; the others under metallb's prefixes are reported as ignored
MODELLED = (*ANNOTATION_IPS, *ANNOTATION_POOL)


@dataclass
class Assignment:
    """A LoadBalancer Service's state: its address (``status.loadBalancer.ingress``) or why it has none."""

    ip: str | None = None
    pool: str | None = None
    pending: str = ""  # why EXTERNAL-IP is <pending> (MetalLB's event on the Service)
    leader: str | None = None  # the node answering ARP for ip
    candidates: list[str] = field(default_factory=list)  # in election order

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if v not in (None, "", [])}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Assignment:
        return cls(
            ip=data.get("ip"),  # type: ignore[arg-type]
            pool=data.get("pool"),  # type: ignore[arg-type]
            pending=str(data.get("pending", "")),
            leader=data.get("leader"),  # type: ignore[arg-type]
            candidates=list(data.get("candidates", [])),  # type: ignore[call-overload]
        )


def _annotation(svc: Service, keys: Sequence[str]) -> str | None:
    """MetalLB's valueForAnnotation: the stable key first, then the deprecated one."""
    return next((svc.annotations[k] for k in keys if k in svc.annotations), None)


def requested(svc: Service) -> tuple[str | None, str]:
    """The address a Service asks for, or (None, why it is invalid)."""
    wanted = _annotation(svc, ANNOTATION_IPS)
    if wanted and svc.load_balancer_ip:
        return None, f"service can not have both {ANNOTATION_IPS[0]} and svc.Spec.LoadBalancerIP"
    text = (wanted or svc.load_balancer_ip or "").strip()
    if not text:
        return None, ""
    if "," in text:
        return None, f"{ANNOTATION_IPS[0]}: netlab's lab is single-stack IPv4: give one address (got {text!r})"
    try:
        return str(ipaddress.IPv4Address(text)), ""
    except ValueError:
        return None, f"invalid {ANNOTATION_IPS[0] if wanted else 'spec.loadBalancerIP'}: {text!r}"


def assign(topology: Topology, services: Sequence[Service], previous: Mapping[str, Assignment]) -> dict[str, Assignment]:
    """MetalLB's controller over all Services: an :class:`Assignment` for each LoadBalancer one.

    ``previous`` are the current assignments: an address stays with its Service while it is
    still valid; freed addresses (deleted Services) go back to the pool.
    """
    pool = topology.load_balancer_pool()
    in_pool = {str(ip) for ip in pool}
    out: dict[str, Assignment] = {}
    balancers = [s for s in services if s.type == "LoadBalancer"]
    taken: dict[str, str] = {}

    def ineligible(svc: Service) -> str:
        if topology.network.cni == "vpc-native":
            return ("no load-balancer controller claims it: on vpc-native netlab emulates the AWS Load Balancer Controller's NLB, "
                    f"which claims Services annotated {aws_lb.TYPE}: external (or loadBalancerClass {aws_lb.LB_CLASS}); "
                    "MetalLB's ARP does not work on an AWS VPC")
        if svc.load_balancer_class:
            return f"loadBalancerClass {svc.load_balancer_class!r}: no controller in this lab claims it (MetalLB runs without --lb-class)"
        pool_name = _annotation(svc, ANNOTATION_POOL)
        if pool_name and pool_name != POOL_NAME:
            return f"unknown pool {pool_name!r} (this lab's MetalLB has one IPAddressPool, {POOL_NAME!r})"
        if not pool:
            return "no available IPs: the pool is empty (set network.loadBalancerPool)"
        return ""

    # keep what is still valid first, so a new Service never takes a kept address
    if topology.network.cni == "vpc-native":  # the AWS Load Balancer Controller's (netlab/services/nlb.py)
        balancers = [s for s in balancers if not aws_lb.claimed(s.annotations, s.load_balancer_class)]
    for svc in balancers:
        why = ineligible(svc)
        want, bad = requested(svc)
        before = previous.get(svc.key)
        if why or bad:
            out[svc.key] = Assignment(pending=why or bad)
        elif before and before.ip and before.ip in in_pool and (want is None or want == before.ip) and before.ip not in taken:
            taken[before.ip] = svc.key
            out[svc.key] = Assignment(ip=before.ip, pool=POOL_NAME)
    for svc in balancers:
        if svc.key in out:
            continue
        want, _bad = requested(svc)
        if want is not None:
            if want not in in_pool:
                out[svc.key] = Assignment(pending=f"{want} is not allowed in config (not in pool {POOL_NAME!r})")
            elif want in taken:
                out[svc.key] = Assignment(pending=f"{want} is already in use by {taken[want]} (allow-shared-ip is not modelled)")
            else:
                taken[want] = svc.key
                out[svc.key] = Assignment(ip=want, pool=POOL_NAME)
            continue
        free = next((str(ip) for ip in pool if str(ip) not in taken), None)
        if free is None:
            out[svc.key] = Assignment(pending=f"no available IPs: all {len(pool)} addresses of pool {POOL_NAME!r} are in use")
        else:
            taken[free] = svc.key
            out[svc.key] = Assignment(ip=free, pool=POOL_NAME)
    return out


def election_order(nodes: Sequence[str], ip: str) -> list[str]:
    """MetalLB's sortL2Candidates without preferences: by sha256(node + "#" + ip)."""
    return sorted(nodes, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())


def candidates(svc: Service, nodes: Sequence[str], backends: Sequence[Endpoint]) -> list[str]:
    """The nodes that may announce ``svc``: every node if it has a ready endpoint at all
    (Cluster), only the nodes with one (Local); none without endpoints."""
    if not backends:
        return []
    if svc.external_traffic_policy == "Local":
        with_endpoint = {b.node for b in backends if b.node}
        return [n for n in nodes if n in with_endpoint]
    return list(nodes)


def elect(
    assignments: dict[str, Assignment], services: Sequence[Service], nodes: Sequence[str], endpoints: Mapping[str, list[Endpoint]]
) -> None:
    """Fill in each assignment's leader and candidates (in election order)."""
    by_key = {s.key: s for s in services}
    for key, assignment in assignments.items():
        svc = by_key.get(key)
        if svc is None or assignment.ip is None:
            assignment.leader, assignment.candidates = None, []
            continue
        assignment.candidates = election_order(candidates(svc, nodes, endpoints.get(key, [])), assignment.ip)
        assignment.leader = assignment.candidates[0] if assignment.candidates else None


def ingress(assignments: Mapping[str, Assignment]) -> dict[str, list[str]]:
    """``status.loadBalancer.ingress`` IPs per Service key (what kube-proxy reads)."""
    return {k: [a.ip] for k, a in assignments.items() if a.ip}


def announcements(assignments: Mapping[str, Assignment]) -> dict[str, dict[str, str]]:
    """What each node's speaker announces: node -> {LB IP: service key}."""
    out: dict[str, dict[str, str]] = {}
    for key, a in sorted(assignments.items()):
        if a.ip and a.leader:
            out.setdefault(a.leader, {})[a.ip] = key
    return out


def ignored_annotations(svc: Service) -> list[str]:
    """MetalLB annotations on ``svc`` netlab does not model (allow-shared-ip, ...)."""
    return sorted(k for k in svc.annotations if k.split("/")[0] in ("metallb.io", "metallb.universe.tf") and k not in MODELLED)
