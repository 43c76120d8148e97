"""Hard limits a lab runs into, known before anything is built.

Each limit comes with where it comes from and what to do, so that validation (``up``,
``plan``) and ``scale`` refuse with the same words:

- **bridge ports**: a Linux bridge holds at most 1023 ports. ``BR_MAX_PORTS`` is
  ``1 << BR_PORT_BITS`` = 1024 (``net/bridge/br_private.h``) and port number 0 is reserved
  (``find_portno`` in ``net/bridge/br_if.c``), so enslaving the 1024th interface fails with
  ``EXFULL`` ("Exchange full"; checked on kernel 6.18). That bounds the containers on one
  ``docker0``, the pods on one ``cni0`` and the ports of an underlay subnet's bridge (its
  nodes, the gateway, secondary ENIs).
- **pod blocks**: a node's /24 of ``podCIDR`` holds 253 pods on ``cni0`` (.1 is the bridge's)
  and 255 with Calico (.0 is ``tunl0``'s); Docker's 172.17.0.0/16 holds 65533 containers.
- **max pods**: the AWS VPC CNI's ENIs x (addresses per ENI - 1) + 2 as AWS publishes it
  (``misc/eni-max-pods.txt``), hostNetwork pods included; with prefix delegation
  ENIs x (addresses per ENI - 1) x 16 + 2 capped at 110/250 (:mod:`netlab.model.instances`). netlab models no kubelet ``--max-pods`` for the other pod networks.

Pure: no kernel, no lab state.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from netlab.model import instances

BR_MAX_PORTS = 1024  # 1 << BR_PORT_BITS, linux net/bridge/br_private.h
BRIDGE_PORTS = BR_MAX_PORTS - 1  # port number 0 is reserved (net/bridge/br_if.c, find_portno)
BRIDGE_WHY = (
    f"a Linux bridge has at most {BRIDGE_PORTS} ports (BR_MAX_PORTS = {BR_MAX_PORTS} in the kernel's "
    "net/bridge/br_private.h, port 0 reserved; one more fails with 'Exchange full')"
)
CNI0_BLOCK_PODS = 253  # .2-.254 of a node's /24: .1 is cni0's
# AWS instance types (ENIs, IPv4 addresses per ENI, published max pods): the whole published
# table, loaded and validated from data/ec2-instance-limits.tsv (netlab/model/instances.py)
INSTANCE_TYPES = instances.load()
DEFAULT_INSTANCE_TYPE = "t3.medium"  # vpc-native nodes without instanceType


@dataclass(frozen=True)
class PodLimit:
    """How many pods one node can run, why, and what to do about it."""

    count: int
    why: str  # "its pod block 10.244.1.0/24 holds 253 pods (...)"
    advice: str
    host_network: bool = False  # hostNetwork pods count against it too (max pods)
    addresses: int | None = None  # vpc-native: pods with their own address, at most the ENIs' secondary IPs

    def counted(self, pods: Iterable[_Pod], skip: frozenset[str] | set[str] = frozenset()) -> int:
        """How many of a node's ``pods`` count against this limit (``skip``: deleted pods' free slots)."""
        return sum(1 for pod in pods if pod.name not in skip and (self.host_network or not pod.host_network))

    def free(self, pods: Iterable[_Pod], skip: frozenset[str] | set[str] = frozenset()) -> int:
        """How many more pods with their own address fit next to ``pods`` (``skip``: deleted pods' slots)."""
        pods = list(pods)
        room = self.count - self.counted(pods, skip)
        if self.addresses is not None:
            room = min(room, self.addresses - sum(1 for p in pods if p.name not in skip and not p.host_network))
        return max(room, 0)


class _Pod(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def host_network(self) -> bool: ...


def max_pods(kind: str, prefix_delegation: bool = False) -> tuple[int, str]:
    """The AWS VPC CNI's max pods for an instance type, and the formula as text."""
    return instances.max_pods(INSTANCE_TYPES[kind], prefix_delegation)


def pod_limit(
    cni: str, block: ipaddress.IPv4Network | None, instance_type: str | None = None, prefix_delegation: bool = False
) -> PodLimit:
    """The most pods a node can run (the smallest limit that applies): ``cni`` is the pod network,
    ``block`` the node's /24 of podCIDR (vxlan, host-gw), ``instance_type`` its vpc-native instance type.
    :meth:`netlab.model.Topology.pod_limit` gives a node's."""
    if cni == "docker0":  # the bridge binds long before its 172.17.0.0/16 (65533 containers) would
        return PodLimit(
            BRIDGE_PORTS,
            f"docker0 takes at most {BRIDGE_PORTS} containers: {BRIDGE_WHY}",
            "spread the containers over more hosts (each host has its own docker0)",
        )
    if cni == "vpc-native":
        kind = instance_type or DEFAULT_INSTANCE_TYPE
        row = INSTANCE_TYPES[kind]
        enis, ips = row.enis, row.ipv4_per_eni
        value, formula = max_pods(kind, prefix_delegation)
        if prefix_delegation and row.prefix_delegation:
            addresses = enis * (ips - 1) * instances.IPS_PER_PREFIX
            how = f"{enis} × {ips - 1} /28 prefixes = {addresses} addresses"
        else:
            addresses = enis * (ips - 1)
            how = f"{enis} × {ips - 1} = {addresses} of them get a secondary IP"
        return PodLimit(
            value,
            f"a {kind} allows max pods {formula} (AWS VPC CNI, hostNetwork pods included), and {how}",
            "use a larger instanceType or add nodes",
            host_network=True,
            addresses=addresses,
        )
    # cni0 is a bridge too, but its 1023 ports are more than the block's addresses
    return PodLimit(CNI0_BLOCK_PODS, f"its pod block {block} holds {CNI0_BLOCK_PODS} pods (.2-.254: .1 is cni0's)", _MORE_NODES)


_MORE_NODES = "add nodes (each node owns one /24 of network.podCIDR)"
