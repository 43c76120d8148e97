"""Kubernetes objects in a running lab: ``apply``, ``delete``, ``scale``, ``requests``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from rich.console import Console
from rich.markup import escape

from netlab import api, lab
from netlab.cli.render import services as render_services
from netlab.errors import EnvironmentProblem, UsageError
from netlab.kernel import netns
from netlab.state import LabState


def cmd_apply(args: argparse.Namespace, out: Console, state: LabState) -> int:
    for line in api.Lab(state.lab, state.source).apply(args.filename, dry_run=args.dry_run):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    return 0


def cmd_delete(args: argparse.Namespace, out: Console, state: LabState) -> int:
    from netlab.services import cluster, manifests

    lines: list[str] = []
    if args.filename:
        lines += manifests.delete_file(state, args.filename)
    keys = []
    for target in args.targets:
        kind, _, name = target.partition("/")
        if kind not in ("service", "svc", "services") or not name:
            raise UsageError(f"cannot delete {target!r}: give service/NAME (or NAMESPACE/NAME after service/), or -f FILE")
        keys.append(name if "/" in name else f"default/{name}")
    if keys:
        known = {s.key for s in cluster.services_of(state)}
        missing = [k for k in keys if k not in known]
        if missing:
            raise UsageError(f"lab {state.lab!r} has no service {', '.join(missing)}; services: {', '.join(sorted(known))}")
        cluster.delete_services(state, keys)
        lines += [f'service "{k.split("/", 1)[1]}" deleted' for k in keys]
    if not lines and not args.filename:
        raise UsageError("nothing to delete: netlab delete LAB -f FILE, or netlab delete LAB service/NAME")
    for line in lines:
        out.print(line, highlight=False)
    return 0


def cmd_scale(args: argparse.Namespace, out: Console, state: LabState) -> int:
    from netlab.services import cluster, ingress_apply

    deploy = cluster.scale(state, args.deployment, args.replicas)
    out.print(f"deployment.apps/{args.deployment} scaled to {args.replicas}: {', '.join(deploy.pods) or 'no pods'}", highlight=False, markup=False)
    problem = ingress_apply.loaded(state)
    if problem:
        out.print(f"[yellow]warning:[/] the ingress controller did not load its new upstreams: {escape(problem)}")
    return 0


def cmd_requests(args: argparse.Namespace, out: Console, state: LabState) -> int:
    from netlab.services.processes import program

    ep = lab.host(state, args.source)
    options = [f"--header={h}" for h in args.header] + [f"--resolve={r}" for r in args.resolve]
    if args.cacert:
        options.append(f"--cacert={os.path.abspath(args.cacert)}")
    if args.insecure:
        options.append("--insecure")
    argv = netns.exec_argv(ep.ns, [sys.executable, *program("client"), args.url, "-n", str(args.count), *options])
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode == 2:
        raise UsageError(done.stderr.strip().removeprefix("netlab-requests: "))
    if done.returncode != 0:
        raise EnvironmentProblem(f"the request client failed in {ep.ns}: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    if args.json:
        out.print_json(json.dumps(result))
        return 0 if not result["errors"] else 1
    out.print(render_services.requests_table(result, args.count, args.source, args.url))
    return 0 if not result["errors"] else 1
