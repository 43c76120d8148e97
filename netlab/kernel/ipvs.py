"""IPVS in a lab's namespace, through pyroute2's generic-netlink IPVS API.

A :class:`VirtualServer` is one IPVS service with its real servers, as ``ipvsadm -Ln``
shows it; :func:`set_table` makes a namespace's table exactly a list of them, touching
only what differs. :func:`set_addresses` keeps the dummy device kube-proxy's IPVS mode
uses (``kube-ipvs0``) holding the service addresses. What the table should be is decided
by :mod:`netlab.services.ipvs`.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from pyroute2 import IPVS, IPRoute, IPVSDest, IPVSService
from pyroute2.netlink.exceptions import NetlinkError

from netlab.errors import EnvironmentProblem
from netlab.kernel import netns

IP_VS_SVC_F_PERSISTENT = 0x1
IP_VS_CONN_F_MASQ = 0
PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP}


@dataclass(frozen=True)
class VirtualServer:
    protocol: str
    addr: str
    port: int
    scheduler: str
    persistence: int  # seconds; 0 = none
    reals: tuple[tuple[str, int], ...]

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.protocol, self.addr, self.port)

    def render(self) -> str:
        """As ``ipvsadm -Ln`` shows it."""
        head = f"{self.protocol}  {self.addr}:{self.port} {self.scheduler}" + (f" persistent {self.persistence}" if self.persistence else "")
        return "\n".join([head] + [f"  -> {ip}:{port}  Masq  1" for ip, port in self.reals])


def _sysctls() -> None:
    for key, value in (("net/ipv4/vs/conntrack", "1"), ("net/ipv4/conf/all/arp_ignore", "1"), ("net/ipv4/conf/all/arp_announce", "2")):
        try:
            netns.write_sysctl(key, value)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot set {key} (is IPVS loaded? modprobe ip_vs): {exc}") from None


def set_sysctls(ns: str) -> None:
    """What kube-proxy's IPVS mode sets: conntrack for IPVS, and no ARP for the held addresses."""
    netns.run_in(ns, _sysctls)


def set_addresses(ns: str, device: str, addresses: list[str]) -> None:
    """The dummy ``device`` (created if missing, left DOWN) holds exactly ``addresses`` as /32s."""
    with IPRoute(use_socket=netns.netlink_socket(ns)) as ipr:
        found = ipr.link_lookup(ifname=device)
        if not found:
            try:
                ipr.link("add", ifname=device, kind="dummy")
            except NetlinkError as exc:
                if exc.code in (errno.EOPNOTSUPP, errno.ENOENT):
                    raise EnvironmentProblem(f"IPVS mode needs the dummy device ({device}): modprobe dummy") from None
                raise
            found = ipr.link_lookup(ifname=device)
        index = found[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=socket.AF_INET)}
        for address in sorted(set(addresses) - have):
            ipr.addr("add", index=index, address=address, prefixlen=32)
        for address in sorted(have - set(addresses)):
            ipr.addr("del", index=index, address=address, prefixlen=32)


def set_table(ns: str, servers: list[VirtualServer]) -> None:
    """The IPVS table of ``ns`` becomes exactly ``servers`` (changed entries replaced)."""
    netns.run_in(ns, lambda: _table(servers))


def _table(servers: list[VirtualServer]) -> None:
    """Runs inside the node's namespace."""
    wanted = {s.key: s for s in servers}
    with IPVS() as ipvs:
        for msg in ipvs.service("dump"):
            existing = IPVSService.from_message(msg)
            proto = {v: k for k, v in PROTOCOLS.items()}.get(existing.get("protocol"), "")
            key = (proto, str(existing.get("addr")), int(existing.get("port", 0)))
            if key not in wanted or _differs(ipvs, existing, wanted[key]):
                ipvs.service("del", service=IPVSService(addr=key[1], port=key[2], protocol=PROTOCOLS.get(proto, 0)))
            else:
                wanted.pop(key)
        for vs in wanted.values():
            flags = {"flags": IP_VS_SVC_F_PERSISTENT if vs.persistence else 0, "mask": 0xFFFF}
            service = IPVSService(
                addr=vs.addr, port=vs.port, protocol=PROTOCOLS[vs.protocol], sched_name=vs.scheduler, timeout=vs.persistence, flags=flags
            )
            ipvs.service("add", service=service)
            for ip, port in vs.reals:
                ipvs.dest("add", service=service, dest=IPVSDest(addr=ip, port=port, fwd_method=IP_VS_CONN_F_MASQ, weight=1))


def _differs(ipvs: object, existing: dict[str, object], vs: VirtualServer) -> bool:
    timeout = existing.get("IPVS_SVC_ATTR_TIMEOUT", existing.get("timeout"))
    if existing.get("sched_name") != vs.scheduler or int(timeout or 0) != vs.persistence:  # type: ignore[call-overload]
        return True
    service = IPVSService(addr=vs.addr, port=vs.port, protocol=PROTOCOLS[vs.protocol])
    reals = set()
    for msg in ipvs.dest("dump", service=service):  # type: ignore[attr-defined]
        dest = IPVSDest.from_message(msg)
        reals.add((str(dest.get("addr")), int(dest.get("port", 0))))
    return reals != set(vs.reals)
