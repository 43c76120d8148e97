"""The topology model: a YAML file validated into immutable objects.

``load_topology(path)`` is the only way in from a file. Structural checks (types, unknown
keys) come from pydantic; cross-field checks (duplicate names, overlapping CIDRs, subnet
sizes) run in :meth:`Topology._check`. Every problem is raised as a :class:`TopologyError`
that names the file and the field (``topologies/x.yaml: nodes[1].pods[0].name: ...``).
Nothing here touches the kernel.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from netlab import names
from netlab.errors import TopologyError
from netlab.model import ipam, k8s_names, limits
from netlab.model.ingress import IngressControllerSpec
from netlab.model.limits import INSTANCE_TYPES, PodLimit
from netlab.model.service import DNS_SERVICE_INDEX, IPVS_SCHEDULERS, KUBERNETES_SERVICE_INDEX, Service

KNOWN_CNIS = ("docker0", "vxlan", "ipip", "calico", "host-gw", "vpc-native")
RESERVED_NAMES = ("internet", "gateway", "underlay")
DOCKER_BRIDGE_CIDR = ipaddress.IPv4Network("172.17.0.0/16")
DEFAULT_SUBNET = {"name": "lan", "cidr": "192.168.1.0/24"}
FIRST_NODE_HOST = 11  # node addresses are .11, .12, ... of their subnet (gateway is .1)
POD_CNIS = ("vxlan", "host-gw")  # node i (1-based, file order) gets the i-th /24 of podCIDR

_PORT_RE = re.compile(r"([0-9]{1,5}):([0-9]{1,5})(?:/(tcp|udp))?")
_DOMAIN_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]([-a-z0-9]*[a-z0-9])?$")


def _near(kind: str) -> list[str]:
    """Instance types that look like ``kind`` (its family, else the t3 sizes), for an error message."""
    family = kind.split(".")[0]
    same = [k for k in INSTANCE_TYPES if k.split(".")[0] == family]
    return (same or [k for k in INSTANCE_TYPES if k.startswith("t3.")])[:12]


def _name(kind: str, max_len: int, why: str) -> Any:
    def check(value: str) -> str:
        problem = names.name_problem(kind, value, max_len, why)
        if problem is not None:
            raise ValueError(problem)
        return value

    return check


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class PortMapping(_Frozen):
    """A published port, Docker's ``-p host:container/proto``."""

    host_port: int
    container_port: int
    protocol: Literal["tcp", "udp"] = "tcp"

    def __str__(self) -> str:
        return f"{self.host_port}:{self.container_port}/{self.protocol}"


def _parse_port(value: Any) -> Any:
    if isinstance(value, PortMapping) or isinstance(value, dict):
        return value
    text = str(value)
    match = _PORT_RE.fullmatch(text)
    if not match:
        raise ValueError(f"malformed port {text!r}: expected 'HOST:CONTAINER' or 'HOST:CONTAINER/tcp|udp', e.g. '8080:80'")
    host, container = int(match.group(1)), int(match.group(2))
    for port in (host, container):
        if not 1 <= port <= 65535:
            raise ValueError(f"malformed port {text!r}: {port} is outside 1-65535")
    return {"host_port": host, "container_port": container, "protocol": match.group(3) or "tcp"}


class Pod(_Frozen):
    """A container (docker0) or a Kubernetes pod."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    ports: tuple[PortMapping, ...] = ()
    host_network: bool = Field(False, alias="hostNetwork")
    # spec.hostname and spec.subdomain: with subdomain = a Service's name (same namespace), the
    # endpoint of that Service is <hostname>.<subdomain>.<ns>.svc.cluster.local in cluster DNS
    # (the EndpointSlice controller sets the endpoint's hostname only then; see netlab/services/dns.py)
    hostname: str | None = None
    subdomain: str | None = None

    _check_name = field_validator("name")(
        classmethod(lambda cls, v: _name("pod name", 63, "a DNS label")(v))
    )

    @field_validator("hostname", "subdomain")
    @classmethod
    def _dns_label(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else k8s_names.require(str(info.field_name), value, k8s_names.is_dns1123_label)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return k8s_names.require_labels("label", value)

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise ValueError("must be a list of 'HOST:CONTAINER[/tcp|udp]' strings")
        return [_parse_port(item) for item in value]

    def __hash__(self) -> int:  # labels is a dict; names are unique within a lab
        return hash(self.name)


class Node(_Frozen):
    """A Docker host or a Kubernetes node."""

    name: str
    subnet: str | None = None
    pods: tuple[Pod, ...] = ()
    instance_type: str | None = Field(None, alias="instanceType")

    _check_name = field_validator("name")(
        classmethod(lambda cls, v: _name("node name", 10, "it goes into interface names such as '<node>-eth0'")(v))
    )


class Subnet(_Frozen):
    """An underlay L2 segment (a bridge in the lab's underlay namespace)."""

    name: str
    cidr: ipaddress.IPv4Network

    _check_name = field_validator("name")(
        classmethod(lambda cls, v: _name("subnet name", 12, "it names the underlay bridge")(v))
    )

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.cidr.network_address + 1


class Calico(_Frozen):
    """Calico's settings for ``cni: calico`` (routes learned by BGP through BIRD).

    ``ipipMode`` is the IPPool's field (projectcalico.org/v3 IPPool ``spec.ipipMode``);
    ``blockSize`` the pool's ``spec.blockSize`` (Calico's default 26 for IPv4);
    ``asNumber`` BGPConfiguration's ``spec.asNumber`` (Calico's default 64512); ``vxlanMode``
    the pool's ``spec.vxlanMode`` (a pool has IP-in-IP or VXLAN, never both).
    """

    ipip_mode: Literal["Always", "CrossSubnet", "Never"] = Field("Always", alias="ipipMode")
    vxlan_mode: Literal["Always", "CrossSubnet", "Never"] = Field("Never", alias="vxlanMode")
    block_size: Annotated[int, Field(ge=20, le=30)] = Field(26, alias="blockSize")
    as_number: Annotated[int, Field(ge=1, le=4294967295)] = Field(64512, alias="asNumber")


class VpcCni(_Frozen):
    """The AWS VPC CNI's settings for ``cni: vpc-native`` (aws-node's environment variables).

    ``warmENITarget`` WARM_ENI_TARGET (default 1), ``warmIPTarget`` WARM_IP_TARGET and
    ``minimumIPTarget`` MINIMUM_IP_TARGET (unset by default; either one set replaces the warm
    ENI or prefix target), ``enablePrefixDelegation`` ENABLE_PREFIX_DELEGATION,
    ``warmPrefixTarget`` WARM_PREFIX_TARGET (default 1), ``eniMTU`` AWS_VPC_ENI_MTU and
    ``podMTU`` POD_MTU (576-9001, default 9001; POD_MTU defaults to AWS_VPC_ENI_MTU).
    Sources: amazon-vpc-cni-k8s README.md and docs/eni-and-ip-target.md,
    docs/prefix-and-ip-target.md; pkg/networkutils/network.go (the MTU range and default).
    """

    warm_eni_target: Annotated[int, Field(ge=0, le=100)] = Field(1, alias="warmENITarget")
    warm_ip_target: Annotated[int, Field(ge=0, le=100000)] | None = Field(None, alias="warmIPTarget")
    minimum_ip_target: Annotated[int, Field(ge=0, le=100000)] | None = Field(None, alias="minimumIPTarget")
    prefix_delegation: bool = Field(False, alias="enablePrefixDelegation")
    warm_prefix_target: Annotated[int, Field(ge=0, le=100)] = Field(1, alias="warmPrefixTarget")
    eni_mtu: Annotated[int, Field(ge=576, le=9001)] = Field(9001, alias="eniMTU")
    pod_mtu: Annotated[int, Field(ge=576, le=9001)] | None = Field(None, alias="podMTU")

    @property
    def ip_targets(self) -> bool:
        """WARM_IP_TARGET or MINIMUM_IP_TARGET set: they replace the warm ENI/prefix target."""
        return bool(self.warm_ip_target) or bool(self.minimum_ip_target)

    @model_validator(mode="after")
    def _prefix_targets(self) -> VpcCni:
        # docs/prefix-and-ip-target.md: "Setting either WARM_PREFIX_TARGET or both WARM_IP_TARGET and
        # MINIMUM_IP_TARGET environment variables to zero is not supported with prefix delegation enabled"
        if self.prefix_delegation and not self.ip_targets and self.warm_prefix_target == 0:
            raise ValueError(
                "warmPrefixTarget 0 with enablePrefixDelegation is not supported by the AWS VPC CNI: "
                "set warmPrefixTarget >= 1, or warmIPTarget/minimumIPTarget"
            )
        return self


class Network(_Frozen):
    cni: str = "docker0"
    mtu: Annotated[int, Field(ge=576, le=9000)] = 1500
    subnets: tuple[Subnet, ...] = (Subnet.model_validate(DEFAULT_SUBNET),)
    internet: ipaddress.IPv4Network | None = None
    pod_cidr: ipaddress.IPv4Network = Field(ipaddress.IPv4Network("10.244.0.0/16"), alias="podCIDR")
    mode: Literal["Always", "CrossSubnet"] = "Always"  # cni ipip's shorthand for calico.ipipMode
    # vxlan/host-gw: node i (file order, from 1) owns the (i - 1 + firstPodBlock)-th /24 of podCIDR. 1 (netlab's
    # default): node numbers and block numbers match; 0: the first node gets 10.244.0.0/24, as kube-controller-manager's
    # range allocator (pkg/controller/nodeipam/ipam/cidrset, AllocateNext from the first free /24) gives it
    first_pod_block: Literal[0, 1] = Field(1, alias="firstPodBlock")
    calico: Calico = Calico()  # cni calico only
    external_snat: bool = Field(False, alias="externalSNAT")
    vpc: VpcCni = VpcCni()  # cni vpc-native only
    service_cidr: ipaddress.IPv4Network = Field(ipaddress.IPv4Network("10.96.0.0/12"), alias="serviceCIDR")
    proxy_mode: Literal["iptables", "ipvs", "nftables"] = Field("iptables", alias="proxyMode")
    ipvs_scheduler: str = Field("rr", alias="ipvsScheduler")
    # docker0: dockerd's "userland-proxy" (daemon.json); false: no docker-proxy, hairpin NAT instead
    userland_proxy: bool = Field(True, alias="userlandProxy")
    # MetalLB's IPAddressPool spec.addresses: ranges "a.b.c.d-a.b.c.e" or CIDRs on a node subnet;
    # None: the default pool (Topology.load_balancer_pool)
    load_balancer_pool: tuple[str, ...] | None = Field(None, alias="loadBalancerPool")

    @field_validator("load_balancer_pool", mode="before")
    @classmethod
    def _pool(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        if items is None:
            return None
        if not isinstance(items, (list, tuple)):
            raise ValueError("expected an address range ('192.168.1.240-192.168.1.250'), a CIDR, or a list of them")
        for item in items:
            pool_range(str(item))  # raises ValueError naming the entry
        return tuple(str(i).strip() for i in items)

    @model_validator(mode="before")
    @classmethod
    def _ipip_is_calico(cls, data: Any) -> Any:
        """``cni: ipip`` (with ``mode``) is Calico with IP-in-IP: ``cni: calico`` with
        ``calico.ipipMode`` = ``mode``, so its routes come from BGP too (one Calico datapath)."""
        if not isinstance(data, dict) or data.get("cni") != "ipip":
            return data
        data = dict(data)
        mode = data.get("mode", "Always")
        calico = dict(data.get("calico") or {})
        given = calico.get("ipipMode", calico.get("ipip_mode"))
        if given is not None and given != mode:
            raise ValueError(
                f"cni ipip with mode {mode} but calico.ipipMode {given}: cni ipip is Calico with ipipMode = mode; "
                "write cni: calico with calico.ipipMode only"
            )
        if mode in ("Always", "CrossSubnet") and given is None:
            calico["ipipMode"] = mode
        data["cni"] = "calico"
        data["calico"] = calico
        return data

    @property
    def underlay_mtu(self) -> int:
        """The MTU of the subnets (nodes' eth0, the bridges, the gateway's subnet side): vpc-native's
        ENI MTU (9001, the VPC's jumbo frames), else ``mtu``. The internet side keeps ``mtu``."""
        return self.vpc.eni_mtu if self.cni == "vpc-native" else self.mtu

    @field_validator("cni")
    @classmethod
    def _cni(cls, value: str) -> str:
        if value not in KNOWN_CNIS:
            raise ValueError(f"unknown cni {value!r}; valid: {', '.join(KNOWN_CNIS)}")
        return value

    @field_validator("subnets")
    @classmethod
    def _subnets(cls, value: tuple[Subnet, ...]) -> tuple[Subnet, ...]:
        if not value:
            raise ValueError("at least one subnet is needed")
        return value

    def subnet(self, name: str) -> Subnet:
        for subnet in self.subnets:
            if subnet.name == name:
                return subnet
        raise KeyError(name)

    @property
    def internet_host(self) -> ipaddress.IPv4Address | None:
        return None if self.internet is None else self.internet.network_address + 1

    @property
    def internet_gateway(self) -> ipaddress.IPv4Address | None:
        """The gateway's address on the internet side: the last usable address."""
        return None if self.internet is None else self.internet.broadcast_address - 1


class ExternalDNS(_Frozen):
    """ExternalDNS as deployed in the lab (its command-line flags), publishing to the emulated
    internet's authoritative DNS (netlab/services/externaldns.py)."""

    domain_filter: tuple[str, ...] = Field(("example.test",), alias="domainFilter")  # the zones it manages
    txt_owner_id: str = Field("default", alias="txtOwnerId")  # --txt-owner-id
    txt_prefix: str = Field("", alias="txtPrefix")  # --txt-prefix

    @field_validator("domain_filter", mode="before")
    @classmethod
    def _domains(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not items:
            raise ValueError("expected a domain or a list of domains, e.g. example.test")
        out = []
        for item in items:
            name = str(item).strip().rstrip(".").lower()
            if not _DOMAIN_RE.fullmatch(name):
                raise ValueError(f"{item!r} is not a DNS domain (e.g. example.test)")
            out.append(name)
        return tuple(out)


def pool_range(text: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """First and last address of one loadBalancerPool entry (a range or a CIDR); ValueError if malformed."""
    text = text.strip()
    try:
        if "-" in text:
            first, last = (ipaddress.IPv4Address(t.strip()) for t in text.split("-", 1))
            if last < first:
                raise ValueError
            return first, last
        net = ipaddress.IPv4Network(text)
        return net.network_address, net.broadcast_address
    except ValueError:
        raise ValueError(f"malformed loadBalancerPool entry {text!r}: use 'FIRST-LAST' (192.168.1.240-192.168.1.250) or a CIDR") from None


DEFAULT_POOL_SIZE = 11  # .240-.250 of a /24, as in MetalLB's own IPAddressPool example


class Topology(_Frozen):
    """A validated lab description. Build it with :func:`load_topology` or :func:`parse_topology`."""

    name: str
    network: Network = Network()
    nodes: tuple[Node, ...]
    services: tuple[Service, ...] = ()  # Kubernetes Services: netlab/services/
    external_dns: ExternalDNS = Field(ExternalDNS(), alias="externalDNS")
    ingress_controller: IngressControllerSpec = Field(IngressControllerSpec(), alias="ingressController")  # services/ingress.py

    _check_name = field_validator("name")(
        classmethod(lambda cls, v: _name("lab name", names.LAB_NAME_MAX, "it prefixes every namespace of the lab")(v))
    )

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: tuple[Node, ...]) -> tuple[Node, ...]:
        if not value:
            raise ValueError("at least one node is needed")
        return value

    # ----------------------------------------------------------------- derived facts
    def subnet_of(self, node: Node) -> Subnet:
        return self.network.subnet(node.subnet) if node.subnet else self.network.subnets[0]

    def node_ip(self, node: Node) -> ipaddress.IPv4Address:
        subnet = self.subnet_of(node)
        default = self.network.subnets[0].name
        # the node's position among its subnet's nodes (by subnet name: comparing models made 1000 nodes take seconds)
        index = [n.name for n in self.nodes if (n.subnet or default) == subnet.name].index(node.name)
        return subnet.cidr.network_address + FIRST_NODE_HOST + index

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def pod_block(self, node: Node) -> ipaddress.IPv4Network:
        """The node's /24 of ``network.podCIDR``: node i (1-based, file order) owns the i-th
        (``firstPodBlock: 1``), or the (i-1)-th as kube-controller-manager's range allocator
        hands them out (``firstPodBlock: 0``)."""
        return self._block([n.name for n in self.nodes].index(node.name))

    def _block(self, index: int) -> ipaddress.IPv4Network:
        first = self.network.first_pod_block
        return ipaddress.IPv4Network(f"{self.network.pod_cidr.network_address + (index + first) * 256}/24")

    def pod_limit(self, node: Node, index: int | None = None) -> PodLimit:
        """The most pods ``node`` (``nodes[index]``) can run: its bridge's ports, its pod block,
        or max pods (:mod:`netlab.model.limits`)."""
        if self.network.cni == "calico":
            blocks = self.calico_blocks()[node.name]
            room = sum(b.num_addresses for b in blocks) - (1 if self.calico_tunnel() else 0)
            return PodLimit(
                room,
                f"its IPAM blocks {', '.join(map(str, blocks))} hold {room} pods (netlab claims a node's blocks at `up`)",
                "list the pods in the topology file, so that `up` claims the blocks they need",
            )
        block = None
        if self.network.cni in POD_CNIS:
            block = self.pod_block(node) if index is None else self._block(index)
        return limits.pod_limit(self.network.cni, block, node.instance_type, self.network.vpc.prefix_delegation)

    def pods(self) -> Iterator[tuple[Node, Pod]]:
        for node in self.nodes:
            for pod in node.pods:
                yield node, pod

    def load_balancer_pool(self) -> list[ipaddress.IPv4Address]:
        """The addresses MetalLB hands to LoadBalancer Services, in allocation order.

        ``network.loadBalancerPool`` if given; by default the 11 addresses 16 below the first
        subnet's broadcast address (192.168.1.240-192.168.1.250 for a /24, MetalLB's example
        pool), or none when that subnet is too small to spare them beside its nodes.
        """
        net = self.network
        if net.load_balancer_pool is not None:
            out: list[ipaddress.IPv4Address] = []
            for entry in net.load_balancer_pool:
                first, last = pool_range(entry)
                out += [ipaddress.IPv4Address(i) for i in range(int(first), int(last) + 1)]
            return out
        subnet = net.subnets[0].cidr
        first = subnet.broadcast_address - 15
        members = sum(1 for n in self.nodes if self.subnet_of(n).cidr == subnet)
        if subnet.prefixlen > 26 or first <= subnet.network_address + FIRST_NODE_HOST + members:
            return []
        return [first + i for i in range(DEFAULT_POOL_SIZE)]

    @property
    def needs_gateway(self) -> bool:
        return self.network.internet is not None or len(self.network.subnets) > 1

    # ----------------------------------------------------------------- cross-field checks
    @model_validator(mode="after")
    def _check(self) -> Topology:
        net = self.network
        seen: dict[str, str] = {}
        for i, node in enumerate(self.nodes):
            self._claim(seen, node.name, f"nodes[{i}].name")
            if node.subnet is not None and node.subnet not in {s.name for s in net.subnets}:
                raise Problem(
                    f"nodes[{i}].subnet",
                    f"unknown subnet {node.subnet!r}; defined: {', '.join(s.name for s in net.subnets)}",
                )
            for j, pod in enumerate(node.pods):
                self._claim(seen, pod.name, f"nodes[{i}].pods[{j}].name")
                published: set[tuple[int, str]] = set()
                for k, port in enumerate(pod.ports):
                    if net.cni != "docker0":
                        raise Problem(f"nodes[{i}].pods[{j}].ports", "published ports exist only with cni docker0 (use a NodePort Service)")
                    key = (port.host_port, port.protocol)
                    if key in published:
                        raise Problem(f"nodes[{i}].pods[{j}].ports[{k}]", f"host port {port.host_port}/{port.protocol} published twice")
                    published.add(key)
            self._check_host_ports(i, node)

        names: set[str] = set()
        for i, subnet in enumerate(net.subnets):
            if subnet.name in names:
                raise Problem(f"network.subnets[{i}].name", f"duplicate subnet name {subnet.name!r}")
            names.add(subnet.name)
            ranges = [(f"network.subnets[{k}] {s.cidr}", s.cidr) for k, s in enumerate(net.subnets[:i])]
            self._no_overlap(f"network.subnets[{i}].cidr", subnet.cidr, ranges)
            members = sum(1 for n in self.nodes if self.subnet_of(n) == subnet)
            room = subnet.cidr.num_addresses - 2 - (FIRST_NODE_HOST - 1)
            if members > room:
                raise Problem(
                    f"network.subnets[{i}].cidr",
                    f"{subnet.cidr} is too small for its {members} nodes (they take .{FIRST_NODE_HOST} upwards; room for {max(room, 0)}); use a larger prefix",
                )
        taken = [(f"network.subnets[{k}] {s.cidr}", s.cidr) for k, s in enumerate(net.subnets)]
        if net.internet is not None:
            if net.internet.num_addresses < 4:
                raise Problem("network.internet", f"{net.internet} is too small: use a /30 or larger")
            self._no_overlap("network.internet", net.internet, taken)
            taken.append((f"network.internet {net.internet}", net.internet))
        self._check_pod_network(taken)
        if net.cni != "docker0" and not net.userland_proxy:
            raise Problem("network.userlandProxy", "dockerd's userland proxy exists only with cni docker0: remove the field")
        if net.cni == "docker0":
            for label, other in taken:  # name the range that collides: network.subnets[k].cidr or network.internet
                field = label.split(" ")[0] + (".cidr" if label.startswith("network.subnets") else "")
                self._no_overlap(field, other, [(f"docker0's bridge network {DOCKER_BRIDGE_CIDR}", DOCKER_BRIDGE_CIDR)])
            self._check_pods_per_node()
        if (problem := check_services(self)) is not None:
            raise Problem(*problem)
        self._check_pool()
        if (problem := check_ingress_controller(self)) is not None:
            raise Problem(*problem)
        return self

    def _check_pool(self) -> None:
        """Pool entries on a node subnet (L2 mode answers ARP only there), clear of the nodes and the gateway."""
        net = self.network
        if net.load_balancer_pool is None:
            return
        taken = {self.node_ip(n): f"node {n.name}" for n in self.nodes}
        taken.update({s.gateway: f"the gateway of subnet {s.name}" for s in net.subnets})
        seen: set[ipaddress.IPv4Address] = set()
        for i, entry in enumerate(net.load_balancer_pool):
            first, last = pool_range(entry)
            subnet = next((s for s in net.subnets if first in s.cidr and last in s.cidr), None)
            field = f"network.loadBalancerPool[{i}]"
            if subnet is None:
                raise Problem(field, f"{entry} is not inside one node subnet ({', '.join(str(s.cidr) for s in net.subnets)}): "
                              "a layer-2 load balancer answers ARP only on the nodes' own segment")
            if first == subnet.cidr.network_address or last == subnet.cidr.broadcast_address:
                raise Problem(field, f"{entry} includes the network or broadcast address of {subnet.cidr}")
            for address in range(int(first), int(last) + 1):
                ip = ipaddress.IPv4Address(address)
                if ip in taken:
                    raise Problem(field, f"{entry} includes {ip}, the address of {taken[ip]}")
                if ip in seen:
                    raise Problem(field, f"{entry} overlaps another pool entry at {ip}")
                seen.add(ip)

    def _check_pod_network(self, taken: list[tuple[str, ipaddress.IPv4Network]]) -> None:
        net = self.network
        for i, node in enumerate(self.nodes):
            if node.instance_type is not None and node.instance_type not in INSTANCE_TYPES:
                raise Problem(
                    f"nodes[{i}].instanceType",
                    f"unknown instance type {node.instance_type!r}; the published table (netlab/model/data/"
                    f"ec2-instance-limits.tsv) has {len(INSTANCE_TYPES)} types, e.g. {', '.join(_near(node.instance_type))}",
                )
        if net.cni == "calico":
            self._check_calico(taken)
            return
        if net.cni not in POD_CNIS:
            return
        self._no_overlap("network.podCIDR", net.pod_cidr, taken)
        if net.pod_cidr.prefixlen > 23:
            raise Problem("network.podCIDR", f"{net.pod_cidr} is too small: each node takes a /24 (use e.g. 10.244.0.0/16)")
        blocks = 2 ** (24 - net.pod_cidr.prefixlen) - net.first_pod_block  # firstPodBlock 1: the first /24 is not used
        if len(self.nodes) > blocks:
            raise Problem(
                "nodes",
                f"{len(self.nodes)} nodes but {net.pod_cidr} has room for {blocks} node /24 blocks; use a larger podCIDR",
            )
        self._check_pods_per_node()
        if net.cni == "host-gw":
            first = self.subnet_of(self.nodes[0])
            for i, node in enumerate(self.nodes):
                if self.subnet_of(node) != first:
                    raise Problem(
                        f"nodes[{i}].subnet",
                        f"host-gw needs every node on one L2 subnet, but {node.name} is on {self.subnet_of(node).name} and "
                        f"{self.nodes[0].name} on {first.name}: no L2 adjacency, so a route 'via <node IP>' cannot work "
                        "(Flannel refuses this too); use cni vxlan, or calico with ipipMode CrossSubnet",
                    )

    def _check_calico(self, taken: list[tuple[str, ipaddress.IPv4Network]]) -> None:
        net = self.network
        self._no_overlap("network.podCIDR", net.pod_cidr, taken)
        if net.pod_cidr.prefixlen > net.calico.block_size:
            raise Problem("network.calico.blockSize", f"blocks of /{net.calico.block_size} do not fit in podCIDR {net.pod_cidr}; use a larger podCIDR")
        try:
            self.calico_blocks()
        except ValueError as exc:
            raise Problem("network.podCIDR", str(exc)) from None
        if net.calico.ipip_mode != "Never" and net.calico.vxlan_mode != "Never":
            raise Problem(
                "network.calico.vxlanMode",
                f"ipipMode {net.calico.ipip_mode} and vxlanMode {net.calico.vxlan_mode}: Calico refuses an IP pool with both "
                "encapsulations; set ipipMode: Never to use VXLAN",
            )
        if net.calico.ipip_mode == "Never" and net.calico.vxlan_mode == "Never":
            first = self.subnet_of(self.nodes[0])
            for i, node in enumerate(self.nodes):
                if self.subnet_of(node) != first:
                    raise Problem(
                        f"nodes[{i}].subnet",
                        f"ipipMode and vxlanMode Never route a node's pods 'via <node IP>', but {node.name} is on {self.subnet_of(node).name} and "
                        f"{self.nodes[0].name} on {first.name}: the router between them learns no pod routes (a real cluster "
                        "would peer it with BIRD); use ipipMode or vxlanMode CrossSubnet or Always",
                    )

    def calico_encapsulation(self) -> str | None:
        """cni calico: ``"ipip"``, ``"vxlan"`` or None (BGP only)."""
        calico = self.network.calico
        if calico.ipip_mode != "Never":
            return "ipip"
        return "vxlan" if calico.vxlan_mode != "Never" else None

    def calico_tunnel(self) -> bool:
        """Does every Calico node get a tunnel address (tunl0 or vxlan.calico) from its block?"""
        return self.calico_encapsulation() is not None

    def calico_blocks(self) -> dict[str, list[ipaddress.IPv4Network]]:
        """cni calico: the IPAM blocks each node claims (:mod:`netlab.model.ipam`), by node name."""
        tunnel = 1 if self.calico_tunnel() else 0
        demands = [tunnel + sum(1 for p in n.pods if not p.host_network) for n in self.nodes]
        claimed = ipam.claim_blocks(self.network.pod_cidr, self.network.calico.block_size, demands)
        return {node.name: blocks for node, blocks in zip(self.nodes, claimed, strict=True)}

    def _check_pods_per_node(self) -> None:
        """No node has more pods than its bridge, pod block or max pods allow (netlab/model/limits.py).

        vpc-native is not checked: pods beyond max pods are reported Pending, as on EKS.
        """
        for i, node in enumerate(self.nodes):
            limit = self.pod_limit(node, i)
            count = limit.counted(node.pods)
            if count > limit.count:
                raise Problem(f"nodes[{i}].pods", f"{node.name} has {count} pods, but {limit.why}; {limit.advice}")

    @staticmethod
    def _claim(seen: dict[str, str], name: str, field: str) -> None:
        if name in RESERVED_NAMES:
            raise Problem(field, f"{name!r} is reserved ({', '.join(RESERVED_NAMES)} name the lab's own namespaces)")
        if name in seen:
            raise Problem(field, f"duplicate name {name!r} (already used at {seen[name]}; node and pod names share one space)")
        seen[name] = field

    @staticmethod
    def _check_host_ports(i: int, node: Node) -> None:
        owners: dict[tuple[int, str], str] = {}
        for j, pod in enumerate(node.pods):
            for k, port in enumerate(pod.ports):
                key = (port.host_port, port.protocol)
                if key in owners and owners[key] != pod.name:
                    raise Problem(
                        f"nodes[{i}].pods[{j}].ports[{k}]",
                        f"host port {port.host_port}/{port.protocol} is already published by {owners[key]!r} on {node.name}",
                    )
                owners[key] = pod.name

    @staticmethod
    def _no_overlap(
        field: str,
        cidr: ipaddress.IPv4Network,
        taken: list[tuple[str, ipaddress.IPv4Network]],
        what: str | None = None,
    ) -> None:
        for label, other in taken:
            if cidr.overlaps(other):
                subject = what or str(cidr)
                raise Problem(field, f"{subject} overlaps {label}; choose ranges that do not overlap")


class Problem(TopologyError):
    """A cross-field problem found during validation; the loader adds the file name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__("<topology>", field, message)


# --------------------------------------------------------------------- services
def check_services(topology: Topology) -> tuple[str, str] | None:
    """The first cross-field problem with ``topology``'s services as (field, message), or None."""
    net = topology.network
    cidr = net.service_cidr
    if cidr.num_addresses < 16:
        return "network.serviceCIDR", f"{cidr} is too small: use a /28 or larger (10.96.0.0/12 is Kubernetes' default)"
    ranges = [("network.podCIDR", net.pod_cidr)] + [(f"network.subnets {s.cidr}", s.cidr) for s in net.subnets]
    if net.internet is not None:
        ranges.append(("network.internet", net.internet))
    for label, other in ranges:
        if cidr.overlaps(other) and not (label == "network.podCIDR" and net.cni == "docker0"):
            return "network.serviceCIDR", f"{cidr} overlaps {label} {other}; choose a range that does not overlap"
    if net.proxy_mode == "ipvs" and net.ipvs_scheduler not in IPVS_SCHEDULERS:
        return "network.ipvsScheduler", f"unknown IPVS scheduler {net.ipvs_scheduler!r}; valid: {', '.join(IPVS_SCHEDULERS)}"
    if topology.services and net.cni == "docker0":
        return "services", "Services need a Kubernetes pod network (cni vxlan, calico, host-gw or vpc-native), not docker0"
    reserved = {
        str(cidr.network_address + KUBERNETES_SERVICE_INDEX): "default/kubernetes",
        str(cidr.network_address + DNS_SERVICE_INDEX): "kube-system/kube-dns",
    }
    keys: dict[str, int] = {}
    ips: dict[str, str] = dict(reserved)
    node_ports: dict[tuple[int, str], str] = {}
    for i, svc in enumerate(topology.services):
        if svc.key in keys or svc.key in reserved.values():
            return f"services[{i}].name", f"duplicate service {svc.key!r}" + (
                " (netlab creates it)" if svc.key in reserved.values() else f" (already services[{keys[svc.key]}])"
            )
        keys[svc.key] = i
        if svc.cluster_ip and not svc.headless:
            address = ipaddress.IPv4Address(svc.cluster_ip)
            if address not in cidr or address in (cidr.network_address, cidr.broadcast_address):
                return f"services[{i}].clusterIP", f"{address} is not a usable address of network.serviceCIDR {cidr}"
            if str(address) in ips:
                return f"services[{i}].clusterIP", f"{address} is already taken by {ips[str(address)]}"
            ips[str(address)] = svc.key
        for j, port in enumerate(svc.ports):
            if port.node_port is not None:
                owner = node_ports.get((port.node_port, port.protocol))
                if owner:
                    return f"services[{i}].ports[{j}].nodePort", f"nodePort {port.node_port}/{port.protocol} is already used by {owner}"
                node_ports[(port.node_port, port.protocol)] = svc.key
    return None


def check_ingress_controller(topology: Topology) -> tuple[str, str] | None:
    """The first problem with ``topology``'s ``ingressController`` as (field, message), or None."""
    spec = topology.ingress_controller
    if spec.enabled is True and topology.network.cni == "docker0":
        return "ingressController.enabled", "the ingress controller needs a Kubernetes pod network (cni vxlan, calico, host-gw or vpc-native), not docker0"
    if spec.node is not None and spec.node not in {n.name for n in topology.nodes}:
        return "ingressController.node", f"unknown node {spec.node!r}; nodes: {', '.join(n.name for n in topology.nodes)}"
    for key, port in (("httpNodePort", spec.http_node_port), ("httpsNodePort", spec.https_node_port)):
        owner = next((s.key for s in topology.services for p in s.ports if p.node_port == port and p.protocol == "TCP"), None)
        if port is not None and owner:
            return f"ingressController.{key}", f"nodePort {port}/TCP is already used by {owner}"
    return None
