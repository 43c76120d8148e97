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
from netlab.model.ingress import NGINX_CONTROLLER
from netlab.model.service import Service, system_services
from netlab.services import externaldns, ingress, ingress_apply, ipvs, kubeproxy, kubeproxy_nft, loadbalancer, nginx, pods
from netlab.services.allocate import allocate
from netlab.services.endpoints import PodInfo, cluster_cidr, endpoints_for
from netlab.services.kubeproxy import Endpoint
from netlab.services.processes import DNS_POD

DNS_LABELS = {"k8s-app": "kube-dns"}


def _with_dns_pod(topology: Topology, source: str) -> Topology:
    if any(p.name == DNS_POD for _n, p in topology.pods()):
        return topology
    data = copy.deepcopy(topology.model_dump(mode="json", by_alias=True))
    data["nodes"][0].setdefault("pods", []).append({"name": DNS_POD, "labels": DNS_LABELS})
    return parse_topology(data, source)


def _with_controller_pod(topology: Topology, source: str) -> tuple[Topology, str, str]:
    """The topology with the ingress-nginx controller pod ``up`` adds after the DNS pod (on
    ``ingressController.node``, else where the scheduler puts it); its name and node."""
    taken = {p.name for _n, p in topology.pods()} | {n.name for n in topology.nodes}
    name = ingress_apply.controller_pod_name(taken)
    node = topology.ingress_controller.node or pods.place(pods.rooms_of(topology), [None])[0]
    data = copy.deepcopy(topology.model_dump(mode="json", by_alias=True))
    where = next(n for n in data["nodes"] if n["name"] == node)
    where.setdefault("pods", []).append({"name": name, "labels": dict(ingress.LABELS)})
    return parse_topology(data, source), name, node


def render(topology: Topology, source: str = "<topology>") -> str:
    """The Services section ``netlab plan --services`` prints (shell comments and commands)."""
    controller = topology.ingress_controller.enabled is True  # installed at up (IngressPhase)
    if not topology.services and not controller:
        return "# no services: in this topology (`netlab apply` can add them to the running lab)\n"
    topo = _with_dns_pod(topology, source)
    namespaces = {p.name: ("kube-system" if p.name == DNS_POD else "default") for _n, p in topo.pods()}
    extra: list[Service] = []
    if controller:
        topo, pod, _node = _with_controller_pod(topo, source)
        namespaces[pod] = ingress.NAMESPACE
        extra.append(ingress_apply.controller_service(topo.ingress_controller))
    plan = make_plan(topo, source)
    specs = {p.name: p for _n, p in topo.pods()}
    running = [
        PodInfo(h.name, namespaces.get(h.name, "default"), dict(specs[h.name].labels),
                str(h.ip) if h.ip else None, h.node, h.ns, h.host_network, (), specs[h.name].hostname, specs[h.name].subdomain)
        for h in plan.hosts if h.kind == "pod"
    ]
    api = f"{topo.node_ip(topo.nodes[0])}:6443"
    services = allocate(system_services(api) + list(topo.services) + extra, topo.network.service_cidr)
    endpoints = endpoints_for(services, running)
    nodes = [n.name for n in topo.nodes]
    assignments = loadbalancer.assign(topo, services, {})
    loadbalancer.elect(assignments, services, nodes, endpoints)
    lb_ips = loadbalancer.ingress(assignments)
    mode = topo.network.proxy_mode
    out = [f"# Services of lab {topo.name!r} as `up` makes them (kube-proxy {mode}; ClusterIPs and NodePorts as allocated)"]
    for svc in services:
        ports = " ".join(f"{p.port}" + (f":{p.node_port}" if p.node_port else "") + f"/{p.protocol}" for p in svc.ports)
        external = ""
        if svc.type == "LoadBalancer":
            external = f" external-ip {lb_ips[svc.key][0]}" if svc.key in lb_ips else " external-ip <pending>"
        backends = ", ".join(f"{b.ip}({b.pod})" if b.pod else b.ip for b in endpoints.get(svc.key, [])) or "none"
        policy = f" ({svc.external_traffic_policy})" if svc.type in ("NodePort", "LoadBalancer") else ""
        out.append(f"#   {svc.key}: {svc.type}{policy} cluster-ip {svc.cluster_ip or '-'}{external} ports {ports or '-'}; endpoints {backends}")
    out += _load_balancers(topo, assignments, services)
    out += _dns(topo, services, lb_ips, endpoints)
    if controller or "ingress_controller" in topology.model_fields_set:  # said only where the topology mentions it
        out += _ingress_controller(topo, services, endpoints, lb_ips, running)
    cidr = cluster_cidr(topo)
    for node in topo.nodes:
        ns = names.namespace(topo.name, node.name)
        node_ip = str(topo.node_ip(node))
        out.append(f"# kube-proxy on {node.name}")
        if mode == "ipvs":
            addresses, servers = ipvs.desired(node.name, node_ip, services, endpoints, topo.network.ipvs_scheduler, lb_ips)
            out.append(f"#   {ipvs.DEVICE} holds {', '.join(addresses)}; IPVS table (ipvsadm -Ln):")
            out += [f"#   {line}" for vs in servers for line in vs.render().splitlines()]
            loop_back = ipvs.loop_back_entries(node.name, services, endpoints)
            out.append(f"#   ipset {ipvs.LOOP_BACK_SET} (hash:ip,port,ip): {', '.join(e.render() for e in loop_back) or 'empty'}")
            rules = ipvs.nat_rules(services, cidr, set(), lb_ips, set(), node_ip, bool(loop_back))
        elif mode == "nftables":
            script = kubeproxy_nft.ruleset(node.name, services, endpoints, cidr, str(topo.network.service_cidr), node_ip, "", lb_ips)
            out.append(f"ip netns exec {ns} nft -f - <<'EOF'")
            out += script.rstrip("\n").splitlines()
            out.append("EOF")
            continue
        else:
            rules = kubeproxy.ruleset(node.name, services, endpoints, cidr, "", lb_ips, node_ip)
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


def _ingress_controller(
    topo: Topology, services: list[Service], endpoints: dict[str, list[Endpoint]], lb_ips: dict[str, list[str]], running: list[PodInfo]
) -> list[str]:
    """The ingress-nginx add-on ``up`` installs (``ingressController.enabled: true``): its pod,
    Service and IngressClass, and the nginx.conf its nginx starts with (no Ingress yet)."""
    spec = topo.ingress_controller
    if spec.enabled is not True:
        when = "never (ingressController.enabled: false)" if spec.enabled is False else "with the first Ingress `netlab apply` brings"
        return [f"# ingress-nginx controller: installed {when}; `netlab apply LAB -f FILE --dry-run` prints the nginx.conf of a file's Ingresses"]
    svc = next(s for s in services if s.key == f"{ingress.NAMESPACE}/{ingress.NAME}")
    pod = next(p for p in running if p.namespace == ingress.NAMESPACE and ingress.is_controller(p.labels))
    ports = ",".join(f"{p.port}:{p.node_port}/{p.protocol}" for p in svc.ports)
    external = f", EXTERNAL-IP {lb_ips[svc.key][0] if svc.key in lb_ips else '<pending>'}" if svc.type == "LoadBalancer" else ""
    paths = ingress.paths(topo.name)
    rendered = nginx.render([], services, endpoints, {}, paths, pod.name)
    return [
        "# ingress-nginx controller (ingressController.enabled: true: installed at up, as the ingress-nginx manifests install it):",
        f"#   pod {ingress.NAMESPACE}/{pod.name} on {pod.node} ({pod.ip}) runs nginx; ingressclass nginx ({NGINX_CONTROLLER}, the default class)",
        f"#   service/{ingress.NAME} -n {ingress.NAMESPACE}: {svc.type} cluster-ip {svc.cluster_ip} {ports}{external}, "
        f"externalTrafficPolicy {svc.external_traffic_policy}",
        "#   the nginx.conf it starts with: no Ingress yet, so every request gets the default backend's 404",
        f"cat > {paths.conf} <<'EOF'",
        *rendered.text.rstrip("\n").splitlines(),
        "EOF",
    ]
