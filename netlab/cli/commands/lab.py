"""A lab's life and what it is made of: ``up``, ``down``, ``clean``, ``plan``, ``exec``, ``status``, ``node``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from netlab import api, lab
from netlab.cli.render import progress
from netlab.cli.render import services as render_services
from netlab.cli.render import status as render_status
from netlab.datapaths import make_plan
from netlab.errors import UsageError
from netlab.model import load_topology, parse_topology
from netlab.services import records
from netlab.state import LabState

PROGRESS_THRESHOLD = 200  # operations; smaller builds finish before a bar is worth drawing


def _plan(path: str) -> tuple[Any, Any]:
    topology = load_topology(path)
    return topology, make_plan(topology, path)


def read_topology(args: argparse.Namespace) -> None:
    """``up``'s input, read before the root check: a bad file exits 2 whoever runs it."""
    args.topology, args.plan = _plan(args.file)
    if getattr(args, "name", None):  # the same topology under another name (a lesson's check uses it)
        args.topology = args.topology.model_copy(update={"name": args.name})
        args.plan = make_plan(args.topology, args.file)


def command_after_dashes(args: argparse.Namespace) -> None:
    """``exec``'s COMMAND without its leading ``--``; nothing to run is bad input (exit 2), checked before root."""
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.command:
        raise UsageError("nothing to run: netlab exec LAB TARGET -- COMMAND ...")


def cmd_plan(args: argparse.Namespace, out: Console) -> int:
    topology, plan = _plan(args.file)
    if getattr(args, "services", False):
        from netlab.services import preview  # Services and their allocators: only --services needs them

        out.print(preview.render(topology, args.file), end="", highlight=False, markup=False, soft_wrap=True)
        return 0
    out.print(plan.render(), end="", highlight=False, markup=False, soft_wrap=True)
    if topology.network.cni == "calico":
        from netlab.datapaths import bird

        out.print(bird.plan_text(topology), end="", highlight=False, markup=False, soft_wrap=True)
    return 0


def cmd_up(args: argparse.Namespace, out: Console) -> int:
    from netlab import build  # Services and their phases: only `up` needs them, `--help` stays quick

    topology, plan = args.topology, args.plan
    if len(plan) >= PROGRESS_THRESHOLD:
        with progress.building(out, plan.lab, len(plan)) as (bar, task):
            state = build.up(topology, args.file, plan, progress=lambda done, total, _op: bar.update(task, completed=done))
    else:
        state = build.up(topology, args.file, plan)
    pods = sum(1 for e in state.host_objects() if e.kind == "pod")
    nodes = sum(1 for e in state.host_objects() if e.kind == "node")
    out.print(
        f"[green]lab {state.lab} is up[/]: cni {state.cni}, {nodes} node(s), {pods} pod(s), "
        f"{len(state.namespaces)} namespaces, {len(plan)} operations"
    )
    for note in state.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    out.print(f"try: netlab status {state.lab} · netlab exec {state.lab} <target> -- ping ... · netlab down {state.lab}")
    return 0


def _removed(done: lab.Teardown) -> str:
    return f"{done.namespaces} namespaces removed ({done.processes} processes stopped, {done.files} files removed)"


def cmd_down(args: argparse.Namespace, out: Console) -> int:
    done = lab.down(args.lab)
    out.print(f"[green]lab {escape(done.lab)} is down[/]: {_removed(done)}")
    return 0


def cmd_clean(args: argparse.Namespace, out: Console) -> int:
    done, busy = lab.clean(wait=args.wait)
    if not done and not busy:
        out.print("nothing to clean: no netlab lab has left anything behind")
    for item in done:
        out.print(f"removed lab {escape(item.lab)} ({escape(item.status)}): {_removed(item)}")
    for who in busy:
        out.print(f"[yellow]skipped lab {escape(who)}[/]: it is being changed right now; `netlab clean --wait` waits for it")
    return 1 if busy else 0


def cmd_exec(args: argparse.Namespace, out: Console, state: LabState) -> int:
    # in the lab's cgroup: down stops what it leaves running, even double-forked daemons
    return api.Lab(state.lab, state.source).exec(args.target, args.command, capture_output=False).returncode


def cmd_status(args: argparse.Namespace, out: Console, state: LabState | None) -> int:
    from netlab.observe import status

    if state is None:
        states = LabState.all()
        if args.json:
            out.print_json(json.dumps([{"lab": s.lab, "cni": s.cni, "status": s.status, "source": s.source, "namespaces": len(s.namespaces)} for s in states]))
            return 0
        out.print(render_status.labs_table(states) if states else "no labs are up")
        return 0
    views = status.collect(state)
    if args.json:
        out.print_json(json.dumps(api.status(state, views), default=str))
        return 0
    peers = _bgp_peers(state)
    render_status.print_lab(out, state, views)
    if state.cni == "calico":
        out.print(render_status.bgp_table(peers))
    if state.cni == "vpc-native":
        out.print(render_status.eni_table(status.enis(state)))
    if records.has_services(state):
        from netlab.services import cluster

        mode = state.topology.get("network", {}).get("proxyMode", "iptables")
        rows = cluster.describe_services(state)
        out.print(render_services.services_table(mode, rows))
        tables = (render_services.load_balancers_table(rows), *render_services.nlb_tables(rows), render_services.dns_table(cluster.describe_dns(state)))
        for table in tables:
            if table is not None:
                out.print(table)
        _print_ingress(out, state)
    return 0


def cmd_node(args: argparse.Namespace, out: Console, state: LabState) -> int:
    from netlab.services import bird

    if args.action == "add":
        from netlab.services import nodes

        host = nodes.add(state, args.node, args.subnet)
        blocks = ", ".join(map(str, parse_topology(state.topology, state.source or state.lab).calico_blocks()[args.node]))
        out.print(f"added node {args.node} ({host.ip}): block {blocks}, BGP mesh Established, its peers learned its routes", highlight=False, markup=False)
        return 0
    if args.subnet is not None:
        raise UsageError("--subnet is for `netlab node add` only")
    if args.action == "stop":
        pid = bird.stop_node(state, args.node)
        what = f"stopped BIRD in {args.node} (pid {pid}): its peers withdrew its routes" if pid else f"BIRD in {args.node} was not running"
    else:
        pid = bird.start_node(state, args.node)
        what = f"started BIRD in {args.node} (pid {pid}): the mesh is Established again" if pid else f"BIRD in {args.node} is already running"
    out.print(what, highlight=False, markup=False)
    return 0


def _bgp_peers(state: LabState) -> list[Any]:
    """A Calico lab's BGP sessions, asked of each node's BIRD (none for other labs)."""
    if state.cni != "calico":
        return []
    from netlab.services import bird

    return bird.peers(state)


def _print_ingress(out: Console, state: LabState) -> None:
    from netlab.services import ingress

    info = ingress.describe(state)
    if info:
        out.print(render_services.ingress_table(info))
        for warning in info["warnings"]:
            out.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    _print_gateway(out, state)


def _print_gateway(out: Console, state: LabState) -> None:
    """Gateway API objects with their conditions, as ``kubectl describe`` shows them."""
    from netlab.services import gateway

    info = gateway.describe(state)
    if not info:
        return
    out.print("[bold]Gateway API[/] (NGINX Gateway Fabric)")
    for klass in info["gatewayClasses"]:
        out.print(escape(f"  GatewayClass {klass['name']} (controllerName {klass['controller']}): {', '.join(klass['conditions']) or 'no status'}"), soft_wrap=True)
    for gw in info["gateways"]:
        out.print(escape(f"  Gateway {gw['gateway']} (class {gw['class']})"), soft_wrap=True)
        plane = gw["dataPlane"]
        if plane:
            out.print(escape(f"    data plane: pod {plane['pod']}, service {plane['service']}, nginx pid {plane['nginx_pid']}, "
                             f"generation {plane['generation']}, config {plane['config']}"), soft_wrap=True)
        for cond in gw["conditions"]:
            out.print(escape(f"    {cond}"), soft_wrap=True)
        for lis in gw["listeners"]:
            out.print(escape(f"    listener {lis['name']}: {lis['protocol']} :{lis['port']} {lis['hostname']}, attachedRoutes {lis['attachedRoutes']}"), soft_wrap=True)
            for cond in lis["conditions"]:
                out.print(escape(f"      {cond}"), soft_wrap=True)
    for route in info["httproutes"]:
        out.print(escape(f"  HTTPRoute {route['httproute']} (hostnames {', '.join(route['hostnames'])})"), soft_wrap=True)
        for parent in route["parents"]:
            section = f" section {parent['sectionName']}" if parent["sectionName"] else ""
            out.print(escape(f"    parent gateway {parent['parent']}{section}:"), soft_wrap=True)
            for cond in parent["conditions"]:
                out.print(escape(f"      {cond}"), soft_wrap=True)
        for line in route["routes"]:
            out.print(escape(f"    {line}"), soft_wrap=True)
    for warning in info["warnings"]:
        out.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
