"""kube-proxy's IPVS mode: what each node's IPVS table and nat rules should be, and syncing them.

What kube-proxy does with ``--proxy-mode=ipvs``, per node:

- a dummy device ``kube-ipvs0`` (left DOWN) holds every ClusterIP as a /32, so the kernel
  treats service addresses as local and IPVS sees the packets in LOCAL_IN;
- one IPVS virtual server per ClusterIP:port (and per node address:NodePort), scheduler
  ``rr`` unless configured (rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq), persistence
  (``-p <timeout>``) for sessionAffinity ClientIP; real servers are the endpoints, NAT
  forwarding ("masquerading" in IPVS words); externalTrafficPolicy Local: only this
  node's endpoints behind the NodePort (all of them when it has none, see below);
- iptables only for what IPVS cannot do: KUBE-MARK-MASQ / KUBE-POSTROUTING masquerade for
  traffic from outside the pod network (kube-proxy matches ipsets; netlab writes one rule
  per service, same effect), and ``net.ipv4.vs.conntrack=1`` so NAT and IPVS agree;
- hairpin: when IPVS sends a pod's connection to its own Service back to that pod, the
  reply would come from the pod to itself and never reach the socket that asked. kube-proxy
  keeps the real ipset ``KUBE-LOOP-BACK`` (``hash:ip,port,ip``, one entry
  ``<ep IP>,<proto>:<port>,<ep IP>`` per endpoint on this node) and masquerades what matches
  it as ``dst,dst,src`` first thing in KUBE-POSTROUTING (pkg/proxy/ipvs/proxier.go as of v1.33:
  ``ipsetWithIptablesChain``, ``writeIptablesRules``, "Handle traffic that loops back to the
  originator with SNAT"); netlab does the same, over netlink (:mod:`netlab.kernel.ipset`);
- LoadBalancer ingress IPs (pkg/proxy/ipvs/proxier.go, "Capture load-balancer ingress"): each
  is bound to ``kube-ipvs0`` on every node and gets a virtual server per port; kube-proxy's
  strictARP (``arp_ignore=1``, ``arp_announce=2``, which MetalLB requires in IPVS mode) keeps
  the nodes from answering ARP for it, so only the MetalLB speaker of the leader does. nat
  ``KUBE-SERVICES`` sends LB IP:port to ``KUBE-LOAD-BALANCER``, which returns for
  externalTrafficPolicy Local (ipset KUBE-LOAD-BALANCER-LOCAL) and marks the rest for
  masquerade; loadBalancerSourceRanges are filter ``KUBE-PROXY-FIREWALL`` ->
  ``KUBE-SOURCE-RANGES-FIREWALL`` (RETURN for the allowed sources, then DROP). The rule
  comments are the ipsets' comments (pkg/proxy/ipvs/ipset.go). With Local and no endpoint on
  the node, a NodePort or LB virtual server gets every endpoint (syncEndpoint, kubernetes PR
  97081: pods may still use it; outside traffic is not masqueraded, so its replies go astray).

Not written (pkg/proxy/ipvs/proxier.go ``writeIptablesRules``, v1.33): filter ``KUBE-FORWARD``
(mark and conntrack ACCEPT), ``KUBE-NODE-PORT`` (healthCheckNodePort ACCEPT), ``KUBE-IPVS-FILTER``
(REJECT of a new connection to a Service address on a port no virtual server has,
kubernetes#72236) and ``KUBE-IPVS-OUT-FILTER``; nat ``KUBE-SERVICES``'s ``-s 127.0.0.0/8 -j
RETURN`` and its ACCEPT of IPVS traffic. The golden file
``tests/unit/services/golden/kubeproxy-ipvs.rules`` is what netlab writes.

``ipvsadm -Ln`` inside a node shows the table. Kernels without IPVS (or the dummy device)
are refused with the way to get them (the VM tier has both). The kernel side (generic
netlink IPVS through pyroute2, the dummy device) is :mod:`netlab.kernel.ipvs`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from netlab import doctor
from netlab.kernel import ipset, iptables
from netlab.kernel import ipvs as kernel_ipvs
from netlab.kernel.ipset import IpPortIp
from netlab.kernel.ipvs import VirtualServer
from netlab.model.service import Service, ServicePort
from netlab.services.kubeproxy import MASQ_MARK, Endpoint, endpoint_address, parse_save, rule_words

DEVICE = "kube-ipvs0"


def require() -> None:
    """Refuse IPVS mode where the kernel has no IPVS, saying how to get it."""
    doctor.require(("ipvs",), "proxyMode ipvs (kube-proxy's IPVS mode)")


LOOP_BACK_SET = "KUBE-LOOP-BACK"
LOOP_BACK_COMMENT = "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"  # kubeLoopBackIPSetComment
LB_COMMENT = "Kubernetes service lb portal"  # ipset KUBE-LOAD-BALANCER
LB_LOCAL_COMMENT = "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"
LB_FW_COMMENT = "Kubernetes service load balancer ip + port for load balancer with sourceRange"
LB_SOURCE_CIDR_COMMENT = "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"
LB_SOURCE_IP_COMMENT = "Kubernetes service load balancer ip + port + source IP for packet filter purpose"


def _lb_ips(svc: Service, ingress: Mapping[str, Sequence[str]] | None) -> list[str]:
    return list((ingress or {}).get(svc.key, ())) if svc.type == "LoadBalancer" else []


def desired(
    node: str, node_ip: str, services: list[Service], backends: dict[str, list[Endpoint]], scheduler: str,
    ingress: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[str], list[VirtualServer]]:
    """The addresses kube-ipvs0 holds and the virtual servers this node has (pure);
    ``ingress``: each LoadBalancer Service's status.loadBalancer.ingress IPs."""
    addresses: list[str] = []
    servers: list[VirtualServer] = []
    for svc in services:
        if svc.type == "ExternalName" or svc.headless or not svc.cluster_ip:
            continue
        addresses.append(svc.cluster_ip)
        lb_ips = _lb_ips(svc, ingress)
        addresses += [ip for ip in lb_ips if ip not in addresses]
        persistence = svc.affinity_timeout or 0
        everyone = backends.get(svc.key, [])
        mine = [b for b in everyone if b.node == node]
        external = mine if svc.external_traffic_policy == "Local" and mine else everyone
        for port in svc.ports:
            reals = tuple(_real(svc, port, b) for b in everyone)
            servers.append(VirtualServer(port.protocol, svc.cluster_ip, port.port, scheduler, persistence, reals))
            for ip in lb_ips:
                servers.append(VirtualServer(port.protocol, ip, port.port, scheduler, persistence, tuple(_real(svc, port, b) for b in external)))
            if svc.has_node_ports and port.node_port:
                servers.append(
                    VirtualServer(port.protocol, node_ip, port.node_port, scheduler, persistence, tuple(_real(svc, port, b) for b in external))
                )
    return addresses, servers


def loop_back_entries(node: str, services: list[Service], backends: dict[str, list[Endpoint]]) -> list[IpPortIp]:
    """KUBE-LOOP-BACK's entries on ``node``: every endpoint on this node, per Service port
    (proxier.go: ``if !ep.IsLocal() { continue }``, entry IP, Port, Protocol, IP2 = the endpoint)."""
    entries = set()
    for svc in services:
        if svc.type == "ExternalName" or svc.headless or not svc.cluster_ip:
            continue
        for port in svc.ports:
            for backend in backends.get(svc.key, []):
                if backend.node != node:
                    continue
                ip, number = _real(svc, port, backend)
                rule_words(svc.port_name(port), ip)
                entries.add(IpPortIp(ip, port.protocol.lower(), number, ip))
    return sorted(entries)


def _real(svc: Service, port: object, backend: Endpoint) -> tuple[str, int]:
    address = endpoint_address(svc, port, backend)  # type: ignore[arg-type]
    ip, number = address.rsplit(":", 1)
    return ip, int(number)


def nat_rules(
    services: list[Service], cluster_cidr: str, saved_chains: set[str], ingress: Mapping[str, Sequence[str]] | None = None,
    saved_filter_chains: set[str] | None = None, node_ip: str = "", loop_back: bool = False,
) -> str:
    """kube-proxy IPVS mode's nat table (masquerade what does not come from a pod) and, for
    loadBalancerSourceRanges, its filter table; ``loop_back``: the node's KUBE-LOOP-BACK set
    has entries (kube-proxy writes the rule only then)."""
    chains = ["KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER"]
    lines = ["*nat"] + [f":{c} - [0:0]" for c in chains]
    if "KUBE-SERVICES" not in saved_chains:
        lines += [
            '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        ]
    if loop_back:
        lines.append(
            f'-A KUBE-POSTROUTING -m comment --comment "{LOOP_BACK_COMMENT}" -m set --match-set {LOOP_BACK_SET} dst,dst,src -j MASQUERADE'
        )
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
    balancers = [(svc, port, ip) for svc in services for ip in _lb_ips(svc, ingress) for port in svc.ports]
    for svc, port, ip in balancers:  # nothing unchecked reaches iptables-restore
        rule_words(svc.port_name(port), ip, *(str(c) for c in svc.load_balancer_source_ranges))
    for _svc, port, ip in balancers:
        proto = port.protocol.lower()
        lines.append(f'-A KUBE-SERVICES -d {ip}/32 -p {proto} -m comment --comment "{LB_COMMENT}" -m {proto} --dport {port.port} -j KUBE-LOAD-BALANCER')
    for svc, port, ip in balancers:
        if svc.external_traffic_policy == "Local":
            proto = port.protocol.lower()
            lines.append(f'-A KUBE-LOAD-BALANCER -d {ip}/32 -p {proto} -m comment --comment "{LB_LOCAL_COMMENT}" -m {proto} --dport {port.port} -j RETURN')
    if balancers:
        lines.append("-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ")
    lines.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT')
    lines.append("COMMIT")
    lines += _filter_rules(balancers, saved_filter_chains, node_ip)
    return "\n".join(lines) + "\n"


def _filter_rules(balancers: list[tuple[Service, ServicePort, str]], saved_chains: set[str] | None, node_ip: str) -> list[str]:
    """loadBalancerSourceRanges in IPVS mode: filter KUBE-PROXY-FIREWALL (from INPUT and
    FORWARD) sends LB IP:port with source ranges to KUBE-SOURCE-RANGES-FIREWALL, which returns
    for the allowed sources (and the LB IP itself when a range holds the node) and drops the rest."""
    lines = ["*filter", ":KUBE-PROXY-FIREWALL - [0:0]", ":KUBE-SOURCE-RANGES-FIREWALL - [0:0]"]
    if "KUBE-PROXY-FIREWALL" not in (saved_chains or set()):
        lines += [
            '-A INPUT -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL',
            '-A FORWARD -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL',
        ]
    guarded = [(svc, port, ip) for svc, port, ip in balancers if svc.load_balancer_source_ranges]
    for _svc, port, ip in guarded:
        proto = port.protocol.lower()
        lines.append(
            f'-A KUBE-PROXY-FIREWALL -d {ip}/32 -p {proto} -m comment --comment "{LB_FW_COMMENT}" -m {proto} --dport {port.port} -j KUBE-SOURCE-RANGES-FIREWALL'
        )
    for svc, port, ip in guarded:
        proto = port.protocol.lower()
        for cidr in svc.load_balancer_source_ranges:
            lines.append(
                f'-A KUBE-SOURCE-RANGES-FIREWALL -s {cidr} -d {ip}/32 -p {proto} -m comment --comment "{LB_SOURCE_CIDR_COMMENT}" '
                f"-m {proto} --dport {port.port} -j RETURN"
            )
        if node_ip and any(ipaddress.IPv4Address(node_ip) in cidr for cidr in svc.load_balancer_source_ranges):
            lines.append(
                f'-A KUBE-SOURCE-RANGES-FIREWALL -s {ip}/32 -d {ip}/32 -p {proto} -m comment --comment "{LB_SOURCE_IP_COMMENT}" '
                f"-m {proto} --dport {port.port} -j RETURN"
            )
    lines += ["-A KUBE-SOURCE-RANGES-FIREWALL -j DROP", "COMMIT"]
    return lines


def sync(
    ns: str, node: str, node_ip: str, services: list[Service], backends: dict[str, list[Endpoint]], cluster_cidr: str, scheduler: str,
    ingress: Mapping[str, Sequence[str]] | None = None,
) -> list[VirtualServer]:
    """Bring ``ns``'s kube-ipvs0 addresses, IPVS table and masquerade rules up to date."""
    addresses, servers = desired(node, node_ip, services, backends, scheduler, ingress)
    kernel_ipvs.set_sysctls(ns)
    kernel_ipvs.set_addresses(ns, DEVICE, addresses)
    kernel_ipvs.set_table(ns, servers)
    loop_back = loop_back_entries(node, services, backends)
    ipset.set_entries(ns, LOOP_BACK_SET, loop_back)  # before the rule that matches it
    chains, _rules = parse_save(iptables.save(ns))
    nat = nat_rules(services, cluster_cidr, chains.get("nat", set()), ingress, chains.get("filter", set()), node_ip, bool(loop_back))
    iptables.restore(ns, nat)
    return servers
