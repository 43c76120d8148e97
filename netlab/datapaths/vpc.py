"""The AWS VPC CNI (experiment 6): pods take secondary addresses of their node's subnet.

What aws-node (ipamd) and the CNI plugin build, per node:

- ENIs ``eth0``, ``eth1``, ... up to the instance type's limit (:data:`netlab.model.INSTANCE_TYPES`;
  a node without ``instanceType`` is a t3.medium). ``eth0`` is the node's own interface; each
  further ENI is another port on the subnet's underlay bridge with its own primary address
  (added ``noprefixroute``: aws-vpc-cni removes that connected route from main). Like ipamd
  without a warm target, an ENI is attached when the previous one's addresses are used up,
  and each attached ENI holds (addresses per ENI - 1) secondary IPs for pods. Addresses come
  from the subnet in order after the nodes' own (.11, .12, ...).
- Each pod: ``eth0`` <secondary IP>/32, ``169.254.1.1 dev eth0 scope link``, ``default via
  169.254.1.1 dev eth0`` and a permanent neighbour 169.254.1.1 -> the host end's MAC; the host
  end ``eni<11 hex>``, with ``<pod IP> dev eni... scope link`` in main and a rule ``to <pod IP>
  lookup main`` (priority 512). A pod on ENI ``ethK`` (K > 0) also gets ``from <pod IP> lookup
  K+1`` (priority 1536), and table K+1 holds ``default via <subnet gateway> dev ethK``.
- Max pods = ENIs x (addresses per ENI - 1) + 2; hostNetwork pods count. A pod that finds no
  free secondary IP, or no room under max pods, is not started: it is reported Pending in the
  plan's notes (shown by ``up`` and ``status``).
- SNAT: ``AWS-SNAT-CHAIN-0`` SNATs traffic not destined to the VPC (every subnet) to the node's
  primary address; ``externalSNAT: true`` leaves it out, so the pod address reaches the
  internet and the gateway routes replies back natively.

The VPC fabric: AWS's hypervisor answers ARP for every address with the MAC of the ENI that
owns it, so there is no ARP flooding between ENIs. netlab models that with permanent
neighbour entries for every pod address in the gateway and in the other nodes of the subnet,
``arp_ignore=1``/``arp_announce=2`` on the ENIs (so each answers only for its own address),
and no ICMP redirects from the gateway. As in AWS, SNATed connections are connmarked (0x80)
and routed by ``fwmark 0x80/0x80 lookup main`` (priority 1024), so a secondary-ENI pod's
traffic to the internet leaves through eth0, the ENI whose address it is SNATed to.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netlab import names
from netlab.datapaths import k8s
from netlab.datapaths.underlay import Builder
from netlab.model import DEFAULT_INSTANCE_TYPE, FIRST_NODE_HOST, INSTANCE_TYPES, Node, Pod, Subnet, Topology
from netlab.model.limits import max_pods
from netlab.plan import (
    AddAddress,
    AddNeighbour,
    AddRoute,
    AddRule,
    AddVeth,
    Host,
    LinkUp,
    LoadIptables,
    SetMac,
    SetMaster,
    SetSysctl,
)

POD_GATEWAY = ipaddress.IPv4Address("169.254.1.1")
TO_POD_PRIORITY = 512
FROM_POD_PRIORITY = 1536
MAIN_TABLE = 254
CONNMARK = 0x80  # aws-vpc-cni's AWS_VPC_K8S_CNI_CONNMARK default
CONNMARK_PRIORITY = 1024


@dataclass
class Eni:
    number: int  # device number: eth<number>, route table number + 1
    primary: ipaddress.IPv4Address
    secondaries: list[ipaddress.IPv4Address]
    mac: str
    used: int = 0

    @property
    def device(self) -> str:
        return f"eth{self.number}"

    @property
    def table(self) -> int:
        return self.number + 1


@dataclass
class PodSlot:
    pod: Pod
    ip: ipaddress.IPv4Address
    eni: Eni


@dataclass
class NodeAllocation:
    node: Node
    instance_type: str
    max_enis: int
    ips_per_eni: int
    enis: list[Eni] = field(default_factory=list)
    running: list[PodSlot] = field(default_factory=list)
    host_network: list[Pod] = field(default_factory=list)
    pending: list[tuple[Pod, str]] = field(default_factory=list)

    @property
    def max_pods(self) -> int:
        return max_pods(self.max_enis, self.ips_per_eni)[0]

    @property
    def formula(self) -> str:
        return max_pods(self.max_enis, self.ips_per_eni)[1]


class _SubnetPool:
    """Free addresses of one subnet, handed out in order after the nodes' own."""

    def __init__(self, topology: Topology, subnet: Subnet) -> None:
        members = sum(1 for n in topology.nodes if topology.subnet_of(n) == subnet)
        self.subnet = subnet
        self.next = subnet.cidr.network_address + FIRST_NODE_HOST + members
        self.last = subnet.cidr.broadcast_address - 1

    def take(self) -> ipaddress.IPv4Address | None:
        if self.next > self.last:
            return None
        ip, self.next = self.next, self.next + 1
        return ip


def allocate(topology: Topology) -> dict[str, NodeAllocation]:
    """ipamd's decisions for every node: ENIs attached, each pod's address or why it is Pending."""
    pools = {s.name: _SubnetPool(topology, s) for s in topology.network.subnets}
    out: dict[str, NodeAllocation] = {}
    for node in topology.nodes:
        kind = node.instance_type or DEFAULT_INSTANCE_TYPE
        max_enis, ips = INSTANCE_TYPES[kind]
        alloc = out[node.name] = NodeAllocation(node, kind, max_enis, ips)
        pool = pools[topology.subnet_of(node).name]
        for pod in node.pods:
            if pod.host_network:
                if len(alloc.running) + len(alloc.host_network) >= alloc.max_pods:
                    alloc.pending.append((pod, f"Too many pods: {kind} allows max pods {alloc.formula}"))
                else:
                    alloc.host_network.append(pod)
                continue
            eni = _eni_with_room(topology, alloc, pool)
            if eni is None:
                used = sum(len(e.secondaries) for e in alloc.enis)
                why = (
                    f"no free IP: subnet {pool.subnet.name} ({pool.subnet.cidr}) has no address left"
                    if len(alloc.enis) < max_enis and pool.next > pool.last
                    else f"no free IP: all {used} secondary IPs of {len(alloc.enis)} ENIs are in use "
                    f"({kind}: {max_enis} ENIs × {ips - 1} secondary IPs; max pods {alloc.formula})"
                )
                alloc.pending.append((pod, why))
            elif len(alloc.running) + len(alloc.host_network) >= alloc.max_pods:
                alloc.pending.append((pod, f"Too many pods: {kind} allows max pods {alloc.formula}"))
            else:
                ip = eni.secondaries[eni.used]
                eni.used += 1
                alloc.running.append(PodSlot(pod, ip, eni))
    return out


def _eni_with_room(topology: Topology, alloc: NodeAllocation, pool: _SubnetPool) -> Eni | None:
    for eni in alloc.enis:
        if eni.used < len(eni.secondaries):
            return eni
    if len(alloc.enis) >= alloc.max_enis:
        return None
    number = len(alloc.enis)
    primary = topology.node_ip(alloc.node) if number == 0 else pool.take()
    if primary is None:
        return None
    secondaries = []
    for _ in range(alloc.ips_per_eni - 1):
        ip = pool.take()
        if ip is None:
            break
        secondaries.append(ip)
    if not secondaries:
        return None
    eni = Eni(number, primary, secondaries, eni_mac(alloc.node, number))
    alloc.enis.append(eni)
    return eni


def eni_mac(node: Node, number: int) -> str:
    return names.mac(node.name, f"eth{number}")


def build(topology: Topology, b: Builder) -> None:
    k8s.ensure_router(topology, b)
    allocations = allocate(topology)
    for node in topology.nodes:
        _node(topology, b, allocations[node.name])
    _fabric(topology, b, allocations)
    for alloc in allocations.values():
        total = len(alloc.node.pods)
        fit = len(alloc.running) + len(alloc.host_network)
        b.notes.append(
            f"{alloc.node.name} ({alloc.instance_type}): {fit} of {total} pods running "
            f"({len(alloc.host_network)} hostNetwork), {len(alloc.enis) or 1} ENI(s) attached, max pods {alloc.formula}"
        )
        for pod, why in alloc.pending:
            b.notes.append(f"pod {pod.name} on {alloc.node.name} is Pending: {why}")


def _node(topology: Topology, b: Builder, alloc: NodeAllocation) -> None:
    node, mtu = alloc.node, topology.network.mtu
    host = b.ns(node.name)
    subnet = topology.subnet_of(node)
    underlay = b.ns(names.UNDERLAY)
    b.add(SetMac(host, "eth0", eni_mac(node, 0)))  # the fabric's neighbour entries name it
    for eni in alloc.enis[1:]:
        b.add(AddVeth(host, eni.device, underlay, f"{node.name}-{eni.device}", mtu, mac=eni.mac))
        b.add(
            SetMaster(underlay, f"{node.name}-{eni.device}", subnet.name),
            LinkUp(host, eni.device),
            LinkUp(underlay, f"{node.name}-{eni.device}"),
            AddAddress(host, eni.device, ipaddress.IPv4Interface(f"{eni.primary}/{subnet.cidr.prefixlen}"), noprefixroute=True),
            AddRoute(host, ipaddress.IPv4Network(f"{subnet.gateway}/32"), dev=eni.device, scope_link=True, table=eni.table),
            AddRoute(host, None, gateway=subnet.gateway, dev=eni.device, table=eni.table),
        )
    for number in range(max(len(alloc.enis), 1)):
        b.add(
            SetSysctl(host, f"net/ipv4/conf/eth{number}/arp_ignore", "1"),
            SetSysctl(host, f"net/ipv4/conf/eth{number}/arp_announce", "2"),
        )
    for slot in alloc.running:
        pod_ip = ipaddress.IPv4Network(f"{slot.ip}/32")
        ns = b.namespace(slot.pod.name, "pod")
        eni_veth = names.eni_veth(node.name, slot.pod.name)
        host_mac = names.mac(node.name, slot.pod.name, "eni")
        b.veth(host, eni_veth, ns, "eth0", mtu, mac=host_mac, peer_mac=names.mac(node.name, slot.pod.name))
        b.add(
            AddAddress(ns, "eth0", ipaddress.IPv4Interface(f"{slot.ip}/32")),
            AddRoute(ns, ipaddress.IPv4Network(f"{POD_GATEWAY}/32"), dev="eth0", scope_link=True),
            AddRoute(ns, None, gateway=POD_GATEWAY, dev="eth0"),
            AddNeighbour(ns, "eth0", POD_GATEWAY, host_mac),
            AddRoute(host, pod_ip, dev=eni_veth, scope_link=True),
            AddRule(host, None, MAIN_TABLE, TO_POD_PRIORITY, dst=pod_ip),
        )
        if slot.eni.number > 0:
            b.add(AddRule(host, pod_ip, slot.eni.table, FROM_POD_PRIORITY))
        attachment = f"ENI {slot.eni.device}" if slot.eni.number > 0 else ""  # policy routing through a secondary ENI
        b.hosts.append(Host(slot.pod.name, "pod", ns, slot.ip, node=node.name, attachment=attachment))
    k8s.host_network_pods(topology, b, node)
    if not topology.network.external_snat:
        b.add(
            AddRule(host, None, MAIN_TABLE, CONNMARK_PRIORITY, fwmark=CONNMARK, fwmask=CONNMARK),
            LoadIptables(host, snat_rules(topology, node), why="aws-vpc-cni: SNAT pod traffic leaving the VPC, via eth0"),
        )


def snat_rules(topology: Topology, node: Node) -> str:
    """The nat and mangle rules aws-node writes (AWS_VPC_K8S_CNI_EXTERNALSNAT=false), as
    amazon-vpc-cni-k8s v1.23.0 pkg/networkutils/network.go ``buildIptablesSNATRules`` and
    iptables_connmark.go write them (golden file: tests/unit/datapaths/golden/vpc-native-node1.rules).

    SNAT to the node's primary address for traffic leaving the VPC; such connections are
    connmarked 0x80 so that (with ``fwmark 0x80/0x80 lookup main``) they leave through eth0,
    whose address the SNAT uses, even for pods on a secondary ENI.
    """
    mark = f"{CONNMARK:#x}"
    lines = [
        "*nat",
        ":AWS-SNAT-CHAIN-0 - [0:0]",
        ":AWS-CONNMARK-CHAIN-0 - [0:0]",
        '-A PREROUTING -i eni+ -m comment --comment "AWS, outbound connections" -j AWS-CONNMARK-CHAIN-0',
        f'-A PREROUTING -m comment --comment "AWS, CONNMARK" -j CONNMARK --restore-mark --nfmask {mark} --ctmask {mark}',
        '-A POSTROUTING -m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-0',
    ]
    for subnet in topology.network.subnets:
        lines.append(f'-A AWS-CONNMARK-CHAIN-0 -d {subnet.cidr} -m comment --comment "AWS CONNMARK CHAIN, VPC CIDR" -j RETURN')
    lines.append(f'-A AWS-CONNMARK-CHAIN-0 -m comment --comment "AWS, CONNMARK" -j CONNMARK --set-xmark {mark}/{mark}')
    for subnet in topology.network.subnets:
        lines.append(f'-A AWS-SNAT-CHAIN-0 -d {subnet.cidr} -m comment --comment "AWS SNAT CHAIN" -j RETURN')
    lines += [
        f'-A AWS-SNAT-CHAIN-0 ! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype ! --dst-type LOCAL '
        f"-j SNAT --to-source {topology.node_ip(node)} --random-fully",
        "COMMIT",
        "*mangle",
        f'-A PREROUTING -i eth0 -m comment --comment "AWS, primary ENI" -m addrtype --dst-type LOCAL --limit-iface-in '
        f"-j CONNMARK --set-xmark {mark}/{mark}",
        f'-A PREROUTING -i eni+ -m comment --comment "AWS, primary ENI" -j CONNMARK --restore-mark --nfmask {mark} --ctmask {mark}',
        # "connmark restore for primary ENI from vlan" (branch ENIs of security groups for pods,
        # which netlab does not model: no vlan+ device ever matches)
        f'-A PREROUTING -i vlan+ -m comment --comment "AWS, primary ENI" -j CONNMARK --restore-mark --nfmask {mark} --ctmask {mark}',
        "COMMIT",
    ]
    return "\n".join(lines) + "\n"


def _fabric(topology: Topology, b: Builder, allocations: dict[str, NodeAllocation]) -> None:
    """The VPC delivers every secondary IP to the ENI that owns it: permanent neighbours."""
    gateway: str | None = b.ns(names.GATEWAY)  # always there: ensure_router
    if gateway is not None:
        b.add(SetSysctl(gateway, "net/ipv4/conf/all/send_redirects", "0"))
        for subnet in topology.network.subnets:
            b.add(SetSysctl(gateway, f"net/ipv4/conf/{subnet.name}/send_redirects", "0"))
    for alloc in allocations.values():
        subnet = topology.subnet_of(alloc.node)
        neighbours = [n for n in topology.nodes if n.name != alloc.node.name and topology.subnet_of(n) == subnet]
        for slot in alloc.running:
            if gateway is not None:
                b.add(AddNeighbour(gateway, subnet.name, slot.ip, slot.eni.mac))
            for other in neighbours:
                b.add(AddNeighbour(b.ns(other.name), "eth0", slot.ip, slot.eni.mac))
