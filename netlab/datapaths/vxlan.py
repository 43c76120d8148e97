"""Flannel's VXLAN backend (experiment 3).

Per node N (see :mod:`netlab.datapaths.k8s` for blocks and ``cni0``), as flanneld and the
bridge CNI plugin build it:

- ``cni0`` 10.244.N.1/24, pods 10.244.N.2, .3, ... with MTU = underlay - 50 (1450 on 1500);
- ``flannel.1``: VXLAN VNI 1, UDP 8472, ``nolearning``, local = node IP, dev eth0,
  address 10.244.N.0/32, a stable MAC (the VTEP MAC flanneld publishes in the node's
  ``flannel.alpha.coreos.com/backend-data`` annotation);
- for every other node M: a permanent neighbour ``10.244.M.0 -> VTEP MAC of M``, an FDB entry
  ``VTEP MAC of M dst <node M IP>`` and a route ``10.244.M.0/24 via 10.244.M.0 dev flannel.1
  onlink``. The outer packet is routed by the node like any other, so this works across
  subnets (the gateway routes between them).
- ``FLANNEL-POSTRTG``: masquerade pod traffic leaving the pod network.
"""

from __future__ import annotations

import ipaddress

from netlab import names
from netlab.datapaths import k8s
from netlab.datapaths.underlay import Builder
from netlab.model import Node, Topology
from netlab.plan import AddAddress, AddFdb, AddNeighbour, AddRoute, AddVxlan, LinkUp

DEVICE = "flannel.1"
VNI = 1
PORT = 8472
OVERHEAD = 50  # outer IP 20 + UDP 8 + VXLAN 8 + the inner Ethernet header 14


def vtep_mac(node: Node) -> str:
    return names.mac(node.name, DEVICE)


def pod_mtu(topology: Topology) -> int:
    return topology.network.mtu - OVERHEAD


def build(topology: Topology, b: Builder) -> None:
    for node in topology.nodes:
        host = b.ns(node.name)
        mtu = pod_mtu(topology)
        k8s.bridge_pods(topology, b, node, mtu)
        block = k8s.pod_block(topology, node)
        b.add(
            AddVxlan(host, DEVICE, VNI, topology.node_ip(node), "eth0", PORT, vtep_mac(node), mtu),
            AddAddress(host, DEVICE, ipaddress.IPv4Interface(f"{block.network_address}/32")),
            LinkUp(host, DEVICE),
        )
        for peer in topology.nodes:
            if peer.name == node.name:
                continue
            peer_block = k8s.pod_block(topology, peer)
            b.add(
                AddNeighbour(host, DEVICE, peer_block.network_address, vtep_mac(peer)),
                AddFdb(host, DEVICE, vtep_mac(peer), topology.node_ip(peer)),
                AddRoute(host, peer_block, gateway=peer_block.network_address, dev=DEVICE, onlink=True),
            )
        k8s.flannel_nat(topology, b, node)
