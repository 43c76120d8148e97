"""Pieces every Kubernetes-node datapath shares: pod blocks, hostNetwork pods, cni0, natOutgoing.

- Node ``i`` (1-based, in file order) owns the ``i``-th /24 of ``podCIDR``: with the default
  10.244.0.0/16, node1 has 10.244.1.0/24, node2 10.244.2.0/24 (the block 10.244.0.0/24 is not
  used, so node numbers and block numbers match, as in docs/experiments.md).
- A ``hostNetwork: true`` pod gets no namespace and no address: it is an endpoint whose
  namespace is its node's and whose address is the node's (``exec LAB agent`` runs in the node).
- Flannel's pods hang on the ``cni0`` bridge (the bridge CNI plugin), 10.244.N.1 is the gateway,
  pods get .2, .3, ... and host ends ``veth`` + 8 hex digits (:func:`netlab.names.bridge_plugin_veth`).
  A pod's routes are what the Flannel CNI plugin delegates to the bridge plugin
  (flannel-io/cni-plugin ``flannel_linux.go`` ``getDelegateIPAM``: host-local IPAM with
  ``routes: [{dst: <FLANNEL_NETWORK>}]``; kube-flannel's ``cni-conf.json`` delegate sets
  ``isDefaultGateway: true``, so the bridge plugin adds the default route): ``10.244.0.0/16
  via 10.244.N.1``, ``default via 10.244.N.1`` and the kernel's ``10.244.N.0/24 dev eth0``.
  Every pod's port has hairpin mode on:
  Flannel's CNI config (``cni-conf.json`` in flannel-io/flannel Documentation/kube-flannel.yml)
  delegates to the bridge plugin with ``"hairpinMode": true``, and the bridge plugin
  (containernetworking/plugins plugins/main/bridge/bridge.go, setupVeth) sets it on the host
  end right after enslaving it. Without it a pod that kube-proxy sends to itself (its own
  Service, the endpoint chosen is the caller) never gets the reply: the bridge does not send
  a frame back out the port it came in on.
"""

from __future__ import annotations

import ipaddress

from netlab import names
from netlab.datapaths.underlay import Builder
from netlab.model import Node, Pod, Topology
from netlab.plan import AddAddress, AddBridge, AddRoute, Host, LinkUp, LoadIptables

BRIDGE = "cni0"


def pod_block(topology: Topology, node: Node) -> ipaddress.IPv4Network:
    """The node's /24 of the cluster's podCIDR (node i -> 10.244.i.0/24)."""
    return topology.pod_block(node)


def ordinary_pods(node: Node) -> list[Pod]:
    """The pods that get their own namespace and address (not hostNetwork)."""
    return [pod for pod in node.pods if not pod.host_network]


def host_network_pods(topology: Topology, b: Builder, node: Node) -> None:
    """Endpoints for the node's hostNetwork pods: the node's namespace and address."""
    for pod in node.pods:
        if pod.host_network:
            b.hosts.append(Host(pod.name, "pod", b.ns(node.name), topology.node_ip(node), node=node.name, host_network=True))


def bridge_pods(topology: Topology, b: Builder, node: Node, mtu: int) -> None:
    """Flannel's pod side: ``cni0`` 10.244.N.1/24 and one veth per pod (bridge CNI plugin)."""
    host = b.ns(node.name)
    block = pod_block(topology, node)
    gateway = block.network_address + 1
    b.add(
        AddBridge(host, BRIDGE, mtu, mac=names.mac(node.name, BRIDGE)),
        AddAddress(host, BRIDGE, ipaddress.IPv4Interface(f"{gateway}/{block.prefixlen}")),
        LinkUp(host, BRIDGE),
    )
    for index, pod in enumerate(ordinary_pods(node)):
        ip = block.network_address + 2 + index
        ns = b.namespace(pod.name, "pod")
        veth = names.bridge_plugin_veth(node.name, pod.name)
        b.veth(host, veth, ns, "eth0", mtu, peer_mac=names.mac(node.name, pod.name), master=BRIDGE, hairpin=True)
        b.add(
            AddAddress(ns, "eth0", ipaddress.IPv4Interface(f"{ip}/{block.prefixlen}")),
            AddRoute(ns, topology.network.pod_cidr, gateway=gateway),  # the Flannel CNI's delegated IPAM route
            AddRoute(ns, None, gateway=gateway),  # the bridge plugin's isDefaultGateway
        )
        b.hosts.append(Host(pod.name, "pod", ns, ip, node=node.name))
    host_network_pods(topology, b, node)


def flannel_rules(topology: Topology, node: Node) -> str:
    """flanneld's nat and filter rules (``FLANNEL-POSTRTG``, ``FLANNEL-FWD``): masquerade pod
    traffic leaving the pod network, never pod <-> pod."""
    cluster = topology.network.pod_cidr
    block = pod_block(topology, node)
    masq = '-m comment --comment "flanneld masq"'
    fwd = '-m comment --comment "flanneld forward"'
    return "\n".join(
        [
            "*nat",
            ":FLANNEL-POSTRTG - [0:0]",
            f"-A POSTROUTING {masq} -j FLANNEL-POSTRTG",
            f"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {block} -d {cluster} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {cluster} -d {block} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG ! -s {cluster} -d {block} {masq} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {cluster} ! -d 224.0.0.0/4 {masq} -j MASQUERADE --random-fully",
            f"-A FLANNEL-POSTRTG ! -s {cluster} -d {cluster} {masq} -j MASQUERADE --random-fully",
            "COMMIT",
            "*filter",
            ":FLANNEL-FWD - [0:0]",
            f"-A FORWARD {fwd} -j FLANNEL-FWD",
            f"-A FLANNEL-FWD -s {cluster} {fwd} -j ACCEPT",
            f"-A FLANNEL-FWD -d {cluster} {fwd} -j ACCEPT",
            "COMMIT",
        ]
    ) + "\n"


def flannel_nat(topology: Topology, b: Builder, node: Node) -> None:
    b.add(LoadIptables(b.ns(node.name), flannel_rules(topology, node), why="flanneld: masquerade pod traffic leaving the pod network"))


def ensure_router(topology: Topology, b: Builder) -> None:
    """Give the subnet a router (the gateway namespace) and the nodes a default route via it.

    The underlay builds the gateway only for an internet or several subnets; Calico's proxy
    ARP answers for 169.254.1.1 only if the node has a route for it, and an AWS VPC always
    has its router, so these datapaths ask for one.
    """
    if topology.needs_gateway:
        return
    for node in topology.nodes:
        b.add(AddRoute(b.ns(node.name), None, gateway=topology.subnet_of(node).gateway))
    b.gateway()
