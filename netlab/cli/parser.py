"""The table of commands, and the argparse parser built from it.

One :class:`Command` per ``netlab`` command: its name, handler, help, arguments, and what it
needs before its handler runs. :func:`netlab.cli.app.run_command` reads those needs:

- ``prepare``: reads and checks the command's input first (bad input exits 2 whoever runs it);
- ``needs_root``: refuses without root (exit 3) before anything else is looked at;
- ``needs_lab``: resolves the ``lab`` argument to the running lab (an unknown one exits 1) and
  passes its :class:`~netlab.state.LabState` to the handler (``None`` when ``lab`` is optional
  and was not given).

A new command is a handler in :mod:`netlab.cli.commands` and one entry here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netlab.cli.commands import lab, observe, services, tools

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
    prepare: Callable[[argparse.Namespace], None] | None = None


LAB = arg("lab")
JSON = arg("--json", action="store_true")

COMMANDS: tuple[Command, ...] = (
    Command("up", lab.cmd_up, "build a lab from a topology file", (arg("file"),), needs_root=True, prepare=lab.read_topology),
    Command("down", lab.cmd_down, "tear a lab down (no topology file needed)", (LAB,), needs_root=True),
    Command(
        "status", lab.cmd_status, "show labs, or one lab's namespaces, interfaces, addresses and routes",
        (arg("lab", nargs="?"), JSON), needs_root=True, needs_lab=True,
    ),
    Command(
        "exec", lab.cmd_exec, "run a command inside a node, pod, or the internet host",
        (LAB, arg("target"), arg("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")),
        needs_root=True, needs_lab=True, prepare=lab.command_after_dashes,
    ),
    Command("plan", lab.cmd_plan, "print the kernel operations a topology takes, as ip/iptables commands", (arg("file"),)),
    Command(
        "run", tools.cmd_run, "run a scenario: build its labs, run its steps, report, tear down",
        (
            arg("file"),
            arg("-o", "--out", metavar="DIR", help="keep artifacts: report.json, plots, pcaps"),
            arg("--json", action="store_true", help="print the report as JSON"),
            arg("--samples", type=int, help="override the RTT sample count of every rtt step"),
        ),
    ),
    Command(
        "capture", observe.cmd_capture, "capture packets on TARGET:IFACE (node, pod, internet, gateway, underlay), like tcpdump",
        (
            LAB,
            arg("at", metavar="TARGET:IFACE"),
            arg("--filter", metavar="BPF", help="kernel filter in tcpdump syntax, e.g. 'icmp or udp port 8472'"),
            arg("--count", type=int, metavar="N", help="stop after N packets"),
            arg("--timeout", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)"),
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
            arg("dst", metavar="DST", help="pod, node, internet, or an IPv4 address"),
            arg("--proto", choices=("icmp", "udp", "tcp"), default="icmp"),
            arg("--port", type=int, help="UDP/TCP destination port (default 8080; a listener answers in DST)"),
            arg("--timeout", type=float, default=3.0, metavar="S", help="wait S seconds for the reply"),
            JSON,
            arg("-w", "--write", metavar="DIR", help="keep one pcap per hop in DIR"),
        ),
        needs_root=True, needs_lab=True,
    ),
    Command(
        "check", observe.cmd_check,
        "ping a representative set of pairs of a lab (every node pair, two pods of each kind per node, every path type) and show a matrix",
        (
            LAB, JSON,
            arg("--all", action="store_true", help="ping every pair of pods, nodes and the internet (grows with the square of the pods)"),
            arg("--workers", type=int, default=16, help="pings in flight at once (default 16)"),
        ),
        needs_root=True, needs_lab=True,
    ),
    Command(
        "apply", services.cmd_apply, "create or update Services, Pods and Deployments in a running lab from Kubernetes manifests",
        (
            LAB,
            arg("-f", "--filename", required=True, metavar="FILE",
                help="YAML manifests (v1 Service, v1 Pod, apps/v1 Deployment; several documents)"),
        ),
        needs_root=True, needs_lab=True,
    ),
    Command(
        "scale", services.cmd_scale, "set a deployment's replicas; endpoints and kube-proxy rules follow",
        (LAB, arg("deployment"), arg("replicas", type=int)),
        needs_root=True, needs_lab=True,
    ),
    Command(
        "requests", services.cmd_requests, "send N requests from a pod or node and count which pod answered",
        (
            LAB,
            arg("source", metavar="FROM"),
            arg("url", help="http://web, http://10.96.0.100:80/, tcp://HOST:PORT, udp://HOST:PORT"),
            arg("-n", "--count", type=int, default=100),
            JSON,
        ),
        needs_root=True, needs_lab=True,
    ),
    Command("clean", lab.cmd_clean, "remove everything any netlab lab left behind (and nothing else)", needs_root=True),
    Command("doctor", tools.cmd_doctor, "check what this machine's kernel and tools can do", (JSON,)),
    Command(
        "vm", tools.cmd_vm, "run a netlab command in a throwaway VM booting a stock kernel (for features this kernel lacks)",
        (
            arg("--kernel", help="kernel image to boot (default: $NETLAB_VM_KERNEL, else the newest /boot/vmlinuz-* with modules)"),
            arg("--cpus", type=int, default=2),
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
