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
- natOutgoing: the ipsets ``cali40masq-ipam-pools`` and ``cali40all-ipam-pools`` hold the
  pool, and ``cali-nat-outgoing`` masquerades what leaves a masq pool for no pool (felix's rule).

With ``vxlanMode`` (and ``ipipMode: Never``) felix, not BIRD, programs the routes to other
nodes' blocks (felix ``dataplane/linux/vxlan_mgr.go``): ``vxlan.calico`` (VNI 4096, UDP 4789,
``nolearning``, local = node IP, MTU underlay − 50, address = the first of the node's block),
and per peer a permanent neighbour ``<peer VTEP IP> -> <peer VTEP MAC>``, an FDB entry
``<peer VTEP MAC> dst <peer node IP>`` and ``<block> via <peer VTEP IP> dev vxlan.calico
onlink``; with CrossSubnet a peer on the node's own subnet gets ``<block> via <node IP> dev
eth0`` instead. BIRD still runs and exports the blocks; its kernel filter keeps VXLAN routes out
of the kernel, as ``bird_ipam.cfg.template`` does. Differences: felix's routes carry ``proto
80`` and its VTEP MAC is random (kept in the Node resource); netlab writes them as its other
static routes and derives the MAC from the node's name.

ipipMode Never runs on a kernel without the ipip module; Always and CrossSubnet need it.
VXLAN needs the vxlan module.
"""

from __future__ import annotations

import ipaddress

from netlab import names
from netlab.datapaths import k8s
from netlab.datapaths.underlay import Builder
from netlab.model import Node, Topology, ipam
from netlab.plan import (
    AddAddress,
    AddFdb,
    AddIpset,
    AddNeighbour,
    AddRoute,
    AddVxlan,
    Host,
    LinkUp,
    LoadIptables,
    SetSysctl,
    SetTunnel,
)

IPIP_DEVICE = "tunl0"  # the kernel's fallback IP-in-IP device (every namespace has it once ipip is loaded)
IPIP_OVERHEAD = 20  # the outer IP header
POD_GATEWAY = ipaddress.IPv4Address("169.254.1.1")  # the Calico CNI plugin's pod gateway, answered by proxy ARP
HOST_MAC = "ee:ee:ee:ee:ee:ee"  # every cali interface's MAC
POD_NAMESPACE = "default"  # netlab's pods live in the Kubernetes namespace "default"
VXLAN_DEVICE = "vxlan.calico"  # felix's default VXLAN device, VNI and port (FelixConfiguration vxlanVNI, vxlanPort)
VXLAN_VNI = 4096
VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50  # outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14


def requires(topology: Topology) -> tuple[str, ...]:
    """The kernel features (doctor's names) ``up`` probes first: the encapsulation's, and
    ipsets for felix's natOutgoing rule."""
    encapsulation = topology.calico_encapsulation()
    return ((encapsulation,) if encapsulation else ()) + ("ipset",)


def pod_mtu(topology: Topology) -> int:
    overhead = {"ipip": IPIP_OVERHEAD, "vxlan": VXLAN_OVERHEAD}.get(topology.calico_encapsulation() or "", 0)
    return topology.network.mtu - overhead


def vtep_mac(node: Node) -> str:
    return names.mac(node.name, VXLAN_DEVICE)


def vtep_ip(topology: Topology, node: Node) -> ipaddress.IPv4Address:
    """The node's tunnel address: the first address of its first block."""
    return topology.calico_blocks()[node.name][0].network_address


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
    if topology.calico_encapsulation() == "ipip":
        b.add(
            SetTunnel(host, IPIP_DEVICE, mtu),
            AddAddress(host, IPIP_DEVICE, ipaddress.IPv4Interface(f"{addresses.pop(0)}/32")),
            LinkUp(host, IPIP_DEVICE),
        )
    elif tunnel:
        b.add(
            AddVxlan(host, VXLAN_DEVICE, VXLAN_VNI, topology.node_ip(node), "eth0", VXLAN_PORT, vtep_mac(node), mtu),
            AddAddress(host, VXLAN_DEVICE, ipaddress.IPv4Interface(f"{addresses.pop(0)}/32")),
            LinkUp(host, VXLAN_DEVICE),
        )
    for pod, ip in zip(pods, addresses, strict=True):
        ns = b.namespace(pod.name, "pod")
        cali = names.calico_workload_veth(POD_NAMESPACE, pod.name)
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
    if topology.calico_encapsulation() == "vxlan":
        _felix_vxlan_routes(topology, b, node)
    b.add(*nat_ipsets(topology, host))
    b.add(LoadIptables(host, nat_rules(topology), why="calico natOutgoing: masquerade pod traffic leaving the pool"))


def tunnel_device(topology: Topology) -> str | None:
    return {"ipip": IPIP_DEVICE, "vxlan": VXLAN_DEVICE}.get(topology.calico_encapsulation() or "")


MASQ_POOLS = "cali40masq-ipam-pools"  # felix: the IPv4 pools with natOutgoing
ALL_POOLS = "cali40all-ipam-pools"  # felix: every IPv4 pool


def nat_ipsets(topology: Topology, host: str) -> list[AddIpset]:
    """The ipsets felix's natOutgoing rule matches (felix ``rules/static.go``/``nat.go``,
    ``IPSetIDNATOutgoingMasqPools`` and ``IPSetIDAllPools``, prefixed ``cali40`` for IPv4;
    both ``hash:net``). netlab's one pool (``podCIDR``) has natOutgoing on, as the pool
    calico-node creates from ``CALICO_IPV4POOL_CIDR`` does by default."""
    pool = (str(topology.network.pod_cidr),)
    return [AddIpset(host, MASQ_POOLS, pool), AddIpset(host, ALL_POOLS, pool)]


def nat_rules(topology: Topology) -> str:
    """natOutgoing as felix renders it (projectcalico/calico ``felix/rules/nat.go``
    ``NATOutgoingChain`` / ``makeNATOutgoingRuleIPTables``: source in the masq pools,
    destination in no pool, MASQUERADE, ``--random-fully`` where the kernel has it), and with a
    tunnel the rule felix adds to ``cali-POSTROUTING`` (felix ``rules/nat.go``
    ``StaticNATPostroutingChains``): the node's own traffic into the tunnel leaves with the
    tunnel's address, not eth0's. Felix's comments are hashes (``cali:flqWnvo8yq4ULQLa``);
    netlab's say what the rule is."""
    rules = "\n".join(
        [
            "*nat",
            ":cali-POSTROUTING - [0:0]",
            ":cali-nat-outgoing - [0:0]",
            '-A POSTROUTING -m comment --comment "cali:postrouting" -j cali-POSTROUTING',
            '-A cali-POSTROUTING -m comment --comment "cali:nat-outgoing" -j cali-nat-outgoing',
            f'-A cali-nat-outgoing -m comment --comment "cali:masq-ipam-pools" -m set --match-set {MASQ_POOLS} src '
            f"-m set ! --match-set {ALL_POOLS} dst -j MASQUERADE --random-fully",
            "COMMIT",
        ]
    ) + "\n"
    device = tunnel_device(topology)
    if device is None:
        return rules
    tunnel = (
        f'-A cali-POSTROUTING -o {device} -m addrtype ! --src-type LOCAL --limit-iface-out -m addrtype --src-type LOCAL '
        '-m comment --comment "cali:tunnel-source" -j MASQUERADE'
    )
    return rules.replace("COMMIT\n", tunnel + "\nCOMMIT\n")


def _felix_vxlan_routes(topology: Topology, b: Builder, node: Node) -> None:
    """What felix's VXLAN manager programs towards every other node."""
    host = b.ns(node.name)
    cross_subnet = topology.network.calico.vxlan_mode == "CrossSubnet"
    blocks = topology.calico_blocks()
    for peer in topology.nodes:
        if peer.name == node.name:
            continue
        if cross_subnet and topology.subnet_of(peer) == topology.subnet_of(node):
            b.add(*(AddRoute(host, block, gateway=topology.node_ip(peer), dev="eth0") for block in blocks[peer.name]))
            continue
        vtep = vtep_ip(topology, peer)
        b.add(
            AddNeighbour(host, VXLAN_DEVICE, vtep, vtep_mac(peer)),
            AddFdb(host, VXLAN_DEVICE, vtep_mac(peer), topology.node_ip(peer)),
            *(AddRoute(host, block, gateway=vtep, dev=VXLAN_DEVICE, onlink=True) for block in blocks[peer.name]),
        )
