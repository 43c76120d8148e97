"""Flannel's host-gw backend (experiment 5): routed pod network, no encapsulation.

Pods as with vxlan (``cni0`` 10.244.N.1/24, pods .2, .3, ...) but with the underlay's MTU;
for every other node M a plain route ``10.244.M.0/24 via <node M IP> dev eth0``. A next hop
must be on the same L2 segment, so nodes on different subnets are refused when the topology
is validated (:mod:`netlab.model`), as Flannel refuses them: no L2 adjacency.
"""

from __future__ import annotations

from netlab.datapaths import k8s
from netlab.datapaths.underlay import Builder
from netlab.model import Topology
from netlab.plan import AddRoute


def build(topology: Topology, b: Builder) -> None:
    for node in topology.nodes:
        host = b.ns(node.name)
        k8s.bridge_pods(topology, b, node, topology.network.mtu)
        for peer in topology.nodes:
            if peer.name != node.name:
                b.add(AddRoute(host, k8s.pod_block(topology, peer), gateway=topology.node_ip(peer), dev="eth0"))
        k8s.flannel_nat(topology, b, node)
