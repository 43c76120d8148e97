"""A running lab's Services: the endpoints controller, kube-proxy and the kubelet in one.

After the datapath is built (:class:`ServicesPhase`, a phase of :func:`netlab.lab.up`), and
whenever Services or pods change (:func:`sync`), it

1. computes each Service's endpoints from the pods whose labels match its selector
   (:mod:`.endpoints`),
2. writes kube-proxy's rules into every node (iptables-restore, IPVS, or one nft transaction),
3. rewrites the cluster DNS records (the ``coredns`` pod in kube-system rereads them),
4. gives every pod ``/etc/netns/<netns>/resolv.conf`` (:mod:`.files`) and runs the hostname
   server in pods that back a Service (:mod:`.processes`),
5. gives LoadBalancer Services an address and a leader node (MetalLB, :mod:`.loadbalancer`),
   whose speaker answers ARP for it, and publishes annotated Services in the internet's DNS
   (ExternalDNS, :mod:`.externaldns`).
6. brings the ingress controller's nginx up to date, if the lab has one (:mod:`.ingress`), and each
   Gateway's nginx (:mod:`.gateway`).

Pods come and go through :mod:`.pods`. Everything it starts runs inside the lab's
namespaces, and every file it writes outside them is journaled, so ``netlab down`` removes
it all. What it remembers is a :class:`~netlab.services.records.ClusterRecord`.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from netlab import doctor, names
from netlab.errors import EnvironmentProblem, UsageError
from netlab.kernel import conntrack, iptables, netns, nft
from netlab.model import Topology, aws_lb
from netlab.model.service import Service, system_services
from netlab.services import externaldns, ipvs, kubeproxy, kubeproxy_nft, loadbalancer, nlb, nlbrun, pods, upstream
from netlab.services.allocate import allocate
from netlab.services.endpoints import cluster_cidr, endpoints_for
from netlab.services.files import (
    write as write_file,
)
from netlab.services.files import (
    write_dns_records,
    write_internet_resolv_conf,
    write_node_resolv_conf,
    write_resolv_conf,
    write_speaker_config,
    write_zones,
)
from netlab.services.gateway import dns_endpoints as gateway_dns
from netlab.services.gateway import sync as sync_gateways
from netlab.services.ingress import dns_endpoints as ingress_dns
from netlab.services.ingress import sync as sync_ingress_controller
from netlab.services.kubeproxy import Endpoint
from netlab.services.loadbalancer import Assignment
from netlab.services.processes import DNS_POD, start_dns, start_external_dns, start_speakers, start_workloads, wait_applied
from netlab.services.records import ClusterRecord, Deployment, pods_of, topology_of
from netlab.services.stale_udp import stale_udp_flows
from netlab.state import LabState, state_dir

BRIDGED_CNIS = ("vxlan", "host-gw")  # pods on cni0
DNS_LABELS = {"k8s-app": "kube-dns"}


class ServicesPhase:
    """Services as a phase of the lab's lifecycle (see :class:`netlab.lab.Phase`)."""

    name = "starting Services (kube-proxy, cluster DNS, workloads)"

    def preflight(self, topology: Topology) -> None:
        require(topology)  # before anything is built
        dns_room(topology)

    def start(self, state: LabState) -> None:
        topo = topology_of(state)
        _bring_up(state, topo)  # preflight has probed the kernel already
        state.notes = [*state.notes, *notes(state, topo)]
        state.save()


def notes(state: LabState, topo: Topology) -> list[str]:
    """What ``up`` says about the topology's Services: annotations without effect, LB addresses pending."""
    out = []
    modelled = (*loadbalancer.MODELLED, *externaldns.MODELLED, *aws_lb.MODELLED)
    for svc in topo.services:
        ignored = sorted(k for k in svc.annotations if k not in modelled)
        if ignored:
            out.append(f"service {svc.key}: ignored annotations (netlab does not model them): {', '.join(ignored)}")
    for key, data in ClusterRecord.load(state).load_balancers.items():
        if data.get("pending"):
            out.append(f"service {key}: EXTERNAL-IP <pending>: {data['pending']}")
    return out


def require(topology: Topology) -> None:
    """Refuse what cannot run Services here: docker0, or IPVS / nftables mode on a kernel without them."""
    if topology.network.cni == "docker0":
        raise UsageError("Services need a Kubernetes pod network (cni vxlan, calico, host-gw or vpc-native), not docker0")
    if topology.network.proxy_mode == "ipvs":
        ipvs.require()
    if topology.network.proxy_mode == "nftables":
        doctor.require(("nftables",), "proxyMode nftables (kube-proxy's nftables mode)")


def dns_room(topology: Topology) -> None:
    """Refuse a cluster whose first node has no room for the cluster DNS pod netlab adds there."""
    if any(pod.name == DNS_POD for _node, pod in topology.pods()):
        return
    node = topology.nodes[0]
    limit = topology.pod_limit(node, 0)
    if not limit.free(node.pods):
        raise UsageError(
            f"{node.name} has no room for the cluster DNS pod netlab runs on the first node ({DNS_POD}): {limit.why}; "
            f"move a pod to another node, or {limit.advice}"
        )


def start(state: LabState) -> None:
    """Turn a running pod network into a cluster with Services (idempotent), e.g. on the
    first ``netlab apply`` to a lab that had none."""
    topo = topology_of(state)
    require(topo)
    _bring_up(state, topo)


def _bring_up(state: LabState, topo: Topology) -> None:
    record = ClusterRecord.load(state)
    if not record.services:
        api = f"{topo.node_ip(topo.nodes[0])}:6443"  # the API server, on the first node's address
        record.services = allocate(system_services(api) + list(topo.services), topo.network.service_cidr)
        record.store(state)
    if not any(p.name == DNS_POD for _n, p in topo.pods()):
        if any(h.name == DNS_POD for h in state.host_objects()):
            raise UsageError(f"a pod or node is already named {DNS_POD!r}: rename it (netlab runs cluster DNS in that pod)")
        pods.add(state, [(topo.nodes[0].name, {"name": DNS_POD, "labels": DNS_LABELS})], namespace="kube-system")
    sync(state)


def sync(state: LabState) -> None:
    """Bring kube-proxy rules, DNS records, resolv.conf files and workloads up to date."""
    topo = topology_of(state)
    record = ClusterRecord.load(state)
    services = record.services
    running = pods_of(state, record, topo)
    endpoints = endpoints_for(services, running)
    cidr = cluster_cidr(topo)
    previous = {k: Assignment.from_json(v) for k, v in record.load_balancers.items()}
    assignments = loadbalancer.assign(topo, services, previous)
    loadbalancer.elect(assignments, services, [n.name for n in topo.nodes], endpoints)
    ingress = loadbalancer.ingress(assignments)
    for node in topo.nodes:
        ns = names.namespace(state.lab, node.name)
        node_ip = str(topo.node_ip(node))
        if topo.network.cni in BRIDGED_CNIS:
            netns.run_in(ns, _bridge_netfilter)
        if topo.network.proxy_mode == "ipvs":
            ipvs.sync(ns, node.name, node_ip, services, endpoints, cidr, topo.network.ipvs_scheduler, ingress)
        elif topo.network.proxy_mode == "nftables":
            sync_nftables(state, ns, node.name, node_ip, services, endpoints, cidr, str(topo.network.service_cidr), ingress)
        else:
            liberal = netns.run_in(ns, _iptables_mode_sysctls)
            saved = iptables.save(ns)
            iptables.restore(ns, kubeproxy.ruleset(node.name, services, endpoints, cidr, saved, ingress, node_ip, tcp_be_liberal=liberal))
        # after the rules, as kube-proxy does: UDP entries still NATed to an endpoint that is gone
        conntrack.delete_udp(ns, stale_udp_flows(conntrack.udp_flows(ns), services, endpoints, ingress))
    write_dns_records(state, services, running, endpoints)
    inet = topo.network.internet_host
    node_resolv = upstream.node_resolv_conf(str(inet) if inet else None)
    for node in topo.nodes:  # the nodes' resolver: the internet's (netlab/services/upstream.py)
        write_node_resolv_conf(state, names.namespace(state.lab, node.name), node_resolv)
    for pod in running:
        if pod.name == DNS_POD:  # dnsPolicy: Default, as kubeadm's coredns Deployment: the node's resolv.conf
            write_node_resolv_conf(state, pod.netns, node_resolv)
        elif not pod.host_network:
            write_resolv_conf(state, pod, topo.network.service_cidr)
    start_dns(state, record, running)
    start_workloads(state, record, services, running)
    _announce(state, record, topo, previous, assignments)
    nlbrun.sync(state, topo, services, endpoints)
    _publish(state, record, topo, services, ingress, endpoints)
    record.store(state)
    sync_ingress_controller(state)  # the ingress controller's upstreams follow the endpoints
    sync_gateways(state)  # so do the Gateways' (NGINX Gateway Fabric)


def sync_nftables(
    state: LabState, ns: str, node: str, node_ip: str, services: list[Service], endpoints: dict[str, list[Endpoint]], cidr: str,
    service_cidr: str, ingress: dict[str, list[str]], full: bool = False,
) -> None:
    """kube-proxy's nftables mode on one node (:mod:`.kubeproxy_nft`): a partial sync after the
    node's first, as kube-proxy does, remembering what it wrote in a journaled file (kube-proxy
    keeps it in memory); a full one on the first sync, with ``full``, or when a partial one fails
    (kube-proxy's needFullSync)."""
    path = nft_memory_path(state.lab)
    try:
        memories: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        memories = {}
    memory = None if full else memories.get(node)
    existing = nft.list_names(ns, "ip")
    script, memories[node] = kubeproxy_nft.sync(node, services, endpoints, cidr, service_cidr, node_ip, existing, ingress, memory)
    try:
        nft.load(ns, script)
    except OSError:
        if memory is None:
            raise
        script, memories[node] = kubeproxy_nft.sync(node, services, endpoints, cidr, service_cidr, node_ip, existing, ingress)
        nft.load(ns, script)
    write_file(state, path, json.dumps(memories))


def nft_memory_path(lab: str) -> Path:
    """What the nftables mode's last sync wrote on each node (not *.json: those are lab records)."""
    return state_dir() / f"{lab}.kube-proxy-nft"


def _announce(state: LabState, record: ClusterRecord, topo: Topology, previous: dict[str, Assignment], now: dict[str, Assignment]) -> None:
    """MetalLB: record the assignments (the Services' status), and tell the speakers who leads
    what; they start with the first address and then follow every change before sync returns."""
    record.load_balancers = {k: a.to_json() for k, a in now.items()}
    announce = loadbalancer.announcements(now)
    if not record.speakers and not announce:
        return
    if record.speakers and announce == loadbalancer.announcements(previous):
        return  # nothing moved: the speakers already announce exactly this
    record.lb_generation += 1
    write_speaker_config(state, record.lb_generation, announce)
    start_speakers(state, record, {n.name: names.namespace(state.lab, n.name) for n in topo.nodes})
    wait_applied(record, record.lb_generation)


def _publish(
    state: LabState, record: ClusterRecord, topo: Topology, services: list[Service], ingress: dict[str, list[str]], endpoints: dict[str, list[Endpoint]]
) -> None:
    """The internet's DNS: the upstream resolver the nodes use (:mod:`.upstream`), with
    ExternalDNS's records for the annotated Services in its authoritative zones."""
    config = topo.external_dns
    inet = topo.network.internet_host
    balancers = nlbrun.balancers_of(state)
    hostnames = {k: [b["dns"]] for k, b in balancers.items() if not b.get("pending")}
    wanted, _notes = _sources(state, topo, services, ingress, endpoints, hostnames)
    if inet is None:
        return  # no outside world: no upstream, nothing to publish to
    published = externaldns.plan(wanted, config.domain_filter, config.txt_owner_id, config.txt_prefix, record.dns_owners)
    record.dns_owners = published.owners
    zones, records = list(config.domain_filter), list(published.records)
    if balancers:  # AWS's own zone for the NLBs' names (what elb.<region>.amazonaws.com answers)
        zones.append(nlb.ZONE)
        records += [{"name": b["dns"], "type": "A", "ttl": 60, "value": b["ip"]} for b in balancers.values() if b.get("ip") and not b.get("pending")]
    if upstream.ZONE not in zones:
        zones.append(upstream.ZONE)
    taken = {str(r["name"]) for r in records}
    static = [r for r in upstream.static_records(str(inet)) if r["name"] not in taken]
    write_zones(state, {"zones": zones, "nameserver": str(inet), "serial": int(time.time()), "records": records, "static": static,
                        "resolver": True})
    internet = names.namespace(state.lab, names.INTERNET)
    write_internet_resolv_conf(state, internet, str(inet))
    start_external_dns(state, record, internet, str(inet))


def _sources(
    state: LabState, topo: Topology, services: list[Service], ingress: dict[str, list[str]], endpoints: dict[str, list[Endpoint]],
    hostnames: dict[str, list[str]],
) -> tuple[list[externaldns.DNSEndpoint], list[str]]:
    """What ExternalDNS's sources want published (``--source=service --source=ingress
    --source=gateway-httproute``), and their notes."""
    node_ips = {n.name: str(topo.node_ip(n)) for n in topo.nodes}
    wanted, notes = externaldns.service_endpoints(services, ingress, node_ips, endpoints, hostnames)
    for more, why in (ingress_dns(state, services, ingress, hostnames), gateway_dns(state, services, endpoints, ingress, hostnames)):
        wanted += more
        notes += why
    return wanted, notes


def _iptables_mode_sysctls() -> bool:
    """In a node's namespace, what kube-proxy's iptables mode sets up at start (proxier.go
    NewProxier): ``route_localnet=1`` so NodePorts answer on 127.0.0.1 (localhost NodePorts,
    on by default), and whether ``nf_conntrack_tcp_be_liberal`` is set (then it writes no
    INVALID drop). Returns the latter."""
    if netns.read_sysctl(kubeproxy.ROUTE_LOCALNET) != "1":
        netns.write_sysctl(kubeproxy.ROUTE_LOCALNET, "1")
    try:
        return netns.read_sysctl(kubeproxy.TCP_BE_LIBERAL) not in ("", "0")
    except FileNotFoundError:  # conntrack not loaded in this namespace yet: the default, 0
        return False


def _bridge_netfilter() -> None:
    """In a node's namespace: bridged pod traffic goes through iptables (and IPVS).

    A client pod and the endpoint it was DNATed to can sit on the same ``cni0``; the reply
    is then bridged, and only br_netfilter lets conntrack undo the DNAT on it (kubeadm
    refuses to install without it for the same reason).
    """
    key = "net/bridge/bridge-nf-call-iptables"
    if not os.path.exists("/proc/sys/" + key) and os.environ.get("NETLAB_IN_VM"):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)  # a throwaway VM kernel
    try:
        if netns.read_sysctl(key) != "1":
            netns.write_sysctl(key, "1")
    except FileNotFoundError:
        raise EnvironmentProblem(
            "Services on a bridged pod network need br_netfilter (replies from a pod on the same cni0 bridge must pass "
            "conntrack): run `modprobe br_netfilter`, as kubeadm requires"
        ) from None


def services_of(state: LabState) -> list[Service]:
    return ClusterRecord.load(state).services


def upsert_services(state: LabState, services: list[Service]) -> list[Service]:
    """Add or replace services (kept ClusterIPs and NodePorts stay), allocating the rest."""
    topo = topology_of(state)
    record = ClusterRecord.load(state)
    existing = record.services
    by_key = {s.key: s for s in existing}
    taken_elsewhere = [s for s in existing if s.key not in {n.key for n in services}]
    for svc in services:
        if svc.cluster_ip and not svc.headless:
            address = ipaddress.IPv4Address(svc.cluster_ip)
            if address not in topo.network.service_cidr:
                raise UsageError(f"service {svc.key}: clusterIP {address} is outside the lab's serviceCIDR {topo.network.service_cidr}")
            owner = next((s.key for s in taken_elsewhere if s.cluster_ip == svc.cluster_ip), None)
            if owner:
                raise UsageError(f"service {svc.key}: clusterIP {address} is already taken by {owner}")
        for port in svc.ports:
            owner = next((s.key for s in taken_elsewhere for p in s.ports if p.node_port and p.node_port == port.node_port and p.protocol == port.protocol), None)
            if owner:
                raise UsageError(f"service {svc.key}: nodePort {port.node_port} is already used by {owner}")
    allocated = allocate(services, topo.network.service_cidr, existing)
    for svc in allocated:
        by_key[svc.key] = svc
    record.services = list(by_key.values())
    record.store(state)
    return allocated


def scale(state: LabState, name: str, replicas: int, deployment: Deployment | None = None) -> Deployment:
    """Set a deployment's replica count: new pods on the least loaded nodes with room, removals newest first.

    ``deployment`` is a manifest's Deployment (``netlab apply``); without it, ``name`` must be
    a known one (from a manifest, or topology pods labelled ``app: <name>``). The whole
    request is checked against the nodes' room (:func:`pods.room`: pod blocks, bridge ports,
    max pods) before the first pod is built, and all new pods are built in one journaled
    apply; if anything fails after they are built, they are removed again.
    """
    if replicas < 0:
        raise UsageError("replicas must be 0 or more")
    known = pods.deployments(state)
    deploy = deployment or known.get(name)
    if deploy is None:
        raise UsageError(f"lab {state.lab!r} has no deployment {name!r}; known: {', '.join(known) or 'none'} (topology pods count by their label app)")
    current = list(deploy.pods)
    added: list[str] = []
    if replicas > len(current):
        more = replicas - len(current)
        rooms = pods.room(state)
        free = sum(r.free for r in rooms)
        if more > free:
            raise pods.no_room(
                f"cannot scale deployment {name} to {replicas} replicas ({len(current)} now)", more, rooms,
                f"scale to at most {len(current) + free}",
            )
        taken = {h.name for h in state.host_objects()}
        template: dict[str, Any] = {"labels": deploy.labels, "ports": [list(p) for p in deploy.ports]}
        names_in_dns = {k: v for k, v in (("hostname", deploy.hostname), ("subdomain", deploy.subdomain)) if v}
        template.update(names_in_dns)  # only when set: the pod names of other templates stay what they were
        numbers = itertools.count(1)  # topology pods web-1, web-2, ...: the next free numbers
        fresh: list[str] = []
        for _ in range(more):
            new = next(f"{name}-{i}" for i in numbers if f"{name}-{i}" not in taken) if deploy.implicit else pods.pod_name(name, template, taken)
            taken.add(new)
            fresh.append(new)
        back = ClusterRecord.load(state).deleted_pods  # a deleted pod's name comes back on its node
        nodes = pods.place(rooms, [back.get(new) or None for new in fresh])
        new_pods: list[tuple[str, dict[str, Any]]] = [
            (node, {"name": new, "labels": dict(deploy.labels), **names_in_dns}) for node, new in zip(nodes, fresh, strict=True)
        ]
        pods.add(state, new_pods, deploy.namespace, deploy.ports)  # all or nothing
        added = [pod["name"] for _node, pod in new_pods]
        current += added
    try:
        while len(current) > replicas:
            pods.remove(state, [current.pop()])  # the newest first
        deploy.pods = current
        deploy.replicas = replicas
        record = ClusterRecord.load(state)
        if deployment is not None or name in record.deployments:
            record.deployments[name] = deploy
        record.store(state)
        sync(state)
    except BaseException:
        if added:
            _unscale(state, name, added)
        raise
    return deploy


def _unscale(state: LabState, name: str, added: list[str]) -> None:
    """Remove the pods a failed scale built, and bring rules and DNS back to the lab without them."""
    pods.remove(state, added)
    record = ClusterRecord.load(state)
    if name in record.deployments:
        kept = record.deployments[name]
        kept.pods = [p for p in kept.pods if p not in added]
        kept.replicas = len(kept.pods)
        record.store(state)
    sync(state)


def delete_services(state: LabState, keys: list[str]) -> list[str]:
    """Delete Services (``ns/name``), as ``kubectl delete``: kube-proxy drops their rules, MetalLB
    frees their address, ExternalDNS removes their records. Returns the keys that existed."""
    record = ClusterRecord.load(state)
    system = {s.key for s in system_services("127.0.0.1:6443")}  # the cluster's own two: keys only
    for key in keys:
        if key in system:
            raise UsageError(f"service {key} is the cluster's own; netlab does not delete it")
    gone = [s.key for s in record.services if s.key in keys]
    record.services = [s for s in record.services if s.key not in keys]
    record.store(state)
    sync(state)
    return gone


def endpoints_of(state: LabState) -> dict[str, list[Endpoint]]:
    """Each Service's ready endpoints (pod address, node, pod), by Service key."""
    record = ClusterRecord.load(state)
    return endpoints_for(record.services, pods_of(state, record))


def describe_services(state: LabState) -> list[dict[str, Any]]:
    """The lab's Services as ``netlab status`` shows them (and its ``--json``), with each
    LoadBalancer's ``status.loadBalancer.ingress``, its pool and the node leading it."""
    record = ClusterRecord.load(state)
    endpoints = endpoints_for(record.services, pods_of(state, record))
    rows = []
    balancers = nlbrun.balancers_of(state)
    target_health = nlbrun.health(state)
    for svc in record.services:
        lb = Assignment.from_json(record.load_balancers.get(svc.key, {}))
        ports = []
        for p in svc.ports:
            text = f"{p.port}" + (f":{p.node_port}" if p.node_port else "") + f"/{p.protocol}"
            ports.append(text + (f"->{p.target}" if p.target != p.port else ""))
        rows.append(
            {
                "service": svc.key,
                "type": svc.type,
                "clusterIP": svc.external_name if svc.type == "ExternalName" else ("None" if svc.headless else svc.cluster_ip),
                "ports": ports,
                "affinity": svc.session_affinity,
                "externalTrafficPolicy": svc.external_traffic_policy if svc.has_node_ports else "",
                "endpoints": [b.ip + (f" ({b.pod}@{b.node})" if b.pod else "") for b in endpoints.get(svc.key, [])],
                "externalIP": _external_ip(svc, lb),
                **_lb_fields(svc, lb),
            }
        )
        if svc.health_check_node_port:
            rows[-1]["healthCheckNodePort"] = svc.health_check_node_port
        if svc.key in balancers:
            rows[-1].update(_nlb_fields(balancers[svc.key], target_health))
    return rows


def _nlb_fields(balancer: dict[str, Any], target_health: dict[str, Any]) -> dict[str, Any]:
    """An NLB's Service: its hostname as status.loadBalancer.ingress, and describe-target-health."""
    pending = balancer.get("pending", "")
    return {
        "externalIP": "<pending>" if pending else balancer["dns"],
        "status": {"loadBalancer": {} if pending else {"ingress": [{"hostname": balancer["dns"]}]}},
        "loadBalancer": {"pending": pending, "nlb": {
            "name": balancer["name"], "dns": balancer["dns"], "address": balancer["ip"], "scheme": balancer["scheme"],
            "targetType": balancer["target_type"], "ignored": balancer.get("ignored", []),
            "targetGroups": [
                {"name": g["name"], "port": g["port"], "protocol": g["protocol"].upper(), "preserveClientIp": g["preserve_client_ip"],
                 "deregistrationDelay": g["deregistration_delay"], "proxyProtocolV2": bool(g.get("proxy_protocol", False)),
                 "healthCheck": g["health"],
                 "TargetHealthDescriptions": target_health.get("groups", {}).get(g["name"], [])}
                for g in balancer.get("groups", [])
            ],
        }},
    }


def _external_ip(svc: Service, lb: Assignment) -> str:
    """kubectl's EXTERNAL-IP column."""
    if svc.type == "LoadBalancer":
        return lb.ip or "<pending>"
    if svc.type == "ExternalName":
        return svc.external_name or ""
    return "<none>"


def _lb_fields(svc: Service, lb: Assignment) -> dict[str, Any]:
    if svc.type != "LoadBalancer":
        return {}
    fields: dict[str, Any] = {"status": {"loadBalancer": {"ingress": [{"ip": lb.ip, "ipMode": "VIP"}]} if lb.ip else {"loadBalancer": {}}}}
    fields["loadBalancer"] = {
        "pool": lb.pool, "leader": lb.leader, "candidates": lb.candidates, "pending": lb.pending,
        "annotations": {loadbalancer.ALLOCATED_FROM: lb.pool} if lb.pool else {},
    }
    return fields


def describe_dns(state: LabState) -> dict[str, Any]:
    """What ExternalDNS published in the internet's DNS, and what it skipped (``netlab status``)."""
    from netlab.services.files import external_dns_path

    topo = topology_of(state)
    record = ClusterRecord.load(state)
    path = external_dns_path(state.lab)
    records = []
    if path.exists():
        import json

        records = json.loads(path.read_text()).get("records", [])
    ingress = loadbalancer.ingress({k: Assignment.from_json(v) for k, v in record.load_balancers.items()})
    endpoints = endpoints_for(record.services, pods_of(state, record))
    balancers = nlbrun.balancers_of(state)
    hostnames = {k: [b["dns"]] for k, b in balancers.items() if not b.get("pending")}
    wanted, notes = _sources(state, topo, record.services, ingress, endpoints, hostnames)
    skipped = externaldns.plan(wanted, topo.external_dns.domain_filter, topo.external_dns.txt_owner_id, topo.external_dns.txt_prefix,
                               record.dns_owners).skipped
    if wanted and topo.network.internet_host is None:
        notes.append("no outside world in this lab (network.internet): ExternalDNS publishes nothing")
    zones = list(topo.external_dns.domain_filter) + ([nlb.ZONE] if balancers else [])
    return {"zones": zones, "nameserver": str(topo.network.internet_host or ""),
            "records": records, "notes": notes + skipped}
