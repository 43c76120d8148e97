"""The emulated AWS NLB in a running vpc-native lab: its namespace, the VPC fabric's part, the
controller's config, the health checker, and kube-proxy's healthCheckNodePort servers.

:func:`sync` runs from :func:`netlab.services.cluster.sync` after kube-proxy's rules are written.
The namespace (``<lab>-nlb``, host name ``nlb``) is created on the first NLB with the lab's own
journaled apply (so ``down`` removes it), attached to the first subnet's underlay bridge with
the subnet's last address (its "ENI"); every NLB adds its own address (/32) there. Everything
the processes read is a journaled file; the processes run in the lab's cgroup.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from netlab import lab, names
from netlab.datapaths import vpc
from netlab.errors import EnvironmentProblem, UsageError
from netlab.kernel import iptables, processes
from netlab.kernel.backend import NetlinkBackend
from netlab.model import Topology
from netlab.model.service import Service
from netlab.plan import (
    AddAddress,
    AddRoute,
    AddRule,
    AddVeth,
    CreateNamespace,
    LinkUp,
    LoadIptables,
    Operation,
    SetMaster,
    SetSysctl,
)
from netlab.services import nlb
from netlab.services.files import write
from netlab.services.kubeproxy import Endpoint
from netlab.services.processes import READY_TIMEOUT, _start, _wait_ready, program
from netlab.services.records import Server
from netlab.state import LabState, state_dir

KEY = "nlb"  # in the lab record's extra data


def config_path(lab_name: str) -> Path:
    return state_dir() / f"{lab_name}.nlb"


def health_path(lab_name: str) -> Path:
    return state_dir() / f"{lab_name}.nlb-health"


def healthz_path(lab_name: str) -> Path:
    return state_dir() / f"{lab_name}.healthz"


def _record(state: LabState) -> dict[str, Any]:
    return dict(state.extra.get(KEY) or {})


def health(state: LabState) -> dict[str, Any]:
    path = health_path(state.lab)
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def balancers_of(state: LabState) -> dict[str, dict[str, Any]]:
    """The lab's NLBs by Service key (:meth:`nlb.Balancer.to_json`)."""
    return dict(_record(state).get("balancers", {}))


def sync(state: LabState, topo: Topology, services: list[Service], endpoints: dict[str, list[Endpoint]]) -> None:
    """Bring the NLBs and the healthCheckNodePort servers up to date (vpc-native only for NLBs)."""
    data = _record(state)
    _healthz(state, topo, services, endpoints, data)
    if topo.network.cni == "vpc-native":
        _balancers(state, topo, services, endpoints, data)
    state.extra[KEY] = data
    state.save()


def _balancers(state: LabState, topo: Topology, services: list[Service], endpoints: dict[str, list[Endpoint]], data: dict[str, Any]) -> None:
    previous = dict(data.get("balancers", {}))
    subnet = topo.network.subnets[0]
    eni_ip = str(subnet.cidr.broadcast_address - 1)
    taken = {str(h.ip) for h in state.host_objects() if h.ip} | {str(subnet.gateway), eni_ip}
    wanted = nlb.balancers(topo, state.lab, services, endpoints, previous, taken)
    if not wanted and not data.get("created"):
        return
    ns = names.namespace(state.lab, nlb.HOST)
    if not data.get("created"):
        if any(h.name == nlb.HOST for h in state.host_objects()):
            raise UsageError(f"a pod or node is already named {nlb.HOST!r}: rename it (netlab runs the emulated NLB in that namespace)")
        _create(state, topo, ns, eni_ip)
        data["created"] = True
        data["eni_ip"] = eni_ip
    if not any(h.name == nlb.HOST for h in state.host_objects()):  # pods.add rewrites the host list
        state.hosts = [*state.hosts, {"name": nlb.HOST, "kind": "nlb", "ns": ns, "ip": eni_ip}]
    _addresses(ns, subnet.cidr.prefixlen, previous, wanted)
    _neighbours(ns, topo, data)
    vpc_cidrs = nlb.vpc_cidrs(topo)
    rows = [b.to_json() for b in wanted.values()]
    data["generation"] = int(data.get("generation", 0)) + 1
    write(state, config_path(state.lab), json.dumps({"generation": data["generation"], "vpc": vpc_cidrs, "balancers": rows}, indent=1))
    data["balancers"] = {b.key: b.to_json() for b in wanted.values()}
    _start_checker(state, ns, data)
    _gateway(state, topo, rows)


def _create(state: LabState, topo: Topology, ns: str, eni_ip: str) -> None:
    subnet = topo.network.subnets[0]
    underlay = names.namespace(state.lab, names.UNDERLAY)
    gateway = names.namespace(state.lab, names.GATEWAY)
    peer = "nlb-eth0"
    ops: list[Operation] = [
        CreateNamespace(ns, "nlb"),
        SetSysctl(ns, "net/ipv4/ip_forward", "1"),
        AddVeth(ns, "eth0", underlay, peer, topo.network.mtu, names.mac(state.lab, "nlb")),
        SetMaster(underlay, peer, subnet.name),
        LinkUp(ns, "eth0"), LinkUp(underlay, peer),
        AddAddress(ns, "eth0", ipaddress.IPv4Interface(f"{eni_ip}/{subnet.cidr.prefixlen}")),
        AddRoute(ns, None, gateway=subnet.gateway),
        # proxy protocol with client IP preservation: replies to the forwarder's transparent connections
        # (marked by the NLB's mangle rules) are delivered to its sockets, whatever their address
        AddRule(ns, None, nlb.FORWARDER_TABLE, nlb.RETURN_PRIORITY, fwmark=nlb.FORWARDER_MARK, fwmask=0xFF),
        AddRoute(ns, None, dev="lo", table=nlb.FORWARDER_TABLE, local=True),
        # the VPC router: replies of targets that saw a preserved client address go back through the NLB
        AddRoute(gateway, None, gateway=ipaddress.IPv4Address(eni_ip), table=nlb.RETURN_TABLE),
        AddRule(gateway, None, nlb.RETURN_TABLE, nlb.RETURN_PRIORITY, fwmark=nlb.RETURN_MARK, fwmask=0xFF),
        LoadIptables(gateway, nlb.gateway_rules([], [], nlb.vpc_cidrs(topo)), why="NLB return path (empty)"),
        LoadIptables(gateway, nlb.gateway_jumps([(s.name, str(s.cidr)) for s in topo.network.subnets], nlb.vpc_cidrs(topo)),
                     why="NLB return path: packets from the subnets to outside the VPC"),
    ]
    kernel = NetlinkBackend()
    try:
        lab.apply(state, ops, kernel)
    finally:
        kernel.close()


def _ip(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "-n", ns, *argv], capture_output=True, text=True, check=False, timeout=30)


def _addresses(ns: str, prefix: int, previous: dict[str, Any], wanted: dict[str, nlb.Balancer]) -> None:
    now = {b.ip for b in wanted.values() if b.ip}
    before = {str(p.get("ip")) for p in previous.values() if p.get("ip")}
    for ip in sorted(before - now):
        _ip(ns, "addr", "del", f"{ip}/32", "dev", "eth0")
    for ip in sorted(now - before):
        _ip(ns, "addr", "add", f"{ip}/32", "dev", "eth0")


def _neighbours(ns: str, topo: Topology, data: dict[str, Any]) -> None:
    """The VPC fabric delivers a pod's secondary IP to its ENI: the NLB gets the same permanent
    neighbours the gateway and the nodes have (:func:`netlab.datapaths.vpc._fabric`)."""
    known = dict(data.get("neighbours", {}))
    for alloc in vpc.allocate(topo).values():
        for slot in alloc.running:
            ip, mac = str(slot.ip), slot.eni.mac
            if known.get(ip) != mac:
                _ip(ns, "neigh", "replace", ip, "lladdr", mac, "dev", "eth0", "nud", "permanent")
                known[ip] = mac
    data["neighbours"] = known


def _start_checker(state: LabState, ns: str, data: dict[str, Any]) -> None:
    server = data.get("checker") or {}
    if not (server.get("pid") and processes.alive(int(server["pid"]))):
        hpath = health_path(state.lab)
        if not hpath.exists():
            state.will_write(hpath)
            state.will_write(hpath.with_name(hpath.name + ".tmp"))
        argv = [*program("nlbhealth"), "--config", str(config_path(state.lab)), "--health", str(hpath)]
        pid, log = _start(state, ns, "nlb-health", argv)
        _wait_ready([("nlb (health checker)", pid, log)])
        data["checker"] = {"pid": pid, "log": str(log)}
    _wait_applied(Server(int(data["checker"]["pid"]), str(data["checker"]["log"])), int(data["generation"]), "the NLB health checker")


def _wait_applied(server: Server, generation: int, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        text = Path(server.log).read_text() if Path(server.log).exists() else ""
        if f"applied generation {generation}\n" in text:
            return
        if not processes.alive(server.pid):
            raise EnvironmentProblem(f"{what} exited: {text.strip()[-400:] or 'no output'}")
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"{what} did not apply its configuration in {READY_TIMEOUT:.0f} s")
        time.sleep(0.02)


def _gateway(state: LabState, topo: Topology, rows: list[dict[str, Any]]) -> None:
    draining = health(state).get("draining", {})
    for row in rows:
        for group in row.get("groups", []):
            group["draining"] = list(draining.get(group["name"], []))
    subnets = [(s.name, str(s.cidr)) for s in topo.network.subnets]
    iptables.restore(names.namespace(state.lab, names.GATEWAY), nlb.gateway_rules(rows, subnets, nlb.vpc_cidrs(topo)))


def _healthz(state: LabState, topo: Topology, services: list[Service], endpoints: dict[str, list[Endpoint]], data: dict[str, Any]) -> None:
    """kube-proxy's healthCheckNodePort server on every node, once a Service has one."""
    ports: dict[str, Any] = {}
    for svc in services:
        if svc.needs_health_check_node_port and svc.health_check_node_port:
            local: dict[str, int] = {}
            for backend in endpoints.get(svc.key, []):
                if backend.node:
                    local[backend.node] = local.get(backend.node, 0) + 1
            ports[str(svc.health_check_node_port)] = {"service": svc.key, "local": local}
    servers = dict(data.get("healthz", {}))
    if not ports and not servers:
        return
    if ports == data.get("healthz_ports") and all(processes.alive(int(s["pid"])) for s in servers.values()):
        return
    generation = int(data.get("healthz_generation", 0)) + 1
    write(state, healthz_path(state.lab), json.dumps({"generation": generation, "ports": ports}, indent=1, sort_keys=True))
    started = []
    for node in topo.nodes:
        current = servers.get(node.name) or {}
        if current.get("pid") and processes.alive(int(current["pid"])):
            continue
        argv = [*program("healthz"), "--node", node.name, "--config", str(healthz_path(state.lab))]
        pid, log = _start(state, names.namespace(state.lab, node.name), f"healthz-{node.name}", argv)
        servers[node.name] = {"pid": pid, "log": str(log)}
        started.append((f"healthz-{node.name}", pid, log))
    _wait_ready(started)
    for server in servers.values():
        _wait_applied(Server(int(server["pid"]), str(server["log"])), generation, "kube-proxy's healthCheckNodePort server")
    data["healthz"], data["healthz_ports"], data["healthz_generation"] = servers, ports, generation
