"""Kubernetes objects in a running lab: ``apply``, ``scale``, ``requests``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from rich.console import Console

from netlab import lab
from netlab.cli.render import services as render_services
from netlab.errors import EnvironmentProblem
from netlab.kernel import netns
from netlab.state import LabState


def cmd_apply(args: argparse.Namespace, out: Console, state: LabState) -> int:
    from netlab.services import manifests

    for line in manifests.apply_file(state, args.filename):
        out.print(line, highlight=False, markup=False)
    return 0


def cmd_scale(args: argparse.Namespace, out: Console, state: LabState) -> int:
    from netlab.services import cluster

    deploy = cluster.scale(state, args.deployment, args.replicas)
    out.print(f"deployment.apps/{args.deployment} scaled to {args.replicas}: {', '.join(deploy.pods) or 'no pods'}", highlight=False, markup=False)
    return 0


def cmd_requests(args: argparse.Namespace, out: Console, state: LabState) -> int:
    from netlab.services.processes import program

    ep = lab.host(state, args.source)
    argv = netns.exec_argv(ep.ns, [sys.executable, *program("client"), args.url, "-n", str(args.count)])
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise EnvironmentProblem(f"the request client failed in {ep.ns}: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    if args.json:
        out.print_json(json.dumps(result))
        return 0 if not result["errors"] else 1
    out.print(render_services.requests_table(result, args.count, args.source, args.url))
    return 0 if not result["errors"] else 1
