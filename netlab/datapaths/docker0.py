"""Docker's default bridge network (experiments 1 and 2).

Per host: bridge ``docker0`` 172.17.0.1/16; each container a namespace with ``eth0``
172.17.0.2, .3, ... (MAC 02:42:<ip bytes>, as Docker assigns), default route via
172.17.0.1, host end ``veth<7 hex>`` enslaved to docker0. NAT as dockerd writes it:
MASQUERADE for 172.17.0.0/16 leaving through anything but docker0, and a DNAT per
published port in the ``DOCKER`` chain.
"""

from __future__ import annotations

import ipaddress

from netlab import names
from netlab.datapaths.underlay import Builder
from netlab.model import DOCKER_BRIDGE_CIDR, Node, Topology
from netlab.plan import AddAddress, AddBridge, AddRoute, Host, LinkUp, LoadIptables

BRIDGE = "docker0"


def build(topology: Topology, b: Builder) -> None:
    for node in topology.nodes:
        _host(topology, b, node)


def container_ip(index: int) -> ipaddress.IPv4Address:
    return DOCKER_BRIDGE_CIDR.network_address + 2 + index


def _host(topology: Topology, b: Builder, node: Node) -> None:
    mtu = topology.network.mtu
    host_ns = b.ns(node.name)
    gateway = DOCKER_BRIDGE_CIDR.network_address + 1
    prefix = DOCKER_BRIDGE_CIDR.prefixlen
    b.add(
        AddBridge(host_ns, BRIDGE, mtu, mac=names.mac(node.name, BRIDGE, prefix="02:42")),
        AddAddress(host_ns, BRIDGE, ipaddress.IPv4Interface(f"{gateway}/{prefix}")),
        LinkUp(host_ns, BRIDGE),
    )
    for index, pod in enumerate(node.pods):
        ip = container_ip(index)
        ns = b.namespace(pod.name, "pod")
        veth = names.docker_veth(node.name, pod.name)
        b.veth(host_ns, veth, ns, "eth0", mtu, peer_mac=names.docker_mac(str(ip)), master=BRIDGE)
        b.add(
            AddAddress(ns, "eth0", ipaddress.IPv4Interface(f"{ip}/{prefix}")),
            AddRoute(ns, None, gateway=gateway),
        )
        b.hosts.append(Host(pod.name, "pod", ns, ip, node=node.name))
    b.add(LoadIptables(host_ns, nat_rules(node), why="dockerd: MASQUERADE and published ports"))


def nat_rules(node: Node) -> str:
    """The nat table dockerd writes for this host, in iptables-save format."""
    lines = [
        "*nat",
        ":DOCKER - [0:0]",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
        f"-A POSTROUTING -s {DOCKER_BRIDGE_CIDR} ! -o {BRIDGE} -j MASQUERADE",
    ]
    published = [(container_ip(i), pod, port) for i, pod in enumerate(node.pods) for port in pod.ports]
    for ip, _pod, port in published:
        proto = port.protocol
        lines.append(
            f"-A POSTROUTING -s {ip}/32 -d {ip}/32 -p {proto} -m {proto} --dport {port.container_port} -j MASQUERADE"
        )
    lines.append(f"-A DOCKER -i {BRIDGE} -j RETURN")
    for ip, _pod, port in published:
        proto = port.protocol
        lines.append(
            f"-A DOCKER ! -i {BRIDGE} -p {proto} -m {proto} --dport {port.host_port} "
            f"-j DNAT --to-destination {ip}:{port.container_port}"
        )
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


