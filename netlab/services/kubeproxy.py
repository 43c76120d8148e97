"""kube-proxy's iptables mode: the rules it writes on one node, as iptables-restore text.

The chain structure and names are kube-proxy's own (pkg/proxy/iptables), so what
``iptables -t nat -S`` shows in a netlab node is what a person sees on a real node::

    PREROUTING/OUTPUT -> KUBE-SERVICES -> KUBE-SVC-<hash>  (ClusterIP:port)
                                       -> KUBE-NODEPORTS -> KUBE-EXT-<hash> (NodePort)
    KUBE-SVC-<hash> -> KUBE-SEP-<hash>  one per endpoint, chosen by
                       -m statistic --mode random --probability 1/n, 1/(n-1), ..., (last: always)
    KUBE-SEP-<hash> -> DNAT --to-destination <pod IP>:<targetPort>
    KUBE-MARK-MASQ marks 0x4000; KUBE-POSTROUTING MASQUERADEs marked packets
    externalTrafficPolicy Local: KUBE-EXT-<hash> -> KUBE-SVL-<hash> (this node's endpoints
    only, no masquerade, so the pod sees the client's address); a node with none drops.
    sessionAffinity ClientIP: -m recent --rcheck --seconds <timeout> --reap / --set
    LoadBalancer ingress IPs (status.loadBalancer.ingress, :mod:`.loadbalancer`):
      KUBE-SERVICES -d <LB IP> --dport <port> "<svc> loadbalancer IP" -> KUBE-EXT-<hash>, or with
      loadBalancerSourceRanges -> KUBE-FW-<hash> (-s <range> -> KUBE-EXT-<hash>; what falls
      through is dropped by filter KUBE-PROXY-FIREWALL, which matches only packets still
      addressed to the LB IP, i.e. not DNATed)

Every rule follows kubernetes pkg/proxy/iptables/proxier.go as of v1.33, the Kubernetes release
netlab emulates (:mod:`netlab.versions`) (``syncProxyRules``: ``LoadBalancerVIPs``,
``KUBE-PROXY-FIREWALL`` without ``KUBE-MARK-DROP``, the filter table's ``KUBE-FORWARD`` INVALID
drop and ``KUBE-FIREWALL`` localnet guard, localhost NodePorts on, filter ``KUBE-NODEPORTS``
accepting each healthCheckNodePort; ``iptablesJumpChains`` for the jumps), written in the order
and spelling ``iptables-save`` prints it. It is the form v1.33 writes when it could not create
its nfacct counters (``nfacct.Ensure`` fails: a kernel without ``nfnetlink_acct``); netlab
creates no nfacct objects, so it writes that form on every kernel. Where kube-proxy has the
counters, the INVALID drop gains ``-m nfacct --nfacct-name ct_state_invalid_dropped_pkts`` and each
NodePort a ``-d 127.0.0.0/8 ... -m nfacct --nfacct-name localhost_nps_accepted_pkts`` twin in
nat ``KUBE-NODEPORTS`` (metrics only; the packets go the same way); the full output for a fixed input is the golden file
``tests/unit/services/golden/kubeproxy-iptables.rules``. Chain hashes are kube-proxy's: base32(sha256(servicePortName + protocol))[:16], with the
endpoint ("ip:port") appended for KUBE-SEP. Every sync is one atomic iptables-restore
--noflush: kube-proxy's chains are redeclared (which flushes them), chains no longer needed
are deleted, and the jumps from the built-in chains are written once.

Only validated values are rendered: names are Kubernetes names (the model checks them), and
:func:`rule_words` refuses, before anything is rendered, a ServicePortName or an address that
could close a quoted comment or start a new line of the iptables-restore input.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from netlab.model.service import Service, ServicePort

MASQ_MARK = "0x4000/0x4000"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of a service: a pod (or a static address) and the node it runs on."""

    ip: str
    node: str | None = None
    pod: str | None = None


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def svc_chain(port_name: str, protocol: str) -> str:
    return "KUBE-SVC-" + _hash(port_name + protocol.lower())


def ext_chain(port_name: str, protocol: str) -> str:
    return "KUBE-EXT-" + _hash(port_name + protocol.lower())


def svl_chain(port_name: str, protocol: str) -> str:
    return "KUBE-SVL-" + _hash(port_name + protocol.lower())


def fw_chain(port_name: str, protocol: str) -> str:
    return "KUBE-FW-" + _hash(port_name + protocol.lower())


def sep_chain(port_name: str, protocol: str, endpoint: str) -> str:
    return "KUBE-SEP-" + _hash(port_name + protocol.lower() + endpoint)


def probability(n: int) -> str:
    """kube-proxy's computeProbability: 1/n with ten decimals."""
    return f"{1.0 / n:0.10f}"


def endpoint_address(svc: Service, port: ServicePort, backend: Endpoint) -> str:
    return backend.ip if ":" in backend.ip else f"{backend.ip}:{port.target}"


# what may appear in a rendered rule: a ServicePortName (ns/name[:port]) and IPv4 addresses
_PORT_NAME = re.compile(r"[a-z0-9][-a-z0-9]*/[a-z][-a-z0-9]*(:[a-z0-9][-a-z0-9]*)?")
_ADDRESS = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2}|:[0-9]{1,5})?")


def rule_words(name: str, *addresses: str) -> str:
    """``name`` (a ServicePortName, it goes into quoted comments) if it and every address are
    what a rule may contain; else ValueError. The model validates names and addresses, so this
    is the last line: a value that slipped past it never reaches iptables-restore."""
    if not _PORT_NAME.fullmatch(name):
        raise ValueError(f"refusing to render an iptables rule for service port {name!r}: not a Kubernetes name")
    for address in addresses:
        if not _ADDRESS.fullmatch(address):
            raise ValueError(f"refusing to render an iptables rule with address {address!r} (service port {name})")
    return name


NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL")
FIREWALL_CHAIN = "KUBE-FIREWALL"  # kubelet's, duplicated by kube-proxy for localhost NodePorts
LOCALNET_RULE = (
    f'-A {FIREWALL_CHAIN} ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" '
    "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
)
INVALID_RULE = "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP"
ROUTE_LOCALNET = "net/ipv4/conf/all/route_localnet"  # proxier.go sysctlRouteLocalnet
TCP_BE_LIBERAL = "net/netfilter/nf_conntrack_tcp_be_liberal"  # proxier.go sysctlNFConntrackTCPBeLiberal

# The jumps from the built-in chains, as proxier.go's iptablesJumpChains (and
# iptablesKubeletJumpChains) list them. kube-proxy ensures each with EnsureRule(Prepend, ...),
# i.e. ``-I <chain>`` when missing, so they end up in reverse order above whatever the pod
# network (FLANNEL-FWD, FLANNEL-POSTRTG) appended; kubelet, which starts first, has already put
# its KUBE-FIREWALL jumps there (pkg/kubelet/kubelet_network_linux.go), so those come first.
KUBELET_FILTER_JUMPS = (
    f"-I INPUT -j {FIREWALL_CHAIN}",
    f"-I OUTPUT -j {FIREWALL_CHAIN}",
)
FILTER_JUMPS = (
    '-I INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    '-I FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    '-I INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
    '-I FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
    '-I INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    '-I OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    '-I FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
)
NAT_JUMPS = (
    '-I OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-I POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
)


def _q(text: str) -> str:
    return f'"{text}"' if " " in text or ">" in text else text


class _Table:
    def __init__(self, name: str, fixed: tuple[str, ...]) -> None:
        self.name = name
        self.chains: list[str] = list(fixed)
        self._known = set(fixed)  # membership in constant time: thousands of Services make tens of thousands of chains
        self.rules: list[str] = []

    def chain(self, name: str) -> str:
        if name not in self._known:
            self._known.add(name)
            self.chains.append(name)
        return name

    def add(self, chain: str, *words: str) -> None:
        self.rules.append(" ".join(["-A", chain, *words]))

    def render(self, saved: dict[str, set[str]], jumps: tuple[str, ...], saved_rules: set[str]) -> list[str]:
        lines = [f"*{self.name}"]
        stale = sorted(c for c in saved.get(self.name, set()) if c.startswith("KUBE-") and c not in self._known)
        lines += [f":{c} - [0:0]" for c in self.chains + stale]
        present = {_jump_key(r) for r in saved_rules}
        lines += [j for j in jumps if _jump_key(j) not in present]
        lines += self.rules
        lines += [f"-X {c}" for c in stale]
        lines.append("COMMIT")
        return lines


def _jump_key(rule: str) -> tuple[str, str]:
    """(built-in chain, target) of a rule: a jump counts as present whatever its spelling."""
    words = rule.split()
    return (words[1] if len(words) > 1 else "", words[-1])


def parse_save(text: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Chains and ``-A`` rules per table from ``iptables-save`` output."""
    chains: dict[str, set[str]] = {}
    rules: dict[str, set[str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            chains.setdefault(table, set())
        elif line.startswith(":"):
            chains.setdefault(table, set()).add(line[1:].split()[0])
        elif line.startswith("-A "):
            rules.setdefault(table, set()).add(line.strip())
    return chains, rules


def ruleset(
    node: str,
    services: list[Service],
    endpoints: dict[str, list[Endpoint]],
    cluster_cidr: str,
    saved: str = "",
    ingress: Mapping[str, Sequence[str]] | None = None,
    node_ip: str = "",
    tcp_be_liberal: bool = False,
    localhost_node_ports: bool = True,
) -> str:
    """The filter and nat tables kube-proxy writes on ``node``, in iptables-restore format.

    ``endpoints`` maps a service key (``ns/name``) to its ready backends; ``saved`` is the
    node's current ``iptables-save`` output (to delete stale chains and not repeat jumps);
    ``ingress`` maps a service key to its ``status.loadBalancer.ingress`` IPs; ``node_ip`` is
    this node's address (a source range containing it also lets the node itself in);
    ``tcp_be_liberal``: the node's nf_conntrack_tcp_be_liberal is set (then kube-proxy writes
    no INVALID drop); ``localhost_node_ports``: ``--iptables-localhost-nodeports`` (default
    true: NodePorts answer on 127.0.0.1 too, with route_localnet=1 and KUBE-FIREWALL's guard).
    """
    nat = _Table("nat", NAT_CHAINS)
    filt = _Table("filter", FILTER_CHAINS)
    if localhost_node_ports:  # proxier.go: the anti-martian rule, "issue.k8s.io/90259"
        filt.chain(FIREWALL_CHAIN)
        filt.rules.append(LOCALNET_RULE)
    nat.add("KUBE-MARK-MASQ", "-j MARK --set-xmark", MASQ_MARK)
    nat.add("KUBE-POSTROUTING", "-m mark ! --mark", MASQ_MARK, "-j RETURN")
    nat.add("KUBE-POSTROUTING", "-j MARK --set-xmark 0x4000/0x0")
    nat.add("KUBE-POSTROUTING", '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully')
    node_port_rules: list[tuple[str, ...]] = []
    for svc in services:
        if svc.type == "ExternalName" or svc.headless or not svc.cluster_ip:
            continue
        backends = endpoints.get(svc.key, [])
        lb_ips = list((ingress or {}).get(svc.key, ())) if svc.type == "LoadBalancer" else []
        for port in svc.ports:
            _service_port(nat, filt, svc, port, backends, node, cluster_cidr, node_port_rules, lb_ips, node_ip)
            if svc.needs_health_check_node_port and svc.health_check_node_port:
                # proxier.go "Capture healthCheckNodePorts": accepted whether or not this node has
                # endpoints (the health check server answers 503 where it has none)
                filt.add(
                    "KUBE-NODEPORTS", "-p tcp", f'-m comment --comment "{rule_words(svc.port_name(port))} health check node port"',
                    f"-m tcp --dport {svc.health_check_node_port}", "-j ACCEPT",
                )
    for words in node_port_rules:
        nat.add("KUBE-NODEPORTS", *words)
    local = "-m addrtype --dst-type LOCAL" + ("" if localhost_node_ports else " ! -d 127.0.0.0/8")
    nat.add(
        "KUBE-SERVICES",
        '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"',
        local, "-j KUBE-NODEPORTS",
    )
    # Drop packets conntrack finds INVALID (kubernetes#74839: a spurious out-of-window
    # retransmit would otherwise reach the pod un-DNATed and be answered with a RST), unless
    # the node's conntrack is liberal (v1.29+). Where the kernel has nfacct, v1.33 adds
    # "-m nfacct --nfacct-name ct_state_invalid_dropped_pkts"; this is the form without it.
    if not tcp_be_liberal:
        filt.rules.append(INVALID_RULE)
    filt.add("KUBE-FORWARD", '-m comment --comment "kubernetes forwarding rules" -m mark --mark', MASQ_MARK, "-j ACCEPT")
    filt.add("KUBE-FORWARD", '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT')
    chains, saved_rules = parse_save(saved)
    filter_jumps = (KUBELET_FILTER_JUMPS if localhost_node_ports else ()) + FILTER_JUMPS
    lines = filt.render(chains, filter_jumps, saved_rules.get("filter", set()))
    lines += nat.render(chains, NAT_JUMPS, saved_rules.get("nat", set()))
    return "\n".join(lines) + "\n"


def _service_port(
    nat: _Table,
    filt: _Table,
    svc: Service,
    port: ServicePort,
    backends: list[Endpoint],
    node: str,
    cluster_cidr: str,
    node_port_rules: list[tuple[str, ...]],
    lb_ips: Sequence[str] = (),
    node_ip: str = "",
) -> None:
    addresses = [endpoint_address(svc, port, b) for b in backends]
    name = rule_words(svc.port_name(port), str(svc.cluster_ip), cluster_cidr, *addresses)
    proto = port.protocol.lower()
    match = f"-p {proto}"
    dport = f"-m {proto} --dport {port.port}"
    cip = f"-d {svc.cluster_ip}/32"
    reject = "-j REJECT --reject-with icmp-port-unreachable"
    if not backends:
        filt.add("KUBE-SERVICES", cip, match, f'-m comment --comment "{name} has no endpoints"', dport, reject)
        for ip in lb_ips:  # proxier.go: "Either no endpoints at all (REJECT) ..."
            filt.add("KUBE-EXTERNAL-SERVICES", f"-d {ip}/32", match, f'-m comment --comment "{name} has no endpoints"', dport, reject)
        if svc.has_node_ports:
            filt.add(
                "KUBE-EXTERNAL-SERVICES", match, f'-m comment --comment "{name} has no endpoints"',
                f"-m addrtype --dst-type LOCAL -m {proto} --dport {port.node_port}", reject,
            )
        return
    svc_name = nat.chain(svc_chain(name, port.protocol))
    nat.add("KUBE-SERVICES", cip, match, f'-m comment --comment "{name} cluster IP"', dport, "-j", svc_name)
    nat.add(svc_name, f"! -s {cluster_cidr}", cip, match, f'-m comment --comment "{name} cluster IP"', dport, "-j KUBE-MARK-MASQ")
    seps = []
    for backend in backends:
        address = endpoint_address(svc, port, backend)
        sep = nat.chain(sep_chain(name, port.protocol, address))
        seps.append((sep, address, backend))
        ip = address.rsplit(":", 1)[0]
        nat.add(sep, f"-s {ip}/32", f'-m comment --comment "{name}"', "-j KUBE-MARK-MASQ")
        recent = f"-m recent --set --name {sep} --mask 255.255.255.255 --rsource " if svc.affinity_timeout else ""
        nat.add(sep, match, f'-m comment --comment "{name}"', f"{recent}-m {proto} -j DNAT --to-destination {address}")
    _balance(nat, svc_name, name, svc, seps)
    if not svc.has_node_ports and not lb_ips:
        return
    ext = nat.chain(ext_chain(name, port.protocol))
    local = [s for s in seps if s[2].node == node]
    no_local = svc.external_traffic_policy == "Local" and not local
    _load_balancer_ips(nat, filt, svc, port, lb_ips, ext, no_local, node_ip)
    if svc.has_node_ports:
        node_port_rules.append((match, f'-m comment --comment "{name}"', f"-m {proto} --dport {port.node_port}", "-j", ext))
    if svc.external_traffic_policy == "Cluster":
        nat.add(ext, f'-m comment --comment "masquerade traffic for {name} external destinations"', "-j KUBE-MARK-MASQ")
        nat.add(ext, "-j", svc_name)
        return
    nat.add(ext, f"-s {cluster_cidr}", f'-m comment --comment "pod traffic for {name} external destinations"', "-j", svc_name)
    nat.add(ext, f'-m comment --comment "masquerade LOCAL traffic for {name} external destinations"', "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ")
    nat.add(ext, f'-m comment --comment "route LOCAL traffic for {name} external destinations"', "-m addrtype --src-type LOCAL -j", svc_name)
    if not local:
        if svc.has_node_ports:
            filt.add(
                "KUBE-EXTERNAL-SERVICES", match, f'-m comment --comment "{name} has no local endpoints"',
                f"-m addrtype --dst-type LOCAL -m {proto} --dport {port.node_port}", "-j DROP",
            )
        return
    svl = nat.chain(svl_chain(name, port.protocol))
    nat.add(ext, "-j", svl)
    _balance(nat, svl, name, svc, local)


def _load_balancer_ips(
    nat: _Table, filt: _Table, svc: Service, port: ServicePort, lb_ips: Sequence[str], ext: str, no_local: bool, node_ip: str
) -> None:
    """Capture load-balancer ingress (proxier.go, "Capture load-balancer ingress" and "Set up
    firewall chain"): the service has endpoints here; ``no_local`` is Local with none on this node."""
    if not lb_ips:
        return
    name = rule_words(svc.port_name(port), *lb_ips, *(str(c) for c in svc.load_balancer_source_ranges))
    proto = port.protocol.lower()
    match, dport = f"-p {proto}", f"-m {proto} --dport {port.port}"
    target = ext
    ranges = svc.load_balancer_source_ranges
    if ranges:
        target = nat.chain(fw_chain(name, port.protocol))
        here = f'-m comment --comment "{name} loadbalancer IP"'
        for cidr in ranges:
            nat.add(target, f"-s {cidr}", here, "-j", ext)
        if node_ip and any(ipaddress.IPv4Address(node_ip) in cidr for cidr in ranges):
            for ip in lb_ips:  # "For VIP-like LBs, the VIP is often added as a local address"
                nat.add(target, f"-s {ip}/32", here, "-j", ext)
        nat.add(target, f'-m comment --comment "other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL"')
    for ip in lb_ips:
        nat.add("KUBE-SERVICES", f"-d {ip}/32", match, f'-m comment --comment "{name} loadbalancer IP"', dport, "-j", target)
        if ranges:
            filt.add("KUBE-PROXY-FIREWALL", f"-d {ip}/32", match, f'-m comment --comment "{name} traffic not accepted by {target}"', dport, "-j DROP")
        if no_local:  # "no endpoints for external traffic (DROP anything that didn't get short-circuited by the EXT chain)"
            filt.add("KUBE-EXTERNAL-SERVICES", f"-d {ip}/32", match, f'-m comment --comment "{name} has no local endpoints"', dport, "-j DROP")


def _balance(nat: _Table, chain: str, name: str, svc: Service, seps: list[tuple[str, str, Endpoint]]) -> None:
    if svc.affinity_timeout:
        for sep, address, _b in seps:
            nat.add(
                chain, f'-m comment --comment "{name} -> {address}"',
                f"-m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {svc.affinity_timeout} --reap",
                "-j", sep,
            )
    n = len(seps)
    for i, (sep, address, _b) in enumerate(seps):
        stat = f"-m statistic --mode random --probability {probability(n - i)} " if i < n - 1 else ""
        nat.add(chain, f'-m comment --comment "{name} -> {address}"', f"{stat}-j {sep}")
