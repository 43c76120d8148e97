"""The AWS VPC CNI (experiment 6): pods take secondary addresses of their node's subnet.

What aws-node (ipamd) and the CNI plugin build, per node:

- ENIs ``eth0``, ``eth1``, ... up to the instance type's limit (:data:`netlab.model.INSTANCE_TYPES`,
  the whole published table; a node without ``instanceType`` is a t3.medium). ``eth0`` is the
  node's own interface; each further ENI is another port on the subnet's underlay bridge with
  its own primary address (added ``noprefixroute``: aws-vpc-cni removes that connected route
  from main). ENIs and addresses appear as ipamd's warm pool requires (:func:`pool_short`,
  pkg/ipamd/ipamd.go ``isDatastorePoolTooLow``/``datastoreTargetState``): by default
  WARM_ENI_TARGET=1, a whole ENI's worth of free secondary IPs is kept, so the next ENI is
  attached when the first pod takes an address; WARM_IP_TARGET/MINIMUM_IP_TARGET allocate
  single IPs instead; with ENABLE_PREFIX_DELEGATION each of an ENI's (IPv4 per ENI - 1) slots
  holds a /28 prefix (16 pod addresses) and WARM_PREFIX_TARGET=1 keeps 16 free. Addresses come
  from the subnet lowest first after the nodes' own (.11, .12, ...), prefixes aligned /28s.
- MTU: AWS_VPC_ENI_MTU (default 9001) on every ENI and, as POD_MTU's default, on the pod's
  ``eth0`` and its host end; the subnets (bridges, nodes' eth0, the gateway's subnet side) carry
  9001-byte frames as the VPC does, and the gateway's internet side is 1500 (``network.mtu``),
  the internet gateway's limit: a larger packet is fragmented there, or dropped with ICMP
  "fragmentation needed" (mtu 1500) when it has DF set, as EC2's network_mtu documentation says.
- Each pod: ``eth0`` <secondary IP>/32, ``169.254.1.1 dev eth0 scope link``, ``default via
  169.254.1.1 dev eth0`` and a permanent neighbour 169.254.1.1 -> the host end's MAC; the host
  end ``eni`` + 11 hex of sha1("<namespace>.<pod>") (:func:`netlab.names.eni_veth`), with ``<pod IP> dev eni... scope link`` in main and a rule ``to <pod IP>
  lookup main`` (priority 512). A pod on ENI ``ethK`` (K > 0) also gets ``from <pod IP> lookup
  K+1`` (priority 1536), and table K+1 holds ``default via <subnet gateway> dev ethK``.
- Max pods = ENIs x (addresses per ENI - 1) + 2 as AWS publishes it (misc/eni-max-pods.txt),
  with prefix delegation as amazon-eks-ami's max-pods-calculator.sh gives it (110/250 caps);
  hostNetwork pods count. A pod that finds no
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
from netlab.model.topology import VpcCni
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
POD_NAMESPACE = "default"  # the Kubernetes namespace of the topology file's pods (as for Calico)
PREFIX_LEN = 28
PREFIX_SIZE = 16  # a /28 (pkg/ipamd/datastore: GetPrefixDelegationDefaults, 16 IPs per prefix)


@dataclass
class Eni:
    """One attached ENI: its primary address and the secondary IPs (or /28 prefixes) ipamd holds on it."""

    number: int  # device number: eth<number>, route table number + 1
    primary: ipaddress.IPv4Address
    mac: str
    cidrs: list[ipaddress.IPv4Network] = field(default_factory=list)  # /32 secondary IPs, or /28 prefixes
    assigned: dict[ipaddress.IPv4Address, str] = field(default_factory=dict)  # address -> pod

    @property
    def device(self) -> str:
        return f"eth{self.number}"

    @property
    def table(self) -> int:
        return self.number + 1

    @property
    def addresses(self) -> list[ipaddress.IPv4Address]:
        """Every address ipamd can give a pod here (all 16 of a /28 prefix: pods are /32 routes)."""
        return [ip for cidr in self.cidrs for ip in cidr]

    def free(self) -> list[ipaddress.IPv4Address]:
        return [ip for ip in self.addresses if ip not in self.assigned]


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
    settings: VpcCni = field(default_factory=VpcCni)
    enis: list[Eni] = field(default_factory=list)
    running: list[PodSlot] = field(default_factory=list)
    host_network: list[Pod] = field(default_factory=list)
    pending: list[tuple[Pod, str]] = field(default_factory=list)

    @property
    def prefix_mode(self) -> bool:
        """ENABLE_PREFIX_DELEGATION on a Nitro instance (ipamd falls back to secondary IPs elsewhere)."""
        return self.settings.prefix_delegation and INSTANCE_TYPES[self.instance_type].prefix_delegation

    @property
    def max_pods(self) -> int:
        return max_pods(self.instance_type, self.prefix_mode)[0]

    @property
    def formula(self) -> str:
        return max_pods(self.instance_type, self.prefix_mode)[1]

    @property
    def total(self) -> int:
        return sum(len(e.addresses) for e in self.enis)

    @property
    def available(self) -> int:
        return self.total - len(self.running)


class _SubnetPool:
    """Free addresses of one subnet, handed out lowest first after the nodes' own; /28 prefixes
    are aligned blocks of 16 free addresses (EC2 carves prefixes out of the subnet the same way)."""

    def __init__(self, topology: Topology, subnet: Subnet) -> None:
        members = sum(1 for n in topology.nodes if topology.subnet_of(n) == subnet)
        self.subnet = subnet
        self.first = subnet.cidr.network_address + FIRST_NODE_HOST + members
        self.last = subnet.cidr.broadcast_address - 1  # AWS reserves the last address
        self.taken: set[ipaddress.IPv4Address] = set()
        self.next = self.first
        self.prefix_next = (int(self.first) + PREFIX_SIZE - 1) // PREFIX_SIZE * PREFIX_SIZE  # the first aligned /28

    def take(self) -> ipaddress.IPv4Address | None:
        while self.next <= self.last and self.next in self.taken:
            self.next += 1
        if self.next > self.last:
            return None
        self.taken.add(self.next)
        return self.next

    def take_prefix(self) -> ipaddress.IPv4Network | None:
        # blocks below the cursor had a taken address when it passed them, and addresses are never given back
        for base in range(self.prefix_next, int(self.last) + 2 - PREFIX_SIZE, PREFIX_SIZE):
            block = ipaddress.IPv4Network((base, PREFIX_LEN))
            if not any(ip in self.taken for ip in block):
                self.taken.update(block)
                self.prefix_next = base + PREFIX_SIZE
                return block
        self.prefix_next = int(self.last) + 1
        return None

    @property
    def exhausted(self) -> bool:
        return self.next > self.last


def allocate(topology: Topology) -> dict[str, NodeAllocation]:
    """ipamd's decisions for every node: ENIs attached, each pod's address or why it is Pending.

    Node by node in file order, pod by pod: the warm pool is filled before the first pod (as
    ipamd does at start) and refilled after each pod takes an address, so a spare ENI (or IPs,
    or prefixes) is there before a pod needs it.
    """
    pools = {s.name: _SubnetPool(topology, s) for s in topology.network.subnets}
    settings = topology.network.vpc
    out: dict[str, NodeAllocation] = {}
    for node in topology.nodes:
        kind = node.instance_type or DEFAULT_INSTANCE_TYPE
        row = INSTANCE_TYPES[kind]
        alloc = out[node.name] = NodeAllocation(node, kind, row.enis, row.ipv4_per_eni, settings)
        pool = pools[topology.subnet_of(node).name]
        alloc.enis.append(Eni(0, topology.node_ip(node), eni_mac(node, 0)))  # eth0, attached at launch
        _replenish(alloc, pool)
        for pod in node.pods:
            if len(alloc.running) + len(alloc.host_network) >= alloc.max_pods:
                alloc.pending.append((pod, f"Too many pods: {kind} allows max pods {alloc.formula}"))
                continue
            if pod.host_network:
                alloc.host_network.append(pod)
                continue
            eni = next((e for e in alloc.enis if e.free()), None)
            if eni is None:
                alloc.pending.append((pod, _no_free_ip(alloc, pool)))
                continue
            ip = eni.free()[0]
            eni.assigned[ip] = pod.name
            alloc.running.append(PodSlot(pod, ip, eni))
            _replenish(alloc, pool)
    return out


def _no_free_ip(alloc: NodeAllocation, pool: _SubnetPool) -> str:
    unit = "/28 prefixes" if alloc.prefix_mode else "secondary IPs"
    if len(alloc.enis) < alloc.max_enis and pool.exhausted:
        return f"no free IP: subnet {pool.subnet.name} ({pool.subnet.cidr}) has no address left"
    return (
        f"no free IP: all {alloc.total} addresses of {len(alloc.enis)} ENIs are in use "
        f"({alloc.instance_type}: {alloc.max_enis} ENIs × {alloc.ips_per_eni - 1} {unit}; max pods {alloc.formula})"
    )


def pool_short(alloc: NodeAllocation) -> int:
    """How many addresses ipamd's pool is short of its target (0: the pool is warm enough).

    pkg/ipamd/ipamd.go: the pool is never grown past max pods (``isDatastorePoolTooLow``);
    with WARM_IP_TARGET/MINIMUM_IP_TARGET set, short = max(WARM_IP_TARGET - available,
    MINIMUM_IP_TARGET - total) (``datastoreTargetState``); else the pool is too low while
    available < WARM_ENI_TARGET × (IPv4 per ENI - 1), or WARM_PREFIX_TARGET × 16 in prefix mode.
    """
    s = alloc.settings
    if alloc.total >= alloc.max_pods:
        return 0
    if s.ip_targets:
        return max((s.warm_ip_target or 0) - alloc.available, (s.minimum_ip_target or 0) - alloc.total, 0)
    unit, target = (PREFIX_SIZE, s.warm_prefix_target) if alloc.prefix_mode else (alloc.ips_per_eni - 1, s.warm_eni_target)
    if alloc.available < unit * target or (target == 0 and alloc.available == 0):
        return max(unit * target - alloc.available, 1)
    return 0


def _replenish(alloc: NodeAllocation, pool: _SubnetPool) -> None:
    """Grow the pool until it is warm enough, or no ENI, slot or subnet address is left."""
    while (short := pool_short(alloc)) > 0:
        if alloc.prefix_mode:
            want = -(-short // PREFIX_SIZE)  # prefixes: datastore.DivCeil(short, 16)
        elif alloc.settings.ip_targets:
            want = short  # tryAssignIPs: toAllocate = short
        else:
            want = alloc.ips_per_eni - 1  # tryAssignIPs: a whole ENI's worth (maxIPsPerENI)
        if not _grow(alloc, pool, want):
            return


def _grow(alloc: NodeAllocation, pool: _SubnetPool, want: int) -> bool:
    """Add up to ``want`` secondary IPs (or prefixes) on the first ENI with room, else attach
    the next ENI (tryAssignIPs / tryAssignPrefixes, then tryAllocateENI); False if nothing could be added."""
    slots = alloc.ips_per_eni - 1  # the ENI's primary address takes one of its IPv4 slots
    eni = next((e for e in alloc.enis if len(e.cidrs) < slots), None)
    if eni is None:
        if len(alloc.enis) >= alloc.max_enis:
            return False
        primary = pool.take()
        if primary is None:
            return False
        eni = Eni(len(alloc.enis), primary, eni_mac(alloc.node, len(alloc.enis)))
        alloc.enis.append(eni)
        if not alloc.settings.ip_targets and not alloc.prefix_mode:
            want = slots
    added = 0
    for _ in range(min(want, slots - len(eni.cidrs))):
        cidr = pool.take_prefix() if alloc.prefix_mode else _host(pool.take())
        if cidr is None:
            break
        eni.cidrs.append(cidr)
        added += 1
    return added > 0


def _host(ip: ipaddress.IPv4Address | None) -> ipaddress.IPv4Network | None:
    return None if ip is None else ipaddress.IPv4Network(f"{ip}/32")


def pool_settings(topology: Topology) -> str:
    """The warm pool's settings as aws-node's environment shows them."""
    s = topology.network.vpc
    if s.ip_targets:
        warm = f"WARM_IP_TARGET={s.warm_ip_target or 0} MINIMUM_IP_TARGET={s.minimum_ip_target or 0}"
    elif s.prefix_delegation:
        warm = f"WARM_PREFIX_TARGET={s.warm_prefix_target}"
    else:
        warm = f"WARM_ENI_TARGET={s.warm_eni_target}"
    mode = "ENABLE_PREFIX_DELEGATION=true" if s.prefix_delegation else "secondary IPs"
    return f"aws-node: {mode}, {warm}, AWS_VPC_ENI_MTU={s.eni_mtu}, POD_MTU={s.pod_mtu or s.eni_mtu}"


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
    b.notes.append(pool_settings(topology))


def _node(topology: Topology, b: Builder, alloc: NodeAllocation) -> None:
    node, settings = alloc.node, topology.network.vpc
    mtu = settings.eni_mtu  # AWS_VPC_ENI_MTU (pkg/networkutils/network.go: default 9001)
    pod_mtu = settings.pod_mtu or mtu  # POD_MTU, defaulting to AWS_VPC_ENI_MTU (networkutils.GetPodMTU)
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
        eni_veth = names.eni_veth(POD_NAMESPACE, slot.pod.name)
        host_mac = names.mac(node.name, slot.pod.name, "eni")
        b.veth(host, eni_veth, ns, "eth0", pod_mtu, mac=host_mac, peer_mac=names.mac(node.name, slot.pod.name))
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
