"""The table of commands, and the argparse parser built from it.

One :class:`Command` per ``netlab`` command: its name, handler, help, arguments, and what it
needs before its handler runs. :func:`netlab.cli.app.run_command` reads those needs:

- ``prepare``: reads and checks the command's input first (bad input exits 2 whoever runs it);
- ``needs_root``: refuses without root (exit 3) before anything else is looked at;
- ``changes_lab``: holds the lab's lock (:mod:`netlab.locks`) from before its record is read
  until the handler returns; another command changing the same lab fails fast, or with
  ``--wait`` (added to such commands) waits for it;
- ``needs_lab``: resolves the ``lab`` argument to the running lab (an unknown one exits 1) and
  passes its :class:`~netlab.state.LabState` to the handler (``None`` when ``lab`` is optional
  and was not given).

Arguments are checked by their ``type=`` before any of that (argparse exits 2 naming the
argument): a LAB must be a lab name (the rule ``up`` applies, :func:`netlab.names.lab_name_problem`,
so it can never name a path outside the state directory), counts and ports must be in range,
timeouts positive and finite.

A new command is a handler in :mod:`netlab.cli.commands` and one entry here.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netlab import names
from netlab.cli.commands import lab, lesson, observe, services, tools

DESCRIPTION = "Kubernetes and container networking, built for real in network namespaces."
COMMAND = "_netlab_command"  # where the parser leaves the chosen Command in the parsed args

Handler = Callable[..., int]  # (args, console) -> exit code; (args, console, state) when needs_lab


@dataclass(frozen=True)
class Arg:
    """One argument, as ``argparse.ArgumentParser.add_argument`` takes it."""

    names: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


def arg(*names: str, **options: Any) -> Arg:
    return Arg(names, options)


@dataclass(frozen=True)
class Command:
    """A ``netlab`` command: what it is called, what runs it, what it needs first."""

    name: str
    handler: Handler
    help: str
    args: tuple[Arg, ...] = ()
    needs_root: bool = False
    needs_lab: bool = False
    changes_lab: bool = False
    prepare: Callable[[argparse.Namespace], None] | None = None


MAX_SECONDS = 365 * 86400.0  # a year: longer waits overflow the thread primitives (and are typos)


def lab_name(text: str) -> str:
    """A LAB argument: a valid lab name, checked before it becomes a path or a namespace prefix."""
    problem = names.lab_name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer argument from ``low`` to ``high`` (inclusive; no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {bounds} (got {text!r})")
        return value

    return parse


def seconds(text: str) -> float:
    """A timeout: a number of seconds, more than 0 and at most a year."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, more than 0 and at most {MAX_SECONDS:.0f} (got {text!r})")
    return value


PORT = integer(1, 65535)
LAB = arg("lab", type=lab_name)
JSON = arg("--json", action="store_true")
WAIT = arg("--wait", action="store_true", help="if another netlab command is changing the lab, wait for it (default: fail at once)")

COMMANDS: tuple[Command, ...] = (
    Command(
        "up", lab.cmd_up, "build a lab from a topology file",
        (arg("file"), arg("--name", type=lab_name, help="build it under this lab name instead of the file's"), WAIT),
        needs_root=True, changes_lab=True, prepare=lab.read_topology,
    ),
    Command("down", lab.cmd_down, "tear a lab down (no topology file needed)", (LAB, WAIT), needs_root=True, changes_lab=True),
    Command(
        "status", lab.cmd_status, "show labs, or one lab's namespaces, interfaces, addresses and routes",
        (arg("lab", nargs="?", type=lab_name), JSON), needs_root=True, needs_lab=True,
    ),
    Command(
        "exec", lab.cmd_exec, "run a command inside a node, pod, or the internet host",
        (LAB, arg("target"), arg("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")),
        needs_root=True, needs_lab=True, prepare=lab.command_after_dashes,
    ),
    Command(
        "node", lab.cmd_node,
        "add a Calico node to a running lab (it joins the BGP mesh and claims a block), or stop or start a node's BGP daemon (BIRD)",
        (
            arg("action", choices=("add", "stop", "start")), LAB, arg("node"),
            arg("--subnet", help="add: the underlay subnet of the new node (default: the first)"), WAIT,
        ),
        needs_root=True, needs_lab=True, changes_lab=True,
    ),
    Command(
        "plan", lab.cmd_plan, "print the kernel operations a topology takes, as ip/iptables commands",
        (arg("file"), arg("--services", action="store_true",
                          help="instead: its Services as up makes them (load-balancer addresses and leaders, DNS, kube-proxy's rules per node)")),
    ),
    Command(
        "lesson", lesson.cmd_lesson, "walk through a lesson (docs/lessons/) step by step; --check: run it unattended and compare outputs",
        (
            arg("lesson", metavar="N|FILE", help="a lesson's number, or a lesson file"),
            arg("--check", action="store_true", help="run every command unattended (under other lab names) and compare its output with the lesson's"),
            arg("--no-pause", action="store_true", help="do not wait for Enter between commands"),
        ),
        needs_root=True, prepare=lesson.read_lesson,
    ),
    Command(
        "run", tools.cmd_run, "run a scenario: build its labs, run its steps, report, tear down",
        (
            arg("file"),
            arg("-o", "--out", metavar="DIR", help="keep artifacts: report.json, plots, pcaps"),
            arg("--json", action="store_true", help="print the report as JSON"),
            arg("--samples", type=integer(10, 200_000), help="override the RTT sample count of every rtt step (10-200000, as in a scenario file)"),
            arg("--junit", metavar="FILE", help="also write JUnit XML for CI: one testcase per step and lab"),
        ),
        prepare=tools.check_run_args,
    ),
    Command(
        "capture", observe.cmd_capture, "capture packets on TARGET:IFACE (node, pod, internet, gateway, underlay), like tcpdump",
        (
            LAB,
            arg("at", metavar="TARGET:IFACE"),
            arg("--filter", metavar="BPF", help="kernel filter in tcpdump syntax, e.g. 'icmp or udp port 8472'"),
            arg("--count", type=integer(1), metavar="N", help="stop after N packets"),
            arg("--timeout", type=seconds, metavar="S", help="stop after S seconds (default: Ctrl-C)"),
            arg("-w", "--write", metavar="FILE.pcap", help="also write a pcap (tcpdump -r / Wireshark open it)"),
            arg("-q", "--quiet", action="store_true", help="no per-packet lines"),
        ),
        needs_root=True, needs_lab=True,
    ),
    Command(
        "trace", observe.cmd_trace, "send a probe from SRC to DST and show it at every hop, with what changed and a verdict",
        (
            LAB,
            arg("src", metavar="SRC", help="pod, node or internet"),
            arg("dst", metavar="DST", help="pod, node, Service, internet, an IPv4 address (a LoadBalancer's EXTERNAL-IP), or a DNS name SRC resolves"),
            arg("--proto", choices=("icmp", "udp", "tcp"), default="icmp"),
            arg("--port", type=PORT, help="UDP/TCP destination port, 1-65535 (default 8080; a listener answers in DST)"),
            arg("--host", metavar="NAME", help="TCP: send an HTTP request with this Host header (an Ingress or Gateway host rule; default: DST)"),
            arg("--path", metavar="PATH", help="TCP: send an HTTP request for PATH (default /)"),
            arg("--timeout", type=seconds, default=3.0, metavar="S", help="wait S seconds for the reply"),
            JSON,
            arg("-w", "--write", metavar="DIR", help="keep one pcap per hop in DIR"),
            arg("--graph", metavar="FILE", help="also draw the path on a picture of the lab, numbered hop by hop (.svg, .png or .dot)"),
        ),
        needs_root=True, needs_lab=True, prepare=observe.graph_output,
    ),
    Command(
        "graph", observe.cmd_graph,
        "draw a lab (running: read from the kernel; a topology FILE: its plan) as a picture: namespaces, interfaces, addresses, wires",
        (
            arg("source", metavar="LAB|FILE", help="a running lab's name, or a topology file (nothing is built)"),
            arg("-o", "--out", metavar="FILE", required=True, help="the picture: .svg, .png, or .dot (Graphviz source)"),
        ),
        prepare=observe.graph_input,
    ),
    Command(
        "check", observe.cmd_check,
        "ping a representative set of pairs of a lab (every node pair, two pods of each kind per node, every path type) and show a matrix",
        (
            LAB, JSON,
            arg("--all", action="store_true", help="ping every pair of pods, nodes and the internet (grows with the square of the pods)"),
            arg("--workers", type=integer(1), default=16, help="pings in flight at once (default 16)"),
        ),
        needs_root=True, needs_lab=True,
    ),
    Command(
        "apply", services.cmd_apply, "create or update Services, Pods and Deployments in a running lab from Kubernetes manifests",
        (
            LAB,
            arg("-f", "--filename", required=True, metavar="FILE",
                help="YAML manifests (v1 Service, Pod, Secret, apps/v1 Deployment, networking.k8s.io/v1 Ingress, IngressClass)"),
            arg("--dry-run", action="store_true", help="change nothing: print the nginx.conf the ingress controller or a Gateway would load"),
            WAIT,
        ),
        needs_root=True, needs_lab=True, changes_lab=True,
    ),
    Command(
        "delete", services.cmd_delete, "delete Services (and the Deployments and Pods of a manifest) from a running lab, like kubectl delete",
        (
            LAB,
            arg("targets", nargs="*", metavar="service/NAME"),
            arg("-f", "--filename", metavar="FILE", help="delete what these manifests describe"),
            WAIT,
        ),
        needs_root=True, needs_lab=True, changes_lab=True,
    ),
    Command(
        "scale", services.cmd_scale, "set a deployment's replicas; endpoints and kube-proxy rules follow",
        (LAB, arg("deployment"), arg("replicas", type=integer(0)), WAIT),
        needs_root=True, needs_lab=True, changes_lab=True,
    ),
    Command(
        "requests", services.cmd_requests, "send N requests from a pod or node; count which pod answered and what it saw",
        (
            LAB,
            arg("source", metavar="FROM"),
            arg("url", help="http://web, http://10.96.0.100:80/, https://foo.example.com/, tcp://HOST:PORT, udp://HOST:PORT"),
            arg("-n", "--count", type=integer(1), default=100),
            arg("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="a request header, e.g. -H 'Host: foo.example.com'"),
            arg("--resolve", action="append", default=[], metavar="NAME:PORT:ADDR", help="connect to ADDR for NAME:PORT, as curl --resolve"),
            arg("--cacert", metavar="FILE", help="verify https with this CA certificate"),
            arg("-k", "--insecure", action="store_true", help="https without verifying the certificate"),
            JSON,
        ),
        needs_root=True, needs_lab=True,
    ),
    Command(
        "clean", lab.cmd_clean, "remove everything any netlab lab left behind (and nothing else)", (WAIT,),
        needs_root=True,
    ),
    Command("doctor", tools.cmd_doctor, "check what this machine's kernel and tools can do", (JSON,)),
    Command(
        "versions", tools.cmd_versions,
        "what netlab emulates: each upstream component's pinned release, what is modelled and what is not", (JSON,),
    ),
    Command(
        "vm", tools.cmd_vm, "run a netlab command in a throwaway VM booting a stock kernel (for features this kernel lacks)",
        (
            arg("--kernel", help="kernel image to boot (default: $NETLAB_VM_KERNEL, else the newest /boot/vmlinuz-* with modules)"),
            arg("--cpus", type=integer(1), default=2),
            arg("--memory", default="2G"),
            arg("--kvm", action="store_true", help="use KVM (default: software emulation, slower but works everywhere)"),
            arg("command", nargs=argparse.REMAINDER, help="-- netlab COMMAND ..."),
        ),
    ),
)


def build_parser(commands: tuple[Command, ...] = COMMANDS) -> argparse.ArgumentParser:
    """``netlab``'s parser: one subcommand per entry of the table, in the table's order."""
    parser = argparse.ArgumentParser(prog="netlab", description=DESCRIPTION)
    sub = parser.add_subparsers(metavar="COMMAND")
    for command in commands:
        sp = sub.add_parser(command.name, help=command.help, description=command.help)
        sp.set_defaults(**{COMMAND: command})
        for a in command.args:
            sp.add_argument(*a.names, **a.options)
    return parser
