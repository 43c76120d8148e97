"""kube-proxy's nftables mode: the ``ip kube-proxy`` table it writes on one node, as ``nft -f`` text.

kube-proxy v1.33 (``--proxy-mode=nftables``, GA in v1.33) keeps everything in one table of its
own, so ``nft list table ip kube-proxy`` in a netlab node shows what a real node shows::

    nat-prerouting / nat-output -> services: ip daddr . meta l4proto . th dport vmap @service-ips
                                             ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
    @service-ips / @service-nodeports -> goto service-<hash>-<ns>/<name>/<proto>/<port>   (ClusterIP)
                                      -> goto external-<hash>-...   (NodePort, LoadBalancer IP)
    service-...: numgen random mod N vmap { 0 : goto endpoint-<hash>-...__<ip>/<port>, ... }
    endpoint-...: ip saddr <pod> jump mark-for-masquerade; meta l4proto tcp dnat to <pod>:<port>
    nat-postrouting -> masquerading: masquerade fully-random what mark-for-masquerade marked 0x4000
    filter chains (before DNAT): @no-endpoint-services / @no-endpoint-nodeports reject (reject-chain)
      or drop; cluster-ips-check rejects unknown ports of a ClusterIP (@cluster-ips) and drops
      unallocated addresses of the service CIDR; firewall-check -> @firewall-ips ->
      firewall-<hash>-... (loadBalancerSourceRanges: ip saddr != { ranges } drop)
    sessionAffinity ClientIP: a set affinity-<hash>-... per endpoint (flags dynamic,timeout;
      timeout <timeoutSeconds>s), ``update @affinity-... { ip saddr }`` in the endpoint chain and
      ``ip saddr @affinity-... goto endpoint-...`` before the numgen rule.
    externalTrafficPolicy Local: external-... short-circuits pod and node traffic to service-...,
      the rest goes to local-... (this node's endpoints only); a node with none drops it.

Every statement follows kubernetes pkg/proxy/nftables/proxier.go (``setupNFTables``,
``syncProxyRules``, ``writeServiceToEndpointRules``) as of v1.33 (read at commit b0f823e:
filter-prerouting/-input/-forward/-output at priority dstnat-10 and filter-output-post-dnat at
dstnat+10, before v1.34's PR #132456 renamed them), in the spelling knftables sends to
``nft -f``. Chain names are kube-proxy's: base32(sha256(name))[:8] + "-" + name, name being
``ns/svc/proto/portname`` (``__ip/port`` appended for an endpoint). NodePorts answer on the
node's own address only (``nodeport-ips``): the nftables mode's default ``--nodeport-addresses
primary``; localhost NodePorts are not supported in this mode.

One sync is one ``nft -f`` transaction: the table, its base chains, maps and sets are added
(a no-op when present), every chain and map of this sync is flushed and refilled; chains and
affinity sets no longer needed are flushed and deleted. (kube-proxy deletes stale chains a
second later because kernels before 6.2 notice late that a map no longer references them;
netlab needs a newer kernel for nftables anyway and deletes them in the same transaction.)
Affinity sets that stay keep their entries, as on a real node.

Only validated values are rendered (:func:`netlab.services.kubeproxy.rule_words`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netlab.model.service import Service, ServicePort
from netlab.services.kubeproxy import Endpoint, endpoint_address, rule_words

TABLE = "ip kube-proxy"
MASQ_MARK = "0x004000"  # proxier.go: fmt.Sprintf("%#08x", 1 << masqueradeBit), masqueradeBit 14

# (name, type, hook, priority): nftablesBaseChains. proxier.go says DNATPriority+"-10" etc.;
# knftables writes the numbers (dstnat is -100, srcnat 100), which every nft accepts on every hook
BASE_CHAINS = (
    ("filter-prerouting", "filter", "prerouting", "-110"),
    ("filter-input", "filter", "input", "-110"),
    ("filter-forward", "filter", "forward", "-110"),
    ("filter-output", "filter", "output", "-110"),
    ("filter-output-post-dnat", "filter", "output", "-90"),
    ("nat-prerouting", "nat", "prerouting", "-100"),
    ("nat-output", "nat", "output", "-100"),
    ("nat-postrouting", "nat", "postrouting", "100"),
)
# (to, from, match): nftablesJumpChains
JUMP_CHAINS = (
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    ("firewall-check", "filter-prerouting", "ct state new"),
    ("firewall-check", "filter-output", "ct state new"),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-output-post-dnat", "ct state new"),
)
MAPS = ("cluster-ips", "service-ips", "firewall-ips", "no-endpoint-services", "no-endpoint-nodeports", "service-nodeports")


@functools.lru_cache(maxsize=1 << 16)  # a chain's name is asked for several times a sync, and every sync
def _hash_name(name: str) -> str:
    """proxier.go hashAndTruncate (names here stay far below its 240-character limit)."""
    return base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8] + "-" + name


def chain_base(svc: Service, port: ServicePort) -> str:
    """servicePortChainNameBase: ``HASH-ns/name/proto/portname``."""
    return _hash_name(f"{svc.namespace}/{svc.name}/{port.protocol.lower()}/{port.name or ''}")


def endpoint_base(svc: Service, port: ServicePort, address: str) -> str:
    """servicePortEndpointChainNameBase: ``HASH-ns/name/proto/portname__ip/port``."""
    ip, number = address.rsplit(":", 1)
    return _hash_name(f"{svc.namespace}/{svc.name}/{port.protocol.lower()}/{port.name or ''}__{ip}/{number}")


def service_chain(svc: Service, port: ServicePort) -> str:
    return "service-" + chain_base(svc, port)


def endpoint_chain(svc: Service, port: ServicePort, address: str) -> str:
    return "endpoint-" + endpoint_base(svc, port, address)


def affinity_set(svc: Service, port: ServicePort, address: str) -> str:
    return "affinity-" + endpoint_base(svc, port, address)


_CHAIN_LINE = re.compile(r"^\s*chain (\S+) \{")
_SET_LINE = re.compile(r"^\s*set (\S+) \{")


@dataclass(frozen=True)
class Existing:
    """The chains and sets the node's kube-proxy table holds now, from ``nft list chains ip``
    and ``nft list sets ip`` (what knftables' List reads; other tables in the listing, such as
    iptables-nft's, are skipped)."""

    chains: frozenset[str] = frozenset()
    sets: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, listing: str) -> Existing:
        chains: set[str] = set()
        sets: set[str] = set()
        ours = False
        for line in listing.splitlines():
            if line.startswith("table "):
                ours = line.split()[1:3] == TABLE.split()
            elif ours and (m := _CHAIN_LINE.match(line)):
                chains.add(m.group(1))
            elif ours and (m := _SET_LINE.match(line)):
                sets.add(m.group(1))
        return cls(frozenset(chains), frozenset(sets))


@dataclass
class _Tx:
    """Statements of one knftables-style transaction, rendered as ``nft -f`` lines: ``create``
    (ensureChain: add + flush), ``elements`` (container, key, `` comment ... : verdict``) and
    ``body`` (rules, sets). The setup is one of these, and so is each service port."""

    create: list[str] = field(default_factory=list)
    elements: list[tuple[str, str, str]] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)  # ensureChain's createdChains / activeChains
    affinity: list[str] = field(default_factory=list)
    ordered: bool = False  # the setup: every statement in body, in the order written
    _seen: set[str] = field(default_factory=set)

    def ensure_chain(self, name: str) -> str:
        if name not in self._seen:
            self._seen.add(name)
            self.chains.append(name)
            (self.body if self.ordered else self.create).extend([f"add chain {TABLE} {name}", f"flush chain {TABLE} {name}"])
        return name

    def rule(self, chain: str, rule: str, comment: str = "") -> None:
        self.body.append(f"add rule {TABLE} {chain} {rule}" + (f' comment "{comment}"' if comment else ""))

    def element(self, container: str, key: str, value: str = "", comment: str = "") -> None:
        note = f' comment "{comment}"' if comment else ""
        element = (container, key, f"{note}{' : ' + value if value else ''}")
        if self.ordered:
            self.body.append(_add(element))
        else:
            self.elements.append(element)

    def fingerprint(self) -> str:
        """What decides whether a service port's chains must be rewritten (skipServiceUpdate)."""
        return hashlib.sha256("\n".join(self.create + self.body).encode()).hexdigest()[:16]

    def lines(self) -> list[str]:
        """As one full sync writes them: chains, then map elements, then rules."""
        return self.create + [_add(e) for e in self.elements] + self.body


def _add(element: tuple[str, str, str]) -> str:
    container, key, rest = element
    return f"add element {TABLE} {container} {{ {key}{rest} }}"


def _delete(container: str, key: str) -> str:
    return f"delete element {TABLE} {container} {{ {key} }}"


def _setup(tx: _Tx, service_cidr: str, node_ip: str) -> None:
    """setupNFTables: the table, base chains, jump chains, masquerading, sets and maps."""
    tx.body.append(f'add table {TABLE} {{ comment "rules for kube-proxy" ; }}')
    for name, kind, hook, priority in BASE_CHAINS:
        tx.body += [f"add chain {TABLE} {name} {{ type {kind} hook {hook} priority {priority} ; }}", f"flush chain {TABLE} {name}"]
    for to, source, match in JUMP_CHAINS:
        tx.ensure_chain(to)
        tx.rule(source, f"{match} jump {to}".strip())
    for name in ("services", "cluster-ips-check", "masquerading", "mark-for-masquerade"):
        tx.ensure_chain(name)
    tx.rule("mark-for-masquerade", f"mark set mark or {MASQ_MARK}")
    tx.rule("masquerading", f"mark and {MASQ_MARK} == 0 return")
    tx.rule("masquerading", f"mark set mark xor {MASQ_MARK}")
    tx.rule("masquerading", "masquerade fully-random")
    tx.body.append(f'add set {TABLE} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}')
    tx.rule("cluster-ips-check", "ip daddr @cluster-ips reject", "Reject traffic to invalid ports of ClusterIPs")
    tx.rule("cluster-ips-check", f"ip daddr {{ {service_cidr} }} drop", "Drop traffic to unallocated ClusterIPs")
    # --nodeport-addresses primary (the nftables mode's default): only the node's own address
    tx.body += [
        f'add set {TABLE} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}',
        f"flush set {TABLE} nodeport-ips",
    ]
    tx.element("nodeport-ips", node_ip)
    verdict_map = "type ipv4_addr . inet_proto . inet_service : verdict"
    port_map = "type inet_proto . inet_service : verdict"
    tx.body += [
        f'add map {TABLE} no-endpoint-services {{ {verdict_map} ; comment "vmap to drop or reject packets to services with no endpoints" ; }}',
        f'add map {TABLE} no-endpoint-nodeports {{ {port_map} ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }}',
        f'add chain {TABLE} reject-chain {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}',
        f"flush chain {TABLE} reject-chain",
    ]
    tx.rule("reject-chain", "reject")
    tx.rule("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services")
    tx.rule("nodeport-endpoints-check", "ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports")
    tx.body.append(f'add map {TABLE} firewall-ips {{ {verdict_map} ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }}')
    tx.ensure_chain("firewall-check")
    tx.rule("firewall-check", "ip daddr . meta l4proto . th dport vmap @firewall-ips")
    tx.body += [
        f'add map {TABLE} service-ips {{ {verdict_map} ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }}',
        f'add map {TABLE} service-nodeports {{ {port_map} ; comment "NodePort traffic" ; }}',
    ]
    tx.rule("services", "ip daddr . meta l4proto . th dport vmap @service-ips")
    tx.rule("services", "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
    for name in MAPS:  # nftElementStorage.reset: flush, then refill below
        tx.body.append(f"flush {'set' if name == 'cluster-ips' else 'map'} {TABLE} {name}")


Memory = dict[str, Any]  # what the last sync wrote on a node (JSON): kube-proxy's in-memory state


def ruleset(
    node: str,
    services: list[Service],
    endpoints: dict[str, list[Endpoint]],
    cluster_cidr: str,
    service_cidr: str,
    node_ip: str,
    existing: str = "",
    ingress: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The ``nft -f`` transaction kube-proxy's full sync sends on ``node`` (see :func:`sync`)."""
    return sync(node, services, endpoints, cluster_cidr, service_cidr, node_ip, existing, ingress)[0]


def sync(
    node: str,
    services: list[Service],
    endpoints: dict[str, list[Endpoint]],
    cluster_cidr: str,
    service_cidr: str,
    node_ip: str,
    existing: str = "",
    ingress: Mapping[str, Sequence[str]] | None = None,
    memory: Memory | None = None,
) -> tuple[str, Memory]:
    """The ``nft -f`` transaction of one sync on ``node``, and what to remember for the next.

    Without ``memory`` (kube-proxy just started, or its last sync failed) it is a full sync:
    setupNFTables, every chain flushed and rewritten, every map flushed and refilled. With the
    ``memory`` the previous sync returned it is a partial sync, as kube-proxy's after its first:
    only the chains of service ports whose rules changed are rewritten, only map elements that
    are new, changed or gone are added or deleted (nftElementStorage).

    ``endpoints`` maps a service key to its ready backends; ``existing`` is the node's current
    ``nft list chains ip`` and ``nft list sets ip`` (stale service chains and affinity sets are
    deleted); ``ingress`` maps a LoadBalancer Service's key to its status.loadBalancer.ingress IPs.
    """
    rule_words("default/kubernetes", cluster_cidr, service_cidr, node_ip)
    setup = _Tx(ordered=True)
    _setup(setup, service_cidr, node_ip)
    parts: dict[str, _Tx] = {}
    for svc in services:
        if svc.type == "ExternalName" or svc.headless or not svc.cluster_ip:
            continue
        backends = endpoints.get(svc.key, [])
        lb_ips = list((ingress or {}).get(svc.key, ())) if svc.type == "LoadBalancer" else []
        for port in svc.ports:
            part = parts[chain_base(svc, port)] = _Tx()
            _service_port(part, svc, port, backends, node, cluster_cidr, node_ip, lb_ips)
    fingerprints = {base: part.fingerprint() for base, part in parts.items()}
    elements: dict[str, dict[str, str]] = {name: {} for name in MAPS}
    for part in parts.values():
        for container, key, rest in part.elements:
            elements[container][key] = rest
    partial = memory is not None and memory.get("setup") == setup.fingerprint()
    lines: list[str] = []
    if not partial:
        lines += setup.body
        for part in parts.values():
            lines += part.lines()
    else:
        assert memory is not None
        changed = [part for base, part in parts.items() if memory["parts"].get(base) != fingerprints[base]]
        for part in changed:
            lines += part.create
        for container, wanted in elements.items():
            had: dict[str, str] = memory["elements"].get(container, {})
            lines += [_delete(container, key) for key, rest in had.items() if wanted.get(key, None) != rest]
            lines += [_add((container, key, rest)) for key, rest in wanted.items() if had.get(key) != rest]
        for part in changed:
            lines += part.body
    active = {c for part in parts.values() for c in part.chains}
    affinity = {a for part in parts.values() for a in part.affinity}
    now = Existing.parse(existing)
    stale_chains = sorted(c for c in now.chains if "/" in c and c not in active)  # isServiceChainName
    stale_sets = sorted(s for s in now.sets if s.startswith("affinity-") and s not in affinity)
    lines += [f"flush chain {TABLE} {c}" for c in stale_chains]
    lines += [f"delete set {TABLE} {s}" for s in stale_sets]
    lines += [f"delete chain {TABLE} {c}" for c in stale_chains]
    remembered: Memory = {"setup": setup.fingerprint(), "parts": fingerprints, "elements": elements}
    return "\n".join(lines) + ("\n" if lines else ""), remembered


def _service_port(
    tx: _Tx, svc: Service, port: ServicePort, backends: list[Endpoint], node: str, cluster_cidr: str, node_ip: str, lb_ips: list[str]
) -> None:
    addresses = [endpoint_address(svc, port, b) for b in backends]
    name = rule_words(svc.port_name(port), str(svc.cluster_ip), *addresses, *lb_ips, *(str(c) for c in svc.load_balancer_source_ranges))
    proto = port.protocol.lower()
    local = [b for b in backends if b.node == node]
    external_local = svc.external_traffic_policy == "Local"
    has_endpoints = bool(backends)
    has_external = has_endpoints and (not external_local or bool(local))
    external_access = svc.has_node_ports or bool(lb_ips)
    base = chain_base(svc, port)
    cluster_chain, local_chain, external_chain, fw_chain = (f"{p}-{base}" for p in ("service", "local", "external", "firewall"))

    reachable = backends  # allLocallyReachableEndpoints: internalTrafficPolicy is Cluster, so all of them
    for b in reachable:
        tx.ensure_chain(endpoint_chain(svc, port, endpoint_address(svc, port, b)))
        if svc.affinity_timeout:
            tx.affinity.append(affinity_set(svc, port, endpoint_address(svc, port, b)))
    if has_endpoints:
        tx.ensure_chain(cluster_chain)
    uses_local = external_local and bool(local) and external_access
    if uses_local:
        tx.ensure_chain(local_chain)
    uses_external = has_endpoints and external_access
    if uses_external:
        tx.ensure_chain(external_chain)
    external_verdict = "goto reject-chain" if not has_endpoints else "drop"
    key = f"{svc.cluster_ip} . {proto} . {port.port}"
    tx.element("cluster-ips", str(svc.cluster_ip))
    if has_endpoints:
        tx.element("service-ips", key, f"goto {cluster_chain}")
    else:
        tx.element("no-endpoint-services", key, "goto reject-chain", name)
    uses_fw = bool(lb_ips) and bool(svc.load_balancer_source_ranges)
    if uses_fw:
        tx.ensure_chain(fw_chain)
    for ip in lb_ips:  # "Capture load-balancer ingress"
        if has_endpoints:
            tx.element("service-ips", f"{ip} . {proto} . {port.port}", f"goto {external_chain}")
        if uses_fw:
            tx.element("firewall-ips", f"{ip} . {proto} . {port.port}", f"goto {fw_chain}")
    if not has_external:
        for ip in lb_ips:
            tx.element("no-endpoint-services", f"{ip} . {proto} . {port.port}", external_verdict, name)
    if svc.has_node_ports and port.node_port:  # "Capture nodeports"
        if has_endpoints:
            tx.element("service-nodeports", f"{proto} . {port.node_port}", f"goto {external_chain}")
        if not has_external:
            tx.element("no-endpoint-nodeports", f"{proto} . {port.node_port}", external_verdict, name)

    if has_endpoints:  # internal traffic: masquerade what does not come from a pod
        tx.rule(cluster_chain, f"ip daddr {svc.cluster_ip} {proto} dport {port.port} ip saddr != {cluster_cidr} jump mark-for-masquerade")
    if uses_external:
        if not external_local:
            tx.rule(external_chain, "jump mark-for-masquerade")
        else:
            tx.rule(external_chain, f"ip saddr {cluster_cidr} goto {cluster_chain}", "short-circuit pod traffic")
            tx.rule(external_chain, "fib saddr type local jump mark-for-masquerade", "masquerade local traffic")
            tx.rule(external_chain, f"fib saddr type local goto {cluster_chain}", "short-circuit local traffic")
        if has_external:
            tx.rule(external_chain, f"goto {local_chain if external_local else cluster_chain}")
    if uses_fw:
        sources = [str(c) for c in svc.load_balancer_source_ranges]
        if any(ipaddress.IPv4Address(node_ip) in c for c in svc.load_balancer_source_ranges):
            sources += lb_ips  # "For VIP-like LBs, the VIP is often added as a local address"
        tx.rule(fw_chain, f"ip saddr != {{ {', '.join(sources)} }} drop")
    if svc.affinity_timeout:
        for b in reachable:
            tx.body.append(
                f"add set {TABLE} {affinity_set(svc, port, endpoint_address(svc, port, b))} "
                f"{{ type ipv4_addr ; flags dynamic,timeout ; timeout {svc.affinity_timeout}s ; }}"
            )
    if has_endpoints:
        _to_endpoints(tx, svc, port, cluster_chain, backends)
    if uses_local:
        _to_endpoints(tx, svc, port, local_chain, local)
    for b in reachable:
        address = endpoint_address(svc, port, b)
        chain = endpoint_chain(svc, port, address)
        tx.rule(chain, f"ip saddr {address.rsplit(':', 1)[0]} jump mark-for-masquerade")
        if svc.affinity_timeout:
            tx.rule(chain, f"update @{affinity_set(svc, port, address)} {{ ip saddr }}")
        tx.rule(chain, f"meta l4proto {proto} dnat to {address}")


def _to_endpoints(tx: _Tx, svc: Service, port: ServicePort, chain: str, backends: list[Endpoint]) -> None:
    """writeServiceToEndpointRules: affinity lookups first, then one numgen verdict map."""
    chains = [endpoint_chain(svc, port, endpoint_address(svc, port, b)) for b in backends]
    if svc.affinity_timeout:
        for b, target in zip(backends, chains, strict=True):
            tx.rule(chain, f"ip saddr @{affinity_set(svc, port, endpoint_address(svc, port, b))} goto {target}")
    elements = ", ".join(f"{i} : goto {target}" for i, target in enumerate(chains))
    tx.rule(chain, f"numgen random mod {len(chains)} vmap {{ {elements} }}")
