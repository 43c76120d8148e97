"""A plan: the ordered kernel operations that build a lab. Pure data, printable.

Each operation renders as the command a person would type for the same effect
(``ip -n ns link add ...``), so ``netlab plan FILE`` doubles as a tutorial. Backends
(:mod:`netlab.kernel.backend`) apply the operations; nothing here touches the kernel.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Union

IPv4Iface = ipaddress.IPv4Interface
IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address


def _ip(ns: str) -> str:
    return f"ip -n {ns}"


@dataclass(frozen=True)
class CreateNamespace:
    ns: str
    role: str  # node | pod | underlay | gateway | internet

    def render(self) -> list[str]:
        return [f"ip netns add {self.ns}", f"{_ip(self.ns)} link set lo up"]


@dataclass(frozen=True)
class AddVeth:
    """A veth pair created with each end directly in its final namespace."""

    ns: str
    name: str
    peer_ns: str
    peer: str
    mtu: int = 1500
    mac: str | None = None
    peer_mac: str | None = None

    def render(self) -> list[str]:
        mac = f" address {self.mac}" if self.mac else ""
        peer_mac = f" address {self.peer_mac}" if self.peer_mac else ""
        return [
            f"{_ip(self.ns)} link add {self.name}{mac} mtu {self.mtu} type veth "
            f"peer name {self.peer}{peer_mac} mtu {self.mtu} netns {self.peer_ns}"
        ]


@dataclass(frozen=True)
class AddBridge:
    ns: str
    name: str
    mtu: int = 1500
    mac: str | None = None

    def render(self) -> list[str]:
        mac = f" address {self.mac}" if self.mac else ""
        return [f"{_ip(self.ns)} link add {self.name}{mac} mtu {self.mtu} type bridge"]


@dataclass(frozen=True)
class AddVxlan:
    ns: str
    name: str
    vni: int
    local: IPv4Addr
    dev: str
    port: int
    mac: str
    mtu: int
    learning: bool = False

    def render(self) -> list[str]:
        learning = "" if self.learning else " nolearning"
        return [
            f"{_ip(self.ns)} link add {self.name} address {self.mac} mtu {self.mtu} type vxlan "
            f"id {self.vni} local {self.local} dev {self.dev} dstport {self.port}{learning}"
        ]


@dataclass(frozen=True)
class SetTunnel:
    """Configure the kernel's fallback IP-in-IP device (``tunl0``), as Calico does."""

    ns: str
    name: str
    mtu: int

    def render(self) -> list[str]:
        return [f"{_ip(self.ns)} link set {self.name} mtu {self.mtu}"]


@dataclass(frozen=True)
class SetMaster:
    """Enslave ``name`` to bridge ``master``; ``hairpin`` also lets the bridge send frames back
    out this port (a pod reaching itself through a Service, as the bridge CNI plugin's
    ``hairpinMode`` does)."""

    ns: str
    name: str
    master: str
    hairpin: bool = False

    def render(self) -> list[str]:
        lines = [f"{_ip(self.ns)} link set {self.name} master {self.master}"]
        if self.hairpin:
            lines.append(f"bridge -n {self.ns} link set dev {self.name} hairpin on")
        return lines


@dataclass(frozen=True)
class AddAddress:
    ns: str
    dev: str
    address: IPv4Iface
    noprefixroute: bool = False  # no connected route in main (AWS secondary ENIs)

    def render(self) -> list[str]:
        flag = " noprefixroute" if self.noprefixroute else ""
        return [f"{_ip(self.ns)} addr add {self.address.with_prefixlen} dev {self.dev}{flag}"]


@dataclass(frozen=True)
class SetMac:
    ns: str
    dev: str
    mac: str

    def render(self) -> list[str]:
        return [f"{_ip(self.ns)} link set {self.dev} address {self.mac}"]


@dataclass(frozen=True)
class LinkUp:
    ns: str
    dev: str

    def render(self) -> list[str]:
        return [f"{_ip(self.ns)} link set {self.dev} up"]


@dataclass(frozen=True)
class AddRoute:
    ns: str
    dst: IPv4Net | None  # None: default route
    gateway: IPv4Addr | None = None
    dev: str | None = None
    onlink: bool = False
    scope_link: bool = False
    table: int | None = None
    local: bool = False  # type local (scope host): deliver to this namespace's own sockets

    def render(self) -> list[str]:
        words = [f"{_ip(self.ns)} route add {'local ' if self.local else ''}{self.dst if self.dst else 'default'}"]
        if self.gateway:
            words.append(f"via {self.gateway}")
        if self.dev:
            words.append(f"dev {self.dev}")
        if self.scope_link:
            words.append("scope link")
        if self.onlink:
            words.append("onlink")
        if self.table is not None:
            words.append(f"table {self.table}")
        return [" ".join(words)]


@dataclass(frozen=True)
class AddRule:
    """A policy-routing rule: ``from <src> lookup <table>`` (or ``to <dst> lookup <table>``)."""

    ns: str
    src: IPv4Net | None
    table: int
    priority: int
    dst: IPv4Net | None = None
    fwmark: int | None = None  # match packets whose mark & fwmask == fwmark
    fwmask: int | None = None

    def render(self) -> list[str]:
        match = (f" from {self.src}" if self.src else "") + (f" to {self.dst}" if self.dst else "")
        if self.fwmark is not None:
            match += f" fwmark {self.fwmark:#x}" + (f"/{self.fwmask:#x}" if self.fwmask is not None else "")
        table = "main" if self.table == 254 else str(self.table)
        return [f"{_ip(self.ns)} rule add{match} lookup {table} priority {self.priority}"]


@dataclass(frozen=True)
class AddNeighbour:
    ns: str
    dev: str
    address: IPv4Addr
    lladdr: str

    def render(self) -> list[str]:
        return [f"{_ip(self.ns)} neigh add {self.address} lladdr {self.lladdr} dev {self.dev} nud permanent"]


@dataclass(frozen=True)
class AddFdb:
    ns: str
    dev: str
    lladdr: str
    dst: IPv4Addr

    def render(self) -> list[str]:
        return [f"bridge -n {self.ns} fdb add {self.lladdr} dev {self.dev} dst {self.dst} self permanent"]


@dataclass(frozen=True)
class SetSysctl:
    ns: str
    key: str  # path under /proc/sys, e.g. net/ipv4/ip_forward
    value: str

    def render(self) -> list[str]:
        dotted = self.key.replace(".", "\0").replace("/", ".").replace("\0", "/")
        return [f"ip netns exec {self.ns} sysctl -qw {dotted}={self.value}"]


@dataclass(frozen=True)
class AddIpset:
    """A ``hash:net`` ipset holding CIDRs, created before the iptables rules that match it."""

    ns: str
    name: str
    entries: tuple[str, ...]

    def render(self) -> list[str]:
        lines = [f"ip netns exec {self.ns} ipset create {self.name} hash:net family inet"]
        return lines + [f"ip netns exec {self.ns} ipset add {self.name} {entry}" for entry in self.entries]


@dataclass(frozen=True)
class LoadIptables:
    """Rules in iptables-save format, loaded atomically with iptables-restore."""

    ns: str
    rules: str
    why: str = ""

    def render(self) -> list[str]:
        lines = [f"ip netns exec {self.ns} iptables-restore --noflush <<'EOF'"]
        lines += self.rules.rstrip("\n").splitlines()
        lines.append("EOF")
        return lines


Operation = Union[
    CreateNamespace, AddVeth, AddBridge, AddVxlan, SetTunnel, SetMaster, AddAddress, SetMac, LinkUp,
    AddRoute, AddRule, AddNeighbour, AddFdb, SetSysctl, AddIpset, LoadIptables,
]


@dataclass(frozen=True)
class Host:
    """Something a person can name in a lab: a node, a pod, the internet host, the gateway.

    Each is a network namespace with an address (hostNetwork pods share their node's);
    ``exec``, ``capture``, ``trace`` and ``check`` take these names. Not to be confused with
    the machine's own (host) namespace, which netlab never touches.
    """

    name: str
    kind: str  # node | pod | internet | gateway | underlay
    ns: str
    ip: IPv4Addr | None = None
    node: str | None = None  # for pods: the node they run on
    iface: str = "eth0"  # the interface that carries `ip`
    host_network: bool = False
    attachment: str = ""  # for pods whose path differs from their node's other pods: how ("ENI eth1")


@dataclass(frozen=True)
class Plan:
    """What building a lab takes, in order, and the hosts it will have."""

    lab: str
    cni: str
    operations: tuple[Operation, ...]
    hosts: tuple[Host, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. pods that cannot start, and why
    requires: tuple[str, ...] = ()  # kernel features (doctor probe names) checked before building

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(op.ns for op in self.operations if isinstance(op, CreateNamespace))

    def render(self) -> str:
        out = [f"# netlab plan for lab {self.lab!r} (cni {self.cni}): {len(self.operations)} operations"]
        for note in self.notes:
            out.append(f"# note: {note}")
        for op in self.operations:
            out.extend(op.render())
        return "\n".join(out) + "\n"

    def __len__(self) -> int:
        return len(self.operations)


def describe(op: Operation) -> str:
    """One line naming an operation, for errors and progress."""
    return op.render()[0]
