"""ipsets in a lab's namespace, over netlink (pyroute2's ``IPSet``), as kube-proxy's IPVS mode keeps them.

kube-proxy's IPVS mode matches most of its iptables rules against ipsets; netlab models the
one that changes what a user sees: ``KUBE-LOOP-BACK`` (``hash:ip,port,ip``), whose entries
``<endpoint IP>,<proto>:<port>,<endpoint IP>`` let KUBE-POSTROUTING masquerade a pod's
connection to its own Service when IPVS picked the pod itself. :func:`set_entries` makes a
set hold exactly the given entries (created if missing; kube-proxy adds and deletes the
difference, netlab flushes and refills, which ends in the same set). ``ipset list`` inside
a node shows it. Never the host's namespace.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from pyroute2.ipset import IPSet, PortEntry
from pyroute2.netlink.exceptions import NetlinkError

from netlab.errors import EnvironmentProblem
from netlab.kernel import netns

PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
NAMES = {number: name for name, number in PROTOCOLS.items()}


@dataclass(frozen=True, order=True)
class IpPortIp:
    """A ``hash:ip,port,ip`` entry, as ``ipset list`` prints it: ``ip,proto:port,ip2``."""

    ip: str
    protocol: str  # tcp | udp
    port: int
    ip2: str

    def render(self) -> str:
        return f"{self.ip},{self.protocol}:{self.port},{self.ip2}"


def set_entries(ns: str, name: str, entries: list[IpPortIp]) -> None:
    """Namespace ``ns``'s ``hash:ip,port,ip`` set ``name`` holds exactly ``entries``."""

    def inside() -> None:
        with IPSet() as ipset:
            try:  # not exclusive: a set that exists already (same name and type) is kept
                ipset.create(name, stype="hash:ip,port,ip", exclusive=False, hashsize=1024, maxelem=65536)
            except NetlinkError as exc:
                raise EnvironmentProblem(
                    f"cannot create ipset {name} in {ns} ({exc}): the kernel needs ip_set and ip_set_hash_ipportip "
                    "(modprobe ip_set_hash_ipportip), or run in the stock-kernel VM: netlab vm -- <command>"
                ) from None
            ipset.flush(name)
            for entry in sorted(set(entries)):
                port = PortEntry(entry.port, protocol=PROTOCOLS[entry.protocol])
                ipset.add(name, (entry.ip, port, entry.ip2), etype="ip,port,ip")

    netns.run_in(ns, inside)


def entries(ns: str, name: str) -> list[IpPortIp]:
    """What namespace ``ns``'s ``hash:ip,port,ip`` set ``name`` holds (``ipset list``)."""

    def inside() -> list[IpPortIp]:
        out = []
        for data in _members(name):
            ip = data.get_attr("IPSET_ATTR_IP_FROM").get_attr("IPSET_ATTR_IPADDR_IPV4")
            ip2 = data.get_attr("IPSET_ATTR_IP2").get_attr("IPSET_ATTR_IPADDR_IPV4")
            protocol = NAMES.get(data.get_attr("IPSET_ATTR_PROTO"), str(data.get_attr("IPSET_ATTR_PROTO")))
            out.append(IpPortIp(ip, protocol, data.get_attr("IPSET_ATTR_PORT_FROM"), ip2))
        return sorted(out)

    return netns.run_in(ns, inside)


def create_net(ns: str, name: str, entries: tuple[str, ...]) -> None:
    """Create namespace ``ns``'s ``hash:net`` set ``name`` holding the CIDRs ``entries`` (as
    felix creates ``cali40all-ipam-pools`` and ``cali40masq-ipam-pools``). The set must not
    exist yet: a plan creates it once, in a namespace it just made."""

    def inside() -> None:
        with IPSet() as ipset:
            try:
                ipset.create(name, stype="hash:net", hashsize=1024, maxelem=1048576)
            except NetlinkError as exc:
                raise EnvironmentProblem(
                    f"cannot create ipset {name} ({exc}): the kernel needs ip_set and ip_set_hash_net "
                    "(modprobe ip_set_hash_net), or run in the stock-kernel VM: netlab vm -- <command>"
                ) from None
            for entry in entries:
                ipset.add(name, entry, etype="net")

    netns.run_in(ns, inside)


def nets(ns: str, name: str) -> list[str]:
    """The CIDRs namespace ``ns``'s ``hash:net`` set ``name`` holds, sorted (``ipset list``)."""

    def inside() -> list[str]:
        out = []
        for data in _members(name):
            ip = data.get_attr("IPSET_ATTR_IP_FROM").get_attr("IPSET_ATTR_IPADDR_IPV4")
            out.append(f"{ip}/{data.get_attr('IPSET_ATTR_CIDR')}")
        return sorted(out)

    return netns.run_in(ns, inside)


def _members(name: str) -> list[Any]:
    """The IPSET_ATTR_DATA of every member of set ``name`` (``ipset list``), in the calling
    thread's namespace."""
    with IPSet() as ipset:
        return [data for message in ipset.list(name)
                for adt in [message.get_attr("IPSET_ATTR_ADT")] if adt is not None
                for data in adt.get_attrs("IPSET_ATTR_DATA")]
