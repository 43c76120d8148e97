"""Looking at packets and paths in a running lab: ``capture``, ``trace``, ``check``; ``graph`` draws a lab."""

from __future__ import annotations

import argparse
import json
import os
import time

from rich.console import Console
from rich.markup import escape

from netlab.cli.render import check as render_check
from netlab.cli.render import progress
from netlab.cli.render import trace as render_trace
from netlab.state import LabState


def cmd_capture(args: argparse.Namespace, out: Console, state: LabState) -> int:
    from netlab.observe.capture import Capture, resolve_point
    from netlab.observe.decode import decode

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
        what = f"{point} (netns {point.ns})" + (f" filter {args.filter!r}" if args.filter else "")
        out.print(f"capturing on {escape(what)}; Ctrl-C stops", style="dim")
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
    out.print(escape(f"{len(cap.frames)} packet(s) captured on {point} ({why})" + (f", written to {args.write}" if args.write else "")), highlight=False)
    return 0


def cmd_trace(args: argparse.Namespace, out: Console, state: LabState) -> int:
    from netlab.observe import trace as tr

    def started(path: tr.HopPath) -> None:
        if not args.json:
            out.print(escape(f"tracing {args.proto} {args.src} -> {args.dst} in lab {state.lab}: capturing on {len(path.hops)} interface(s)"), style="dim")

    result = tr.trace(state, args.src, args.dst, args.proto, args.port, timeout=args.timeout, on_start=started, host=args.host, path=args.path)
    written = result.write(args.write) if args.write else []
    if args.graph:
        from netlab.observe.graph import dot, live

        written.append(dot.render(live.for_trace(state, result), args.graph))
    if args.json:
        data = result.as_dict()
        data["pcaps"] = [str(p) for p in written if p.suffix == ".pcap"]
        if args.graph:
            data["graph"] = args.graph
        out.print_json(json.dumps(data, default=str))
        return 0 if result.probe.replied else 1
    render_trace.print_trace(out, result, args.src, args.dst, written)
    return 0 if result.probe.replied else 1


CHECK_PROGRESS_AFTER = 200  # pairs; fewer are done before a bar is worth drawing


class _ArpWatch:
    """Says at once (not only in the report) when the machine's ARP table overflows during a long check."""

    every = 1.0  # seconds between looks

    def __init__(self, out: Console) -> None:
        from netlab.kernel.inspect import neighbour_table

        self.read, self.out = neighbour_table, out
        self.start = self.read()
        self.last = time.monotonic()
        self.said = self.start is None

    def look(self) -> None:
        if self.said or time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        now = self.read()
        if self.start and now and now.overflows > self.start.overflows:
            self.said = True
            self.out.print(f"[yellow]warning:[/] the kernel's ARP table (one for every namespace, {now.limit:,} entries) is full: "
                           "paths are failing for want of an entry, each after a second and a retry; Ctrl-C stops the check",
                           highlight=False)


def cmd_check(args: argparse.Namespace, out: Console, state: LabState) -> int:
    from netlab.observe import check

    hosts = state.host_objects()
    selection = check.select(hosts, state.cni, every=args.all)
    workers = max(1, args.workers)
    if not args.json and len(selection.pairs) >= CHECK_PROGRESS_AFTER:
        watch = _ArpWatch(out)
        with progress.checking(out, state.lab, len(selection.pairs)) as (bar, task):

            def advance(done: int, _total: int) -> None:
                bar.update(task, completed=done)
                watch.look()

            report = check.run(hosts, state.cni, state.lab, workers=workers, selection=selection, progress=advance)
    else:
        report = check.run(hosts, state.cni, state.lab, workers=workers, selection=selection)
    if args.json:
        out.print_json(json.dumps(report.as_json()))
    else:
        for note in state.notes:
            out.print(f"[yellow]note:[/] {escape(note)}")
        out.print(render_check.reachability(report))
    return 0 if report.ok else 1


def graph_input(args: argparse.Namespace) -> None:
    """``graph``'s input, checked before root: the output's format, then a topology FILE's plan
    (a bad file exits 2 whoever runs it) or a valid LAB name."""
    from netlab import names
    from netlab.errors import UsageError
    from netlab.observe.graph import dot

    dot.output_format(args.out)
    args.plan = None
    source = args.source
    if os.path.isfile(source) or source.endswith((".yaml", ".yml", ".json")):
        from netlab.cli.commands.lab import read_topology

        args.file = source
        read_topology(args)
        return
    problem = names.lab_name_problem(source)
    if problem is not None:
        raise UsageError(f"{source!r} is neither a topology file nor a lab name: {problem}")


def graph_output(args: argparse.Namespace) -> None:
    """``trace --graph``: the picture's format is checked before anything runs."""
    if getattr(args, "graph", None):
        from netlab.observe.graph import dot

        dot.output_format(args.graph)


def cmd_graph(args: argparse.Namespace, out: Console) -> int:
    from netlab.observe.graph import dot, from_plan

    if args.plan is not None:
        graph = from_plan(args.plan)
        what = f"topology {args.file} (planned, nothing built)"
    else:
        from netlab import lab
        from netlab.observe.graph import live

        lab.require_root()
        graph = live.from_kernel(lab.running(args.source))
        what = f"lab {graph.lab} (read from the kernel)"
    path = dot.render(graph, args.out)
    out.print(escape(f"wrote {path}: {what}, {len(graph.boxes)} namespaces, {len(graph.ports)} interfaces, {len(graph.wires)} wires"),
              highlight=False)
    return 0
