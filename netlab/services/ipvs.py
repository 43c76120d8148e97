"""kube-proxy's IPVS mode, through pyroute2's IPVS (generic netlink) API.

What kube-proxy does with ``--proxy-mode=ipvs``, per node:

- a dummy device ``kube-ipvs0`` (left DOWN) holds every ClusterIP as a /32, so the kernel
  treats service addresses as local and IPVS sees the packets in LOCAL_IN;
- one IPVS virtual server per ClusterIP:port (and per node address:NodePort), scheduler
  ``rr`` unless configured (rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq), persistence
  (``-p <timeout>``) for sessionAffinity ClientIP; real servers are the endpoints, NAT
  forwarding ("masquerading" in IPVS words); externalTrafficPolicy Local: only this
  node's endpoints behind the NodePort;
- iptables only for what IPVS cannot do: KUBE-MARK-MASQ / KUBE-POSTROUTING masquerade for
  traffic from outside the pod network (kube-proxy matches ipsets; netlab writes one rule
  per service, same effect), and ``net.ipv4.vs.conntrack=1`` so NAT and IPVS agree.

``ipvsadm -Ln`` inside a node shows the table. Kernels without IPVS (or the dummy device)
are refused with the way to get them (the VM tier has both).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from netlab.errors import EnvironmentProblem
from netlab.kernel import netns
from netlab.model.service import Service
from netlab.services.kubeproxy import MASQ_MARK, Endpoint, endpoint_address

DEVICE = "kube-ipvs0"
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


def require() -> None:
    """Refuse IPVS mode where the kernel has no IPVS, saying how to get it."""
    from netlab import doctor

    doctor.require(("ipvs",), "proxyMode ipvs (kube-proxy's IPVS mode)")


def desired(node: str, node_ip: str, services: list[Service], backends: dict[str, list[Endpoint]], scheduler: str) -> tuple[list[str], list[VirtualServer]]:
    """The addresses kube-ipvs0 holds and the virtual servers this node has (pure)."""
    addresses: list[str] = []
    servers: list[VirtualServer] = []
    for svc in services:
        if svc.type == "ExternalName" or svc.headless or not svc.cluster_ip:
            continue
        addresses.append(svc.cluster_ip)
        persistence = svc.affinity_timeout or 0
        for port in svc.ports:
            reals = tuple(_real(svc, port, b) for b in backends.get(svc.key, []))
            servers.append(VirtualServer(port.protocol, svc.cluster_ip, port.port, scheduler, persistence, reals))
            if svc.has_node_ports and port.node_port:
                chosen = backends.get(svc.key, [])
                if svc.external_traffic_policy == "Local":
                    chosen = [b for b in chosen if b.node == node]
                servers.append(
                    VirtualServer(port.protocol, node_ip, port.node_port, scheduler, persistence, tuple(_real(svc, port, b) for b in chosen))
                )
    return addresses, servers


def _real(svc: Service, port: object, backend: Endpoint) -> tuple[str, int]:
    address = endpoint_address(svc, port, backend)  # type: ignore[arg-type]
    ip, number = address.rsplit(":", 1)
    return ip, int(number)


def nat_rules(services: list[Service], cluster_cidr: str, saved_chains: set[str]) -> str:
    """kube-proxy IPVS mode's nat table: masquerade what does not come from a pod."""
    chains = ["KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-NODE-PORT"]
    lines = ["*nat"] + [f":{c} - [0:0]" for c in chains]
    if "KUBE-SERVICES" not in saved_chains:
        lines += [
            '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        ]
    lines += [
        f"-A KUBE-MARK-MASQ -j MARK --set-xmark {MASQ_MARK}",
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK} -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ]
    for svc in services:
        if svc.type == "ExternalName" or svc.headless or not svc.cluster_ip:
            continue
        for port in svc.ports:
            proto = port.protocol.lower()
            lines.append(
                f'-A KUBE-SERVICES ! -s {cluster_cidr} -d {svc.cluster_ip}/32 -p {proto} -m comment --comment "{svc.port_name(port)} cluster IP" '
                f"-m {proto} --dport {port.port} -j KUBE-MARK-MASQ"
            )
            if svc.has_node_ports and port.node_port and svc.external_traffic_policy == "Cluster":
                lines.append(f'-A KUBE-NODE-PORT -p {proto} -m comment --comment "{svc.port_name(port)}" -m {proto} --dport {port.node_port} -j KUBE-MARK-MASQ')
    lines.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT')
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def sync(ns: str, node: str, node_ip: str, services: list[Service], backends: dict[str, list[Endpoint]], cluster_cidr: str, scheduler: str) -> list[VirtualServer]:
    """Bring ``ns``'s kube-ipvs0 addresses, IPVS table and masquerade rules up to date."""
    from netlab.kernel.backend import run_iptables_restore
    from netlab.services.cluster import iptables_save
    from netlab.services.kubeproxy import parse_save

    addresses, servers = desired(node, node_ip, services, backends, scheduler)
    netns.run_in(ns, lambda: _sysctls())
    _device(ns, addresses)
    netns.run_in(ns, lambda: _table(servers))
    chains, _rules = parse_save(iptables_save(ns))
    run_iptables_restore(ns, nat_rules(services, cluster_cidr, chains.get("nat", set())))
    return servers


def _sysctls() -> None:
    for key, value in (("net/ipv4/vs/conntrack", "1"), ("net/ipv4/conf/all/arp_ignore", "1"), ("net/ipv4/conf/all/arp_announce", "2")):
        try:
            netns.write_sysctl(key, value)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot set {key} (is IPVS loaded? modprobe ip_vs): {exc}") from None


def _device(ns: str, addresses: list[str]) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute(use_socket=netns.netlink_socket(ns)) as ipr:
        found = ipr.link_lookup(ifname=DEVICE)
        if not found:
            try:
                ipr.link("add", ifname=DEVICE, kind="dummy")
            except NetlinkError as exc:
                if exc.code in (errno.EOPNOTSUPP, errno.ENOENT):
                    raise EnvironmentProblem("IPVS mode needs the dummy device (kube-ipvs0): modprobe dummy") from None
                raise
            found = ipr.link_lookup(ifname=DEVICE)
        index = found[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=socket.AF_INET)}
        for address in sorted(set(addresses) - have):
            ipr.addr("add", index=index, address=address, prefixlen=32)
        for address in sorted(have - set(addresses)):
            ipr.addr("del", index=index, address=address, prefixlen=32)


def _table(servers: list[VirtualServer]) -> None:
    """Runs inside the node's namespace: the IPVS table becomes exactly ``servers``."""
    from pyroute2 import IPVS, IPVSDest, IPVSService

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
    from pyroute2 import IPVSDest, IPVSService

    timeout = existing.get("IPVS_SVC_ATTR_TIMEOUT", existing.get("timeout"))
    if existing.get("sched_name") != vs.scheduler or int(timeout or 0) != vs.persistence:  # type: ignore[call-overload]
        return True
    service = IPVSService(addr=vs.addr, port=vs.port, protocol=PROTOCOLS[vs.protocol])
    reals = set()
    for msg in ipvs.dest("dump", service=service):  # type: ignore[attr-defined]
        dest = IPVSDest.from_message(msg)
        reals.add((str(dest.get("addr")), int(dest.get("port", 0))))
    return reals != set(vs.reals)
