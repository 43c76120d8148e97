"""Calico (``cni: calico``): routes to other nodes' blocks learned by BGP through BIRD.

Per node, as the Calico CNI plugin, felix and calico-node's BIRD build it:

- the node claims IPAM blocks of ``network.calico.blockSize`` (/26) from the pool
  (``podCIDR``; :mod:`netlab.model.ipam`); with IP-in-IP, ``tunl0`` (MTU underlay − 20) gets
  the first address of its first block as a /32;
- each pod: ``eth0`` with the next address of the node's blocks as a /32, ``169.254.1.1 dev
  eth0 scope link`` and ``default via 169.254.1.1 dev eth0``; the host end is named as Calico
  names it (:func:`netlab.names.calico_workload_veth`, namespace ``default``), MAC
  ee:ee:ee:ee:ee:ee, proxy ARP on; the node routes ``<pod IP> dev cali... scope link``
  (felix's route);
- nothing else is static: BIRD (started by :mod:`netlab.services.bird` once the namespaces
  exist) installs ``blackhole <block> proto bird`` for its own blocks and learns every
  other node's blocks over the node-to-node mesh (:mod:`netlab.datapaths.bird`);
- natOutgoing: ``cali-nat-outgoing`` masquerades pod traffic leaving the pool.

ipipMode Never runs on a kernel without the ipip module; Always and CrossSubnet need it.
"""

from __future__ import annotations

import ipaddress

from netlab import names
from netlab.datapaths import ipip, k8s
from netlab.datapaths.underlay import Builder
from netlab.model import Node, Topology, ipam
from netlab.plan import AddAddress, AddRoute, Host, LinkUp, LoadIptables, SetSysctl, SetTunnel

POD_NAMESPACE = "default"  # netlab's pods live in the Kubernetes namespace "default"


def requires(topology: Topology) -> tuple[str, ...]:
    return ("ipip",) if topology.calico_tunnel() else ()


def pod_mtu(topology: Topology) -> int:
    return topology.network.mtu - (ipip.OVERHEAD if topology.calico_tunnel() else 0)


def build(topology: Topology, b: Builder) -> None:
    k8s.ensure_router(topology, b)
    blocks = topology.calico_blocks()
    for node in topology.nodes:
        _node(topology, b, node, blocks[node.name])


def _node(topology: Topology, b: Builder, node: Node, blocks: list[ipaddress.IPv4Network]) -> None:
    host = b.ns(node.name)
    mtu = pod_mtu(topology)
    pods = k8s.ordinary_pods(node)
    tunnel = topology.calico_tunnel()
    addresses = ipam.addresses(blocks, len(pods) + (1 if tunnel else 0))
    if tunnel:
        b.add(
            SetTunnel(host, ipip.DEVICE, mtu),
            AddAddress(host, ipip.DEVICE, ipaddress.IPv4Interface(f"{addresses.pop(0)}/32")),
            LinkUp(host, ipip.DEVICE),
        )
    for pod, ip in zip(pods, addresses, strict=True):
        ns = b.namespace(pod.name, "pod")
        cali = names.calico_workload_veth(POD_NAMESPACE, pod.name)
        b.veth(host, cali, ns, "eth0", mtu, mac=ipip.HOST_MAC, peer_mac=names.mac(node.name, pod.name))
        b.add(
            SetSysctl(host, f"net/ipv4/conf/{cali}/proxy_arp", "1"),
            SetSysctl(host, f"net/ipv4/neigh/{cali}/proxy_delay", "0"),
            AddRoute(host, ipaddress.IPv4Network(f"{ip}/32"), dev=cali, scope_link=True),
            AddAddress(ns, "eth0", ipaddress.IPv4Interface(f"{ip}/32")),
            AddRoute(ns, ipaddress.IPv4Network(f"{ipip.POD_GATEWAY}/32"), dev="eth0", scope_link=True),
            AddRoute(ns, None, gateway=ipip.POD_GATEWAY, dev="eth0"),
        )
        b.hosts.append(Host(pod.name, "pod", ns, ip, node=node.name))
    k8s.host_network_pods(topology, b, node)
    b.add(LoadIptables(host, ipip.nat_rules(topology), why="calico natOutgoing: masquerade pod traffic leaving the pool"))
