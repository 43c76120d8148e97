"""Scenarios, this machine, what netlab emulates and a throwaway VM: ``run``, ``doctor``, ``versions``, ``vm``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from netlab.cli.render import doctor as render_doctor
from netlab.cli.render import scenario as render_scenario
from netlab.cli.render import versions as render_versions
from netlab.errors import NetlabError, UsageError

if TYPE_CHECKING:
    from netlab.scenario.results import ScenarioReport
    from netlab.scenario.runner import Runner


def check_run_args(args: argparse.Namespace) -> None:
    """``--junit FILE`` must be a file that can be written: checked before anything is built."""
    if args.junit is None:
        return
    path = Path(args.junit)
    if path.is_dir():
        raise UsageError(f"--junit {args.junit}: is a directory; give a file name, e.g. {path / 'junit.xml'}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--junit {args.junit}: {parent} is not a directory")


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    from netlab.scenario.runner import Runner
    from netlab.scenario.spec import load_scenario

    scenario, labs = load_scenario(args.file)
    notify = (lambda msg: None) if args.json else (lambda msg: out.print(f"  {msg}", highlight=False, markup=False))
    runner = Runner(scenario, labs, args.file, Path(args.out) if args.out else None, args.samples, notify)
    try:
        if args.json:
            result = runner.run()
        else:
            out.print(f"[bold]running {escape(scenario.name)}[/]: {len(labs)} lab(s), {len(scenario.steps)} step(s)")
            with out.status("starting", spinner="dots") as spinner:
                runner.activity = lambda msg: spinner.update(escape(msg))
                result = runner.run()
    except (NetlabError, KeyboardInterrupt) as exc:  # CI still gets its report: the steps so far and why it stopped
        if runner.report is not None:
            why = str(exc) if isinstance(exc, NetlabError) else "interrupted (Ctrl-C)"
            try:
                _ci_outputs(args, out, runner, runner.report, error=why)
            except NetlabError as problem:  # the run's own error is the one to report
                out.print(f"  {problem}", highlight=False, markup=False)
        raise
    if args.json:
        out.print_json(json.dumps(result.to_json(), default=str))
    else:
        render_scenario.render(result, out, terminal_plot=args.out is None)
    _ci_outputs(args, out, runner, result)
    return 0 if result.passed else 1


def _ci_outputs(args: argparse.Namespace, out: Console, runner: Runner, report: ScenarioReport, error: str | None = None) -> None:
    """``--junit FILE`` and, in a GitHub Actions job, groups and annotations (on stderr with
    ``--json``, so stdout stays JSON)."""
    from netlab.scenario import cases, github_actions, junit
    from netlab.scenario.spec import source_lines

    github = github_actions.enabled()
    if args.junit is None and not github:
        return
    lines = source_lines(args.file)
    lab_lines = {lab.name: line for lab, line in zip(runner.labs, lines.labs, strict=False)}
    found = cases.build_cases(report, runner.scenario, lines, lab_lines, error, runner.building if error is not None else None)
    if args.junit is not None:
        document = junit.render(found, report.scenario, report.source, report.started, report.duration, report.conditions)
        try:
            junit.write(args.junit, document)
        except OSError as exc:
            raise UsageError(f"--junit {args.junit}: cannot write it: {exc.strerror or exc}") from None
        if not args.json:
            out.print(f"  junit: {args.junit}", highlight=False, markup=False)
    if github:
        console = Console(stderr=True, highlight=False) if args.json else out
        for line in github_actions.render(found, args.file, lab_lines):
            console.print(line, markup=False, highlight=False, soft_wrap=True, emoji=False)


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
