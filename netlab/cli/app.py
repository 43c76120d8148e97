"""The ``netlab`` command line. rich stays here, at the edge.

Exit codes: 0 ok, 1 a check failed, 2 bad input, 3 environment (not root, missing feature).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from netlab import build, lab
from netlab.datapaths import make_plan
from netlab.errors import NetlabError
from netlab.kernel import netns
from netlab.model import load_topology

PROGRESS_THRESHOLD = 200  # operations; smaller builds finish before a bar is worth drawing


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    out = console or Console()
    err = Console(stderr=True) if console is None else console
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args, out) or 0)
    except NetlabError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netlab", description="Kubernetes and container networking, built for real in network namespaces.")
    sub = p.add_subparsers(metavar="COMMAND")

    def cmd(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    sp = cmd("up", cmd_up, "build a lab from a topology file")
    sp.add_argument("file")
    sp = cmd("down", cmd_down, "tear a lab down (no topology file needed)")
    sp.add_argument("lab")
    sp = cmd("status", cmd_status, "show labs, or one lab's namespaces, interfaces, addresses and routes")
    sp.add_argument("lab", nargs="?")
    sp.add_argument("--json", action="store_true")
    sp = cmd("exec", cmd_exec, "run a command inside a node, pod, or the internet host")
    sp.add_argument("lab")
    sp.add_argument("target")
    sp.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    sp = cmd("plan", cmd_plan, "print the kernel operations a topology takes, as ip/iptables commands")
    sp.add_argument("file")
    sp = cmd("run", cmd_run, "run a scenario: build its labs, run its steps, report, tear down")
    sp.add_argument("file")
    sp.add_argument("-o", "--out", metavar="DIR", help="keep artifacts: report.json, plots, pcaps")
    sp.add_argument("--json", action="store_true", help="print the report as JSON")
    sp.add_argument("--samples", type=int, help="override the RTT sample count of every rtt step")
    sp = cmd("capture", cmd_capture, "capture packets on TARGET:IFACE (node, pod, internet, gateway, underlay), like tcpdump")
    sp.add_argument("lab")
    sp.add_argument("at", metavar="TARGET:IFACE")
    sp.add_argument("--filter", metavar="BPF", help="kernel filter in tcpdump syntax, e.g. 'icmp or udp port 8472'")
    sp.add_argument("--count", type=int, metavar="N", help="stop after N packets")
    sp.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    sp.add_argument("-w", "--write", metavar="FILE.pcap", help="also write a pcap (tcpdump -r / Wireshark open it)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no per-packet lines")
    sp = cmd("trace", cmd_trace, "send a probe from SRC to DST and show it at every hop, with what changed and a verdict")
    sp.add_argument("lab")
    sp.add_argument("src", metavar="SRC", help="pod, node or internet")
    sp.add_argument("dst", metavar="DST", help="pod, node, internet, or an IPv4 address")
    sp.add_argument("--proto", choices=("icmp", "udp", "tcp"), default="icmp")
    sp.add_argument("--port", type=int, help="UDP/TCP destination port (default 8080; a listener answers in DST)")
    sp.add_argument("--timeout", type=float, default=3.0, metavar="S", help="wait S seconds for the reply")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("-w", "--write", metavar="DIR", help="keep one pcap per hop in DIR")
    sp = cmd("check", cmd_check, "ping every meaningful pair of a lab (pods, nodes, internet) and show a matrix")
    sp.add_argument("lab")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--workers", type=int, default=16, help="pings in flight at once (default 16)")
    sp = cmd("apply", cmd_apply, "create or update Services, Pods and Deployments in a running lab from Kubernetes manifests")
    sp.add_argument("lab")
    sp.add_argument("-f", "--filename", required=True, metavar="FILE", help="YAML manifests (v1 Service, v1 Pod, apps/v1 Deployment; several documents)")
    sp = cmd("scale", cmd_scale, "set a deployment's replicas; endpoints and kube-proxy rules follow")
    sp.add_argument("lab")
    sp.add_argument("deployment")
    sp.add_argument("replicas", type=int)
    sp = cmd("requests", cmd_requests, "send N requests from a pod or node and count which pod answered")
    sp.add_argument("lab")
    sp.add_argument("source", metavar="FROM")
    sp.add_argument("url", help="http://web, http://10.96.0.100:80/, tcp://HOST:PORT, udp://HOST:PORT")
    sp.add_argument("-n", "--count", type=int, default=100)
    sp.add_argument("--json", action="store_true")
    sp = cmd("clean", cmd_clean, "remove everything any netlab lab left behind (and nothing else)")
    sp = cmd("doctor", cmd_doctor, "check what this machine's kernel and tools can do")
    sp.add_argument("--json", action="store_true")
    sp = cmd("vm", cmd_vm, "run a netlab command in a throwaway VM booting a stock kernel (for features this kernel lacks)")
    sp.add_argument("--kernel", help="kernel image to boot (default: $NETLAB_VM_KERNEL, else the newest /boot/vmlinuz-* with modules)")
    sp.add_argument("--cpus", type=int, default=2)
    sp.add_argument("--memory", default="2G")
    sp.add_argument("--kvm", action="store_true", help="use KVM (default: software emulation, slower but works everywhere)")
    sp.add_argument("command", nargs=argparse.REMAINDER, help="-- netlab COMMAND ...")
    return p


def _plan(path: str) -> tuple[Any, Any]:
    topology = load_topology(path)
    return topology, make_plan(topology, path)


def cmd_plan(args: argparse.Namespace, out: Console) -> int:
    _topology, plan = _plan(args.file)
    out.print(plan.render(), end="", highlight=False, markup=False, soft_wrap=True)
    return 0


def cmd_up(args: argparse.Namespace, out: Console) -> int:
    topology, plan = _plan(args.file)
    lab.require_root()
    if len(plan) >= PROGRESS_THRESHOLD:
        with Progress(TextColumn("building {task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(), console=out, transient=True) as bar:
            task = bar.add_task(plan.lab, total=len(plan))
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
        out.print(f"[yellow]note:[/] {note}")
    out.print(f"try: netlab status {state.lab} · netlab exec {state.lab} <target> -- ping ... · netlab down {state.lab}")
    return 0


def cmd_down(args: argparse.Namespace, out: Console) -> int:
    lab.require_root()
    state = lab.down(args.lab)
    out.print(f"[green]lab {state.lab} is down[/]: {len(state.namespaces)} namespaces removed")
    return 0


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    from netlab.cli import render_scenario as render
    from netlab.scenario.runner import Runner
    from netlab.scenario.spec import load_scenario

    scenario, labs = load_scenario(args.file)
    notify = (lambda msg: None) if args.json else (lambda msg: out.print(f"  {msg}", highlight=False, markup=False))
    runner = Runner(scenario, labs, args.file, Path(args.out) if args.out else None, args.samples, notify)
    if args.json:
        result = runner.run()
    else:
        out.print(f"[bold]running {scenario.name}[/]: {len(labs)} lab(s), {len(scenario.steps)} step(s)")
        with out.status("starting", spinner="dots") as spinner:
            runner.activity = lambda msg: spinner.update(msg)
            result = runner.run()
    if args.json:
        out.print_json(json.dumps(result.to_json(), default=str))
    else:
        render.render(result, out, terminal_plot=args.out is None)
    return 0 if result.passed else 1


def cmd_capture(args: argparse.Namespace, out: Console) -> int:
    import time

    from netlab.observe.capture import Capture, resolve_point
    from netlab.observe.decode import decode

    lab.require_root()
    state = lab.running(args.lab)
    point = resolve_point(state.host_objects(), args.at)
    cap = Capture(point.ns, point.iface, args.filter, args.count, args.timeout if args.timeout else 365 * 86400.0)
    shown = 0

    def show() -> None:
        nonlocal shown
        for seen in cap.frames[shown:]:
            shown += 1
            if args.quiet:
                continue
            frame = decode(seen.packet)
            text = frame.line() if frame else seen.packet.summary()
            stamp = time.strftime("%H:%M:%S", time.localtime(seen.time)) + f".{int(seen.time * 1e6) % 1000000:06d}"
            out.print(f"{stamp} {'out' if seen.outgoing else 'in '} {text}", highlight=False, markup=False, soft_wrap=True)

    interrupted = False
    cap.start()  # the socket is open (and filtered) before the first line tells anyone to send
    try:
        out.print(f"capturing on {point} (netns {point.ns}){f' filter {args.filter!r}' if args.filter else ''}; Ctrl-C stops", style="dim")
        while not cap.done:
            time.sleep(0.05)
            show()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        cap.stop()
        if args.write:
            cap.write(args.write)
    show()
    why = "interrupted" if interrupted else ("count reached" if args.count and len(cap.frames) >= args.count else "timeout")
    out.print(f"{len(cap.frames)} packet(s) captured on {point} ({why})" + (f", written to {args.write}" if args.write else ""), highlight=False)
    return 0


def cmd_trace(args: argparse.Namespace, out: Console) -> int:
    from netlab.observe import trace as tr

    lab.require_root()
    state = lab.running(args.lab)

    def started(path: tr.HopPath) -> None:
        if not args.json:
            out.print(f"tracing {args.proto} {args.src} -> {args.dst} in lab {state.lab}: capturing on {len(path.hops)} interface(s)", style="dim")

    result = tr.trace(state, args.src, args.dst, args.proto, args.port, timeout=args.timeout, on_start=started)
    written = result.write(args.write) if args.write else []
    if args.json:
        data = result.as_dict()
        data["pcaps"] = [str(p) for p in written]
        out.print_json(json.dumps(data, default=str))
        return 0 if result.probe.replied else 1
    probe = result.probe
    table = Table(title=f"trace {probe.proto} {args.src} ({probe.src_ip}) -> {args.dst} ({probe.dst_ip})", title_justify="left")
    for header in ("#", "at", "dir", "outer src -> dst", "encap", "inner src -> dst", "ttl", "len"):
        table.add_column(header, no_wrap=True)
    table.add_column("changed here")
    for direction in ("request", "reply"):
        rows = [r for r in result.rows if r.direction == direction]
        if direction == "reply" and rows:
            table.add_section()
        for i, row in enumerate(rows, 1):
            f = row.frame
            label = f"{direction[:3]} {i}"
            if f is None:
                table.add_row(label, str(row.hop.point), "", "[dim]not seen[/]", "", "", "", "", "")
                continue
            inner = f"{f.inner_src} -> {f.inner_dst}" if f.encapsulated else "[dim]same[/]"
            changed = ", ".join(row.changes) + (f" [dim]@{row.where}[/]" if row.changes else "")
            table.add_row(label, str(row.hop.point), "out" if row.outgoing else "in", f"{f.src} -> {f.dst}", f.encap_text() if f.encapsulated else "none",
                          inner, str(f.inner_ttl), str(f.length), changed)
    if not out.is_terminal and out.width < 170:
        out.width = 170  # piped or logged: keep one line per hop
    out.print(table)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    for path in written:
        out.print(f"wrote {path}", style="dim", highlight=False)
    out.print(f"[bold]verdict:[/] {result.verdict}", highlight=False)
    return 0 if probe.replied else 1


def cmd_clean(args: argparse.Namespace, out: Console) -> int:
    lab.require_root()
    states = lab.clean()
    if not states:
        out.print("nothing to clean: no netlab lab has left anything behind")
    for state in states:
        out.print(f"removed lab {state.lab} ({state.status}): {', '.join(state.namespaces) or 'no namespaces'}")
    return 0


def cmd_exec(args: argparse.Namespace, out: Console) -> int:
    from netlab.errors import UsageError

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("nothing to run: netlab exec LAB TARGET -- COMMAND ...")
    lab.require_root()
    state = lab.running(args.lab)
    ep = lab.host(state, args.target)
    try:
        return subprocess.call(netns.exec_argv(ep.ns, command))
    except FileNotFoundError:
        from netlab.errors import EnvironmentProblem

        raise EnvironmentProblem("the `ip` command is missing: apt install iproute2") from None


def cmd_status(args: argparse.Namespace, out: Console) -> int:
    from netlab.observe import status
    from netlab.state import LabState

    lab.require_root()
    if not args.lab:
        states = LabState.all()
        if args.json:
            out.print_json(json.dumps([{"lab": s.lab, "cni": s.cni, "status": s.status, "source": s.source, "namespaces": len(s.namespaces)} for s in states]))
            return 0
        table = Table("lab", "cni", "status", "namespaces", "source", title="netlab labs")
        for s in states:
            table.add_row(s.lab, s.cni, s.status, str(len(s.namespaces)), s.source)
        out.print(table if states else "no labs are up")
        return 0
    state = lab.running(args.lab)
    views = status.collect(state)
    if args.json:
        out.print_json(json.dumps({**status.as_json(state, views), **_services_json(state)}, default=str))
        return 0
    out.print(f"[bold]lab {state.lab}[/] · cni {state.cni} · from {state.source}")
    for note in state.notes:
        out.print(f"[yellow]note:[/] {note}")
    for view in views:
        if view.kind == "underlay":
            continue
        table = Table("interface", "kind", "state", "mtu", "addresses", "master", title=f"{view.kind} {view.name}  (netns {view.ns})", title_justify="left", min_width=60)
        for iface in view.interfaces:
            if iface.name == "lo":
                continue
            table.add_row(iface.name, iface.kind, iface.state, str(iface.mtu), " ".join(iface.addresses), iface.master or "")
        out.print(table)
        if view.routes:
            out.print("  routes: " + "\n          ".join(str(r) for r in view.routes), highlight=False)
    _print_services(state, out)
    return 0


def cmd_check(args: argparse.Namespace, out: Console) -> int:
    from netlab.observe import check

    lab.require_root()
    state = lab.running(args.lab)
    report = check.run(state.host_objects(), state.cni, state.lab, workers=max(1, args.workers))
    if args.json:
        out.print_json(json.dumps(report.as_json()))
    else:
        for note in state.notes:
            out.print(f"[yellow]note:[/] {note}")
        out.print(report)
    return 0 if report.ok else 1


def _services_json(state: Any) -> dict[str, Any]:
    from netlab.services import cluster

    return {"services": cluster.describe_services(state)} if state.extra.get("services") else {}


def _print_services(state: Any, out: Console) -> None:
    from netlab.services import cluster

    if not state.extra.get("services"):
        return
    mode = state.topology.get("network", {}).get("proxyMode", "iptables")
    table = Table("service", "type", "cluster-ip", "ports", "affinity", "endpoints", title=f"services (kube-proxy {mode})", title_justify="left")
    for row in cluster.describe_services(state):
        kind = row["type"] + (f" ({row['externalTrafficPolicy']})" if row["externalTrafficPolicy"] == "Local" else "")
        table.add_row(row["service"], kind, row["clusterIP"] or "", " ".join(row["ports"]), row["affinity"], "\n".join(row["endpoints"]) or "<none>")
    out.print(table)


def cmd_apply(args: argparse.Namespace, out: Console) -> int:
    from netlab.services import manifests

    lab.require_root()
    state = lab.running(args.lab)
    for line in manifests.apply_file(state, args.filename):
        out.print(line, highlight=False)
    return 0


def cmd_scale(args: argparse.Namespace, out: Console) -> int:
    from netlab.services import cluster

    lab.require_root()
    state = lab.running(args.lab)
    deploy = cluster.scale(state, args.deployment, args.replicas)
    out.print(f"deployment.apps/{args.deployment} scaled to {args.replicas}: {', '.join(deploy.pods) or 'no pods'}", highlight=False)
    return 0


def cmd_requests(args: argparse.Namespace, out: Console) -> int:
    import sys

    from netlab.errors import EnvironmentProblem

    lab.require_root()
    state = lab.running(args.lab)
    ep = lab.host(state, args.source)
    from netlab.services.processes import program

    argv = netns.exec_argv(ep.ns, [sys.executable, *program("client"), args.url, "-n", str(args.count)])
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise EnvironmentProblem(f"the request client failed in {ep.ns}: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    if args.json:
        out.print_json(json.dumps(result))
        return 0 if not result["errors"] else 1
    table = Table("answered by", "requests", "share", title=f"{args.count} requests {args.source} -> {args.url}", title_justify="left")
    for who, count in result["answers"].items():
        table.add_row(who, str(count), f"{100 * count / args.count:.1f}%")
    if result["errors"]:
        table.add_row("[red]errors[/]", str(result["errors"]), ", ".join(result["error_kinds"]))
    out.print(table)
    return 0 if not result["errors"] else 1


def cmd_doctor(args: argparse.Namespace, out: Console) -> int:
    from netlab import doctor

    checks = doctor.run_checks()
    if args.json:
        from dataclasses import asdict

        out.print_json(json.dumps([asdict(c) for c in checks]))
    else:
        table = Table("check", "result", "detail", "without it", "how to get it", title="netlab doctor")
        for c in checks:
            mark = "[green]ok[/]" if c.ok else ("[red]MISSING[/]" if c.essential else "[yellow]missing[/]")
            table.add_row(c.name, mark, c.detail, "" if c.ok else c.disables, "" if c.ok else c.how)
        out.print(table)
    if any(not c.ok and c.essential for c in checks):
        return 3
    return 1 if any(not c.ok for c in checks) else 0


def cmd_vm(args: argparse.Namespace, out: Console) -> int:
    from netlab import vm
    from netlab.errors import UsageError

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("nothing to run: netlab vm -- netlab COMMAND ... (e.g. netlab vm -- netlab doctor)")
    machine = vm.find_vm(Path(args.kernel) if args.kernel else None, cpus=args.cpus, memory=args.memory, kvm=args.kvm)
    note = Console(stderr=True, highlight=False, soft_wrap=True) if out.file is sys.stdout else out  # stdout stays the command's
    cwd = Path.cwd()
    from rich.markup import escape

    note.print(f"[bold]netlab vm[/]: booting {escape(machine.describe())}; {escape(str(cwd))} is writable, the rest read-only; running: {escape(' '.join(command))}")
    if not machine.kvm:
        note.print("[yellow]netlab vm: latency and throughput measured in this VM come from an emulated CPU: compare them only with each other[/]")
    env = {"COLUMNS": str(out.width)}
    if not out.is_terminal:
        env["TERM"] = "dumb"
    result = vm.run(machine, command, cwd=cwd, rwdirs=[cwd], env=env)
    label = f"; figures above are from an {machine.mode} VM (NETLAB_IN_VM={machine.mode})" if not machine.kvm else ""
    note.print(f"netlab vm: booted in {result.boot_seconds or 0:.0f} s, exit {result.exit_code} after {result.seconds:.0f} s{label}")
    return result.exit_code


def main_entry() -> None:
    sys.exit(main())


