"""What every lab has: node namespaces on underlay bridges, a gateway, the internet.

Layout (``lab`` = the lab name)::

    <lab>-internet  eth0 203.0.113.1/24 ── internet ─┐
                                                  <lab>-gateway  (.1 of every subnet, .254 of internet)
    <lab>-underlay  bridge <subnet> per subnet ──── gw-<subnet>
          │ <node>-eth0
    <lab>-<node>    eth0 192.168.1.11/24, default via 192.168.1.1, ip_forward=1
"""

from __future__ import annotations

import ipaddress

from netlab import names
from netlab.model import Node, Topology
from netlab.plan import (
    AddAddress,
    AddBridge,
    AddRoute,
    AddVeth,
    CreateNamespace,
    Host,
    LinkUp,
    Operation,
    Plan,
    SetMaster,
    SetSysctl,
)


class Builder:
    """Collects operations and endpoints while a datapath describes a lab."""

    def __init__(self, topology: Topology, source: str) -> None:
        self.topology = topology
        self.source = source
        self.lab = topology.name
        self.ops: list[Operation] = []
        self.hosts: list[Host] = []
        self.notes: list[str] = []

    def ns(self, target: str) -> str:
        return names.namespace(self.lab, target)

    def add(self, *ops: Operation) -> None:
        self.ops.extend(ops)

    def plan(self) -> Plan:
        return Plan(self.lab, self.topology.network.cni, tuple(self.ops), tuple(self.hosts), tuple(self.notes))

    # ------------------------------------------------------------------ pieces
    def namespace(self, target: str, role: str, forwarding: bool = False) -> str:
        ns = self.ns(target)
        self.add(CreateNamespace(ns, role))
        if forwarding:
            self.add(SetSysctl(ns, "net/ipv4/ip_forward", "1"))
        return ns

    def veth(
        self,
        ns: str,
        name: str,
        peer_ns: str,
        peer: str,
        mtu: int,
        mac: str | None = None,
        peer_mac: str | None = None,
        master: str | None = None,
        hairpin: bool = False,
    ) -> None:
        """A veth pair, both ends up; ``master`` enslaves the ``ns`` end to a bridge (``hairpin``:
        with hairpin mode on that port)."""
        self.add(AddVeth(ns, name, peer_ns, peer, mtu, mac, peer_mac))
        if master:
            self.add(SetMaster(ns, name, master, hairpin))
        self.add(LinkUp(ns, name), LinkUp(peer_ns, peer))

    def underlay(self) -> None:
        topo, net = self.topology, self.topology.network
        underlay = self.namespace(names.UNDERLAY, "underlay")
        self.hosts.append(Host(names.UNDERLAY, "underlay", underlay))
        for subnet in net.subnets:
            self.add(AddBridge(underlay, subnet.name, net.underlay_mtu), LinkUp(underlay, subnet.name))
        for node in topo.nodes:
            self.node(node)
        if topo.needs_gateway:
            self.gateway()

    def node(self, node: Node) -> None:
        topo, net = self.topology, self.topology.network
        subnet = topo.subnet_of(node)
        ns = self.namespace(node.name, "node", forwarding=True)
        ip = topo.node_ip(node)
        self.veth(ns, "eth0", self.ns(names.UNDERLAY), f"{node.name}-eth0", net.underlay_mtu)
        self.add(
            SetMaster(self.ns(names.UNDERLAY), f"{node.name}-eth0", subnet.name),
            AddAddress(ns, "eth0", ipaddress.IPv4Interface(f"{ip}/{subnet.cidr.prefixlen}")),
        )
        if topo.needs_gateway:
            self.add(AddRoute(ns, None, gateway=subnet.gateway))
        self.hosts.append(Host(node.name, "node", ns, ip))

    def gateway(self) -> None:
        net = self.topology.network
        gw = self.namespace(names.GATEWAY, "gateway", forwarding=True)
        self.hosts.append(Host(names.GATEWAY, "gateway", gw, net.subnets[0].gateway, iface=net.subnets[0].name))
        for subnet in net.subnets:
            self.veth(gw, subnet.name, self.ns(names.UNDERLAY), f"gw-{subnet.name}", net.underlay_mtu)
            self.add(
                SetMaster(self.ns(names.UNDERLAY), f"gw-{subnet.name}", subnet.name),
                AddAddress(gw, subnet.name, ipaddress.IPv4Interface(f"{subnet.gateway}/{subnet.cidr.prefixlen}")),
            )
        if net.internet is not None:
            assert net.internet_host is not None and net.internet_gateway is not None
            inet = self.namespace(names.INTERNET, "internet")
            self.veth(inet, "eth0", gw, names.INTERNET, net.mtu)  # vpc-native: the internet gateway's 1500
            prefix = net.internet.prefixlen
            self.add(
                AddAddress(inet, "eth0", ipaddress.IPv4Interface(f"{net.internet_host}/{prefix}")),
                AddAddress(gw, names.INTERNET, ipaddress.IPv4Interface(f"{net.internet_gateway}/{prefix}")),
                AddRoute(inet, None, gateway=net.internet_gateway),
            )
            self.hosts.append(Host(names.INTERNET, "internet", inet, net.internet_host))
