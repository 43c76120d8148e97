"""What a topology's Services will be once ``up`` has run, worked out without building anything:
``netlab plan FILE --services``.

The same functions ``up`` uses, on the pods the plan will create (the ``coredns`` pod ``up``
adds to the first node included): ClusterIPs and NodePorts (:mod:`.allocate`), endpoints,
MetalLB's addresses and leaders (:mod:`.loadbalancer`), ExternalDNS's records
(:mod:`.externaldns`) and, per node, the rules kube-proxy loads (iptables-restore text,
IPVS virtual servers and their nat rules, or the nftables mode's ``nft -f`` transaction). Pure: no root, no kernel.
"""

from __future__ import annotations

import copy

from netlab import names
from netlab.datapaths import make_plan
from netlab.model import Topology, parse_topology
from netlab.model.service import system_services
from netlab.services import externaldns, ipvs, kubeproxy, kubeproxy_nft, loadbalancer
from netlab.services.allocate import allocate
from netlab.services.endpoints import PodInfo, cluster_cidr, endpoints_for
from netlab.services.processes import DNS_POD

DNS_LABELS = {"k8s-app": "kube-dns"}


def _with_dns_pod(topology: Topology, source: str) -> Topology:
    if any(p.name == DNS_POD for _n, p in topology.pods()):
        return topology
    data = copy.deepcopy(topology.model_dump(mode="json", by_alias=True))
    data["nodes"][0].setdefault("pods", []).append({"name": DNS_POD, "labels": DNS_LABELS})
    return parse_topology(data, source)


def render(topology: Topology, source: str = "<topology>") -> str:
    """The Services section ``netlab plan --services`` prints (shell comments and commands)."""
    if not topology.services:
        return "# no services: in this topology (`netlab apply` can add them to the running lab)\n"
    topo = _with_dns_pod(topology, source)
    plan = make_plan(topo, source)
    namespaces = {p.name: ("kube-system" if p.name == DNS_POD else "default") for _n, p in topo.pods()}
    pods = [
        PodInfo(h.name, namespaces.get(h.name, "default"), dict(next(p.labels for _n, p in topo.pods() if p.name == h.name)),
                str(h.ip) if h.ip else None, h.node, h.ns, h.host_network)
        for h in plan.hosts if h.kind == "pod"
    ]
    api = f"{topo.node_ip(topo.nodes[0])}:6443"
    services = allocate(system_services(api) + list(topo.services), topo.network.service_cidr)
    endpoints = endpoints_for(services, pods)
    nodes = [n.name for n in topo.nodes]
    assignments = loadbalancer.assign(topo, services, {})
    loadbalancer.elect(assignments, services, nodes, endpoints)
    ingress = loadbalancer.ingress(assignments)
    mode = topo.network.proxy_mode
    out = [f"# Services of lab {topo.name!r} as `up` makes them (kube-proxy {mode}; ClusterIPs and NodePorts as allocated)"]
    for svc in services:
        ports = " ".join(f"{p.port}" + (f":{p.node_port}" if p.node_port else "") + f"/{p.protocol}" for p in svc.ports)
        external = ""
        if svc.type == "LoadBalancer":
            external = f" external-ip {ingress[svc.key][0]}" if svc.key in ingress else " external-ip <pending>"
        backends = ", ".join(f"{b.ip}({b.pod})" if b.pod else b.ip for b in endpoints.get(svc.key, [])) or "none"
        policy = f" ({svc.external_traffic_policy})" if svc.type in ("NodePort", "LoadBalancer") else ""
        out.append(f"#   {svc.key}: {svc.type}{policy} cluster-ip {svc.cluster_ip or '-'}{external} ports {ports or '-'}; endpoints {backends}")
    out += _load_balancers(topo, assignments, services)
    out += _dns(topo, services, ingress, endpoints)
    cidr = cluster_cidr(topo)
    for node in topo.nodes:
        ns = names.namespace(topo.name, node.name)
        node_ip = str(topo.node_ip(node))
        out.append(f"# kube-proxy on {node.name}")
        if mode == "ipvs":
            addresses, servers = ipvs.desired(node.name, node_ip, services, endpoints, topo.network.ipvs_scheduler, ingress)
            out.append(f"#   {ipvs.DEVICE} holds {', '.join(addresses)}; IPVS table (ipvsadm -Ln):")
            out += [f"#   {line}" for vs in servers for line in vs.render().splitlines()]
            rules = ipvs.nat_rules(services, cidr, set(), ingress, set(), node_ip)
        elif mode == "nftables":
            script = kubeproxy_nft.ruleset(node.name, services, endpoints, cidr, str(topo.network.service_cidr), node_ip, "", ingress)
            out.append(f"ip netns exec {ns} nft -f - <<'EOF'")
            out += script.rstrip("\n").splitlines()
            out.append("EOF")
            continue
        else:
            rules = kubeproxy.ruleset(node.name, services, endpoints, cidr, "", ingress, node_ip)
        out.append(f"ip netns exec {ns} iptables-restore --noflush <<'EOF'")
        out += rules.rstrip("\n").splitlines()
        out.append("EOF")
    return "\n".join(out) + "\n"


def _load_balancers(topo: Topology, assignments: dict[str, loadbalancer.Assignment], services: list) -> list[str]:  # type: ignore[type-arg]
    if not assignments:
        return []
    pool = topo.load_balancer_pool()
    where = f"{pool[0]}-{pool[-1]}" if pool else "empty"
    out = [f"# MetalLB layer 2: pool {loadbalancer.POOL_NAME!r} {where} ({len(pool)} addresses); one speaker per node answers ARP"]
    policy = {s.key: s.external_traffic_policy for s in services}
    for key, a in sorted(assignments.items()):
        if a.ip is None:
            out.append(f"#   {key}: <pending>: {a.pending}")
        elif a.leader is None:
            out.append(f"#   {a.ip} {key}: no leader ({policy[key]}: no node has a ready endpoint): nobody answers ARP for it")
        else:
            why = "nodes with a ready endpoint" if policy[key] == "Local" else "every node"
            out.append(f"#   {a.ip} {key}: leader {a.leader} (candidates by sha256(node#ip): {', '.join(a.candidates)}; {policy[key]}: {why})")
    return out


def _dns(topo: Topology, services: list, ingress: dict[str, list[str]], endpoints: dict) -> list[str]:  # type: ignore[type-arg]
    node_ips = {n.name: str(topo.node_ip(n)) for n in topo.nodes}
    wanted, notes = externaldns.service_endpoints(services, ingress, node_ips, endpoints)
    if not wanted and not notes:
        return []
    config = topo.external_dns
    inet = topo.network.internet_host
    if inet is None:
        return ["# ExternalDNS: no outside world (network.internet): nothing is published"]
    published = externaldns.plan(wanted, config.domain_filter, config.txt_owner_id, config.txt_prefix)
    out = [f"# ExternalDNS (owner {config.txt_owner_id!r}): zones {', '.join(config.domain_filter)} served by the internet host {inet}:53"]
    out += [f"#   {r['name']} {r['ttl']} IN {r['type']} {r['value']}" for r in published.records]
    out += [f"#   note: {n}" for n in notes + published.skipped]
    return out
