"""Docker's default bridge network (experiments 1 and 2), as Docker Engine 28.5.2 builds it.

Per host: bridge ``docker0`` 172.17.0.1/16; each container a namespace with ``eth0``
172.17.0.2, .3, ... (MAC 02:42:<ip bytes>, as Docker assigns), default route via
172.17.0.1, host end ``veth<7 hex>`` enslaved to docker0.

The iptables rules are the ones dockerd 28.5.2 writes for the default bridge (icc on,
masquerade on, gateway mode ``nat``, IPv4 only), in the order ``iptables-save`` prints them.
Upstream (moby/moby, tag v28.5.2), each rule's source is named next to it below:

- ``libnetwork/drivers/bridge/internal/iptabler/iptabler.go``: the chains (nat DOCKER; filter
  DOCKER, DOCKER-FORWARD, DOCKER-BRIDGE, DOCKER-CT, DOCKER-ISOLATION-STAGE-1/2), the FORWARD
  jumps, and ``FilterForwardDrop``: policy DROP on FORWARD when dockerd turns on
  ip_forward itself, as on a fresh host;
- ``libnetwork/firewall_linux.go``: DOCKER-USER, jumped to first from FORWARD, left empty
  for the user;
- ``.../iptabler/network.go``: MASQUERADE, the nat jumps (``! -d 127.0.0.0/8`` only with the
  userland proxy), the skip-DNAT RETURN (only with the proxy), the hairpin masquerade of
  host-local sources (only without), ``DOCKER ! -i docker0 -o docker0 -j DROP``;
- ``.../iptabler/port.go``: per published port a DNAT, a filter ACCEPT and (without the
  proxy) a MASQUERADE for a container reaching itself;
- ``.../iptabler/endpoint.go``: per container a raw PREROUTING DROP of packets addressed to
  it that did not come from docker0 (direct routing is refused; published ports arrive
  addressed to the host);
- the golden files ``.../iptabler/testdata/TestIptabler_hairpin={false,true},internal=false,
  icc=true,masq=true,snat=false,gwm=nat,bindlh=false__iptables.golden`` show the same
  rules for bridge ``br-dummy``; tests/unit/datapaths/golden/ holds netlab's for docker0.

``network.userlandProxy: false`` is dockerd's ``"userland-proxy": false``: the rules above
switch form, ``route_localnet`` is set on docker0 (``setup_ipv4_linux.go``) and every
container's bridge port gets hairpin mode (``bridge_linux.go``, ``setHairpinMode``). With
the proxy (the default) netlab runs a docker-proxy per published port on the host
(:mod:`netlab.services.dockerproxy`).
"""

from __future__ import annotations

import ipaddress

from netlab import names, versions
from netlab.datapaths.underlay import Builder
from netlab.model import DOCKER_BRIDGE_CIDR, Node, Topology
from netlab.plan import AddAddress, AddBridge, AddRoute, Host, LinkUp, LoadIptables, SetSysctl

BRIDGE = "docker0"
ENGINE_VERSION = versions.component("Docker Engine").version  # whose rules and behaviour netlab reproduces


def build(topology: Topology, b: Builder) -> None:
    for node in topology.nodes:
        _host(topology, b, node)


def container_ip(index: int) -> ipaddress.IPv4Address:
    return DOCKER_BRIDGE_CIDR.network_address + 2 + index


def _host(topology: Topology, b: Builder, node: Node) -> None:
    mtu = topology.network.mtu
    proxy = topology.network.userland_proxy
    host_ns = b.ns(node.name)
    gateway = DOCKER_BRIDGE_CIDR.network_address + 1
    prefix = DOCKER_BRIDGE_CIDR.prefixlen
    b.add(
        AddBridge(host_ns, BRIDGE, mtu, mac=names.mac(node.name, BRIDGE, prefix="02:42")),
        AddAddress(host_ns, BRIDGE, ipaddress.IPv4Interface(f"{gateway}/{prefix}")),
        LinkUp(host_ns, BRIDGE),
    )
    if not proxy:  # setupLoopbackAddressesRouting: 127.0.0.1 -> DNAT -> out docker0
        b.add(SetSysctl(host_ns, f"net/ipv4/conf/{BRIDGE}/route_localnet", "1"))
    for index, pod in enumerate(node.pods):
        ip = container_ip(index)
        ns = b.namespace(pod.name, "pod")
        veth = names.docker_veth(node.name, pod.name)
        b.veth(host_ns, veth, ns, "eth0", mtu, peer_mac=names.docker_mac(str(ip)), master=BRIDGE, hairpin=not proxy)
        b.add(
            AddAddress(ns, "eth0", ipaddress.IPv4Interface(f"{ip}/{prefix}")),
            AddRoute(ns, None, gateway=gateway),
        )
        b.hosts.append(Host(pod.name, "pod", ns, ip, node=node.name))
    b.add(LoadIptables(host_ns, rules(node, proxy), why=f"dockerd {ENGINE_VERSION}: raw, filter and nat tables"))


def published(node: Node) -> list[tuple[ipaddress.IPv4Address, str, int, int, str]]:
    """(container address, container name, host port, container port, protocol) per published port."""
    return [
        (container_ip(i), pod.name, port.host_port, port.container_port, port.protocol)
        for i, pod in enumerate(node.pods)
        for port in pod.ports
    ]


def rules(node: Node, userland_proxy: bool = True) -> str:
    """The raw, filter and nat tables dockerd 28.5.2 writes for this host, in iptables-save
    format (chains declared, then rules in the order iptables-save lists them)."""
    ports = published(node)
    br = BRIDGE
    raw = ["*raw"]
    # endpoint.go filterDirectAccess: one per container
    raw += [f"-A PREROUTING -d {container_ip(i)}/32 ! -i {br} -j DROP" for i in range(len(node.pods))]
    raw.append("COMMIT")

    chains = ["DOCKER", "DOCKER-BRIDGE", "DOCKER-CT", "DOCKER-FORWARD", "DOCKER-ISOLATION-STAGE-1",
              "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER"]
    filt = ["*filter", ":FORWARD DROP [0:0]"]  # iptabler.go FilterForwardDrop
    filt += [f":{chain} - [0:0]" for chain in chains]
    filt += [
        "-A FORWARD -j DOCKER-USER",  # firewall_linux.go setupUserChain (inserted last, so first)
        "-A FORWARD -j DOCKER-FORWARD",  # iptabler.go setupIPChains
    ]
    # port.go setPerPortForwarding, then network.go setDefaultForwardRule
    filt += [
        f"-A DOCKER -d {ip}/32 ! -i {br} -o {br} -p {proto} -m {proto} --dport {cport} -j ACCEPT"
        for ip, _name, _hport, cport, proto in ports
    ]
    filt += [
        f"-A DOCKER ! -i {br} -o {br} -j DROP",
        f"-A DOCKER-BRIDGE -o {br} -j DOCKER",
        f"-A DOCKER-CT -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A DOCKER-FORWARD -j DOCKER-CT",
        "-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1",
        "-A DOCKER-FORWARD -j DOCKER-BRIDGE",
        f"-A DOCKER-FORWARD -i {br} -j ACCEPT",  # network.go: outgoing, icc on
        f"-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2",
        f"-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP",
        "COMMIT",
    ]

    nat = [
        "*nat",
        ":DOCKER - [0:0]",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",  # network.go addNATJumpRules
        "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"
        if userland_proxy else "-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER",
    ]
    if not userland_proxy:  # network.go: "MASQ LOCAL HOST" (127.0.0.1 leaving through docker0)
        nat.append(f"-A POSTROUTING -o {br} -m addrtype --src-type LOCAL -j MASQUERADE")
    nat.append(f"-A POSTROUTING -s {DOCKER_BRIDGE_CIDR} ! -o {br} -j MASQUERADE")
    if not userland_proxy:  # port.go setPerPortNAT: a container reaching itself
        nat += [
            f"-A POSTROUTING -s {ip}/32 -d {ip}/32 -p {proto} -m {proto} --dport {cport} -j MASQUERADE"
            for ip, _name, _hport, cport, proto in ports
        ]
    if userland_proxy:  # network.go "SKIP DNAT": the proxy answers containers
        nat.append(f"-A DOCKER -i {br} -j RETURN")
    skip = f"! -i {br} " if userland_proxy else ""
    nat += [
        f"-A DOCKER {skip}-p {proto} -m {proto} --dport {hport} -j DNAT --to-destination {ip}:{cport}"
        for ip, _name, hport, cport, proto in ports
    ]
    nat.append("COMMIT")
    return "\n".join(raw + filt + nat) + "\n"
