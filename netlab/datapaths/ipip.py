"""Calico with IP-in-IP (experiment 4): ``tunl0``, /32 pods, proxy ARP, no bridge.

Per node N, as calico-node (felix, BIRD) and the Calico CNI plugin build it:

- ``tunl0``, the kernel's fallback IP-in-IP device (it exists in every namespace once the
  ``ipip`` module is loaded): MTU = underlay - 20, address 10.244.N.0/32 (the first address of
  the node's block, as Calico's IPAM gives it), up;
- each pod: ``eth0`` 10.244.N.1, .2, ... as a /32, a route ``169.254.1.1 dev eth0 scope link``
  and ``default via 169.254.1.1 dev eth0``; the host end ``cali<11 hex>`` (MAC
  ee:ee:ee:ee:ee:ee) answers ARP for 169.254.1.1 by proxy ARP (``proxy_arp=1``,
  ``proxy_delay=0`` as felix sets), and the node has ``<pod IP> dev cali... scope link``;
- for every other node M: ``10.244.M.0/24 via <node M IP> dev tunl0 onlink`` (BIRD's route);
  with ``mode: CrossSubnet`` a peer on the node's own subnet gets a plain
  ``10.244.M.0/24 via <node M IP> dev eth0`` and only other subnets are encapsulated;
- natOutgoing: ``cali-nat-outgoing`` masquerades pod traffic leaving the pool.

Calico's blackhole route for the node's own block and its ipsets are left out.
"""

from __future__ import annotations

import ipaddress

from netlab import names
from netlab.datapaths import k8s
from netlab.datapaths.underlay import Builder
from netlab.model import Node, Topology
from netlab.plan import AddAddress, AddRoute, Host, LinkUp, LoadIptables, SetSysctl, SetTunnel

DEVICE = "tunl0"
OVERHEAD = 20  # the outer IP header
POD_GATEWAY = ipaddress.IPv4Address("169.254.1.1")
HOST_MAC = "ee:ee:ee:ee:ee:ee"  # every cali interface's MAC


def pod_mtu(topology: Topology) -> int:
    return topology.network.mtu - OVERHEAD


def build(topology: Topology, b: Builder) -> None:
    k8s.ensure_router(topology, b)
    for node in topology.nodes:
        _node(topology, b, node)


def _node(topology: Topology, b: Builder, node: Node) -> None:
    host = b.ns(node.name)
    block = k8s.pod_block(topology, node)
    mtu = pod_mtu(topology)
    b.add(
        SetTunnel(host, DEVICE, mtu),
        AddAddress(host, DEVICE, ipaddress.IPv4Interface(f"{block.network_address}/32")),
        LinkUp(host, DEVICE),
    )
    for index, pod in enumerate(k8s.ordinary_pods(node)):
        ip = block.network_address + 1 + index
        ns = b.namespace(pod.name, "pod")
        cali = names.calico_veth(node.name, pod.name)
        b.veth(host, cali, ns, "eth0", mtu, mac=HOST_MAC, peer_mac=names.mac(node.name, pod.name))
        b.add(
            SetSysctl(host, f"net/ipv4/conf/{cali}/proxy_arp", "1"),
            SetSysctl(host, f"net/ipv4/neigh/{cali}/proxy_delay", "0"),
            AddRoute(host, ipaddress.IPv4Network(f"{ip}/32"), dev=cali, scope_link=True),
            AddAddress(ns, "eth0", ipaddress.IPv4Interface(f"{ip}/32")),
            AddRoute(ns, ipaddress.IPv4Network(f"{POD_GATEWAY}/32"), dev="eth0", scope_link=True),
            AddRoute(ns, None, gateway=POD_GATEWAY, dev="eth0"),
        )
        b.hosts.append(Host(pod.name, "pod", ns, ip, node=node.name))
    k8s.host_network_pods(topology, b, node)
    for peer in topology.nodes:
        if peer.name == node.name:
            continue
        plain = topology.network.mode == "CrossSubnet" and topology.subnet_of(peer) == topology.subnet_of(node)
        via = topology.node_ip(peer)
        peer_block = k8s.pod_block(topology, peer)
        if plain:
            b.add(AddRoute(host, peer_block, gateway=via, dev="eth0"))
        else:
            b.add(AddRoute(host, peer_block, gateway=via, dev=DEVICE, onlink=True))
    b.add(LoadIptables(host, nat_rules(topology), why="calico natOutgoing: masquerade pod traffic leaving the pool"))


def nat_rules(topology: Topology) -> str:
    pool = topology.network.pod_cidr
    return "\n".join(
        [
            "*nat",
            ":cali-POSTROUTING - [0:0]",
            ":cali-nat-outgoing - [0:0]",
            '-A POSTROUTING -m comment --comment "cali:postrouting" -j cali-POSTROUTING',
            '-A cali-POSTROUTING -m comment --comment "cali:nat-outgoing" -j cali-nat-outgoing',
            f'-A cali-nat-outgoing -s {pool} ! -d {pool} -m comment --comment "cali:masq-ipam-pools" -j MASQUERADE --random-fully',
            "COMMIT",
        ]
    ) + "\n"
