"""Scenarios, this machine, what netlab emulates and a throwaway VM: ``run``, ``doctor``, ``versions``, ``vm``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from netlab.cli.render import doctor as render_doctor
from netlab.cli.render import scenario as render_scenario
from netlab.cli.render import versions as render_versions
from netlab.errors import UsageError


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    from netlab.scenario.runner import Runner
    from netlab.scenario.spec import load_scenario

    scenario, labs = load_scenario(args.file)
    notify = (lambda msg: None) if args.json else (lambda msg: out.print(f"  {msg}", highlight=False, markup=False))
    runner = Runner(scenario, labs, args.file, Path(args.out) if args.out else None, args.samples, notify)
    if args.json:
        result = runner.run()
    else:
        out.print(f"[bold]running {escape(scenario.name)}[/]: {len(labs)} lab(s), {len(scenario.steps)} step(s)")
        with out.status("starting", spinner="dots") as spinner:
            runner.activity = lambda msg: spinner.update(escape(msg))
            result = runner.run()
    if args.json:
        out.print_json(json.dumps(result.to_json(), default=str))
    else:
        render_scenario.render(result, out, terminal_plot=args.out is None)
    return 0 if result.passed else 1


def cmd_doctor(args: argparse.Namespace, out: Console) -> int:
    from netlab import doctor

    checks = doctor.run_checks()
    if args.json:
        out.print_json(json.dumps([asdict(c) for c in checks]))
    else:
        out.print(render_doctor.checks_table(checks))
    if any(not c.ok and c.essential for c in checks):
        return 3
    return 1 if any(not c.ok for c in checks) else 0


def cmd_versions(args: argparse.Namespace, out: Console) -> int:
    from netlab import versions

    if args.json:
        rows = [{k: v for k, v in asdict(c).items() if k != "claim"} for c in versions.COMPONENTS]
        out.print_json(json.dumps({"kubernetes": versions.KUBERNETES, "components": rows}))
    else:
        out.print(render_versions.components_table(versions.COMPONENTS, versions.KUBERNETES))
    return 0


def cmd_vm(args: argparse.Namespace, out: Console) -> int:
    from netlab import vm

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("nothing to run: netlab vm -- netlab COMMAND ... (e.g. netlab vm -- netlab doctor)")
    machine = vm.find_vm(Path(args.kernel) if args.kernel else None, cpus=args.cpus, memory=args.memory, kvm=args.kvm)
    note = Console(stderr=True, highlight=False, soft_wrap=True) if out.file is sys.stdout else out  # stdout stays the command's
    cwd = Path.cwd()
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
