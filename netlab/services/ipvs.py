"""kube-proxy's IPVS mode: what each node's IPVS table and nat rules should be, and syncing them.

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
are refused with the way to get them (the VM tier has both). The kernel side (generic
netlink IPVS through pyroute2, the dummy device) is :mod:`netlab.kernel.ipvs`.
"""

from __future__ import annotations

from netlab import doctor
from netlab.kernel import iptables
from netlab.kernel import ipvs as kernel_ipvs
from netlab.kernel.ipvs import VirtualServer
from netlab.model.service import Service
from netlab.services.kubeproxy import MASQ_MARK, Endpoint, endpoint_address, parse_save, rule_words

DEVICE = "kube-ipvs0"


def require() -> None:
    """Refuse IPVS mode where the kernel has no IPVS, saying how to get it."""
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
            name = rule_words(svc.port_name(port), svc.cluster_ip, cluster_cidr)
            lines.append(
                f'-A KUBE-SERVICES ! -s {cluster_cidr} -d {svc.cluster_ip}/32 -p {proto} -m comment --comment "{name} cluster IP" '
                f"-m {proto} --dport {port.port} -j KUBE-MARK-MASQ"
            )
            if svc.has_node_ports and port.node_port and svc.external_traffic_policy == "Cluster":
                lines.append(f'-A KUBE-NODE-PORT -p {proto} -m comment --comment "{name}" -m {proto} --dport {port.node_port} -j KUBE-MARK-MASQ')
    lines.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT')
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def sync(ns: str, node: str, node_ip: str, services: list[Service], backends: dict[str, list[Endpoint]], cluster_cidr: str, scheduler: str) -> list[VirtualServer]:
    """Bring ``ns``'s kube-ipvs0 addresses, IPVS table and masquerade rules up to date."""
    addresses, servers = desired(node, node_ip, services, backends, scheduler)
    kernel_ipvs.set_sysctls(ns)
    kernel_ipvs.set_addresses(ns, DEVICE, addresses)
    kernel_ipvs.set_table(ns, servers)
    chains, _rules = parse_save(iptables.save(ns))
    iptables.restore(ns, nat_rules(services, cluster_cidr, chains.get("nat", set())))
    return servers
