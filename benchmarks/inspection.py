"""Inspection benchmark: ``netlab status`` against ``ip -all netns exec ip -br addr``, and
``netlab check``, on a lab of many pods (issue 11, "inspection that scales").

The lab is a Kubernetes cluster generated in Python: a pod network (``--cni``, default
host-gw) with ``--pods`` pods spread over as many nodes as it takes at ``--per-node`` pods a
node (default 110, Kubernetes' default max pods), one LAN, an internet host. netlab builds
it (``netlab.build.up``), then, in the same invocation, ``--repeat`` rounds alternate
which side goes first:

- **netlab status**: the CLI's own code in-process (``netlab.cli.main(["status", LAB])``),
  its output drawn to a console writing to /dev/null;
- **the baseline**, what a person types to see every namespace's addresses:
  ``ip -all netns exec ip -br addr``. That command walks *every* namespace on the machine,
  so the baseline is its equivalent for the lab's namespaces only: one ``ip -batch`` of
  ``netns exec NS ip -br addr`` lines (one ``ip`` process that forks a child per namespace,
  which switches namespace and runs ``ip -br addr``, exactly as ``-all`` does). When the
  machine has no namespace but the lab's, the literal ``ip -all netns exec ip -br addr``
  is timed too.

Then ``netlab check LAB`` (its default, representative selection) runs once
(``--check-repeat``; its report is printed if a path failed), and the lab is torn down.

Printed: medians and every run, the ratio, and PASS/FAIL against the targets: ``status``
within 2x of the baseline (the issue's target is for 5,000 pods), ``check`` under 60 s with
every path as expected (the target is for 1,000 pods), nothing left behind.

    sudo .venv/bin/python benchmarks/inspect.py                     # 1000 pods, 10 nodes
    sudo .venv/bin/python benchmarks/inspect.py --pods 5000 --repeat 1 --no-literal
    sudo .venv/bin/python benchmarks/inspect.py --pods 200 --cni vxlan --profile /tmp/status.prof

Exit code: 0 all targets met, 1 a target missed, 2 bad arguments (lab name in use), 3 not root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for `python benchmarks/inspection.py`

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from rich.console import Console  # noqa: E402

from netlab import build, lab  # noqa: E402
from netlab.cli import main as netlab_main  # noqa: E402
from netlab.kernel import netns  # noqa: E402
from netlab.model import Topology, parse_topology  # noqa: E402
from netlab.observe import check, status  # noqa: E402
from netlab.state import LabState  # noqa: E402

STATUS_RATIO = 2.0  # netlab status at most this many times the baseline
CHECK_SECONDS = 60.0


def topology(name: str, cni: str, pods: int, per_node: int) -> Topology:
    """``pods`` pods on ceil(pods / per_node) nodes, filled in order."""
    nodes: list[dict[str, Any]] = []
    left, n = pods, 0
    while left > 0 or not nodes:
        n += 1
        here = min(per_node, left)
        nodes.append({"name": f"node{n}", "pods": [{"name": f"p{n}-{i}"} for i in range(1, here + 1)]})
        left -= here
    network: dict[str, Any] = {"cni": cni, "subnets": [{"name": "lan", "cidr": "192.168.0.0/20"}], "internet": "203.0.113.0/24"}
    if cni != "docker0":
        network["podCIDR"] = "10.244.0.0/16"
    return parse_topology({"name": name, "network": network, "nodes": nodes}, "<benchmark>")


def leftovers(name: str) -> list[str]:
    left = [f"netns {n}" for n in netns.list_names() if n.startswith(f"{name}-")]
    left += [f"state {p}" for p in (LabState.path_for(name), LabState.journal_for(name)) if p.exists()]
    return left


def settle(timeout: float = 60.0) -> None:
    """Wait for the kernel to finish freeing deleted namespaces (it does so asynchronously)."""
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        try:
            count = next(int(line.split()[1]) for line in Path("/proc/slabinfo").read_text().splitlines()
                         if line.startswith("net_namespace "))
        except (OSError, StopIteration):
            time.sleep(2)
            return
        if count == last:
            return
        last = count
        time.sleep(1.0)


_DEVNULL: list[Any] = []


def null_console() -> Console:
    """A console drawing to /dev/null (one file for the whole run)."""
    if not _DEVNULL:
        _DEVNULL.append(open(os.devnull, "w"))  # noqa: SIM115
    return Console(file=_DEVNULL[0], width=120)


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run_baseline(argv: list[str], expect_lines: int) -> float:
    took, done = timed(lambda: subprocess.run(argv, capture_output=True, text=True))
    if done.returncode != 0 or len(done.stdout.splitlines()) < expect_lines:
        raise SystemExit(f"baseline {' '.join(argv)} failed: {done.returncode} {done.stderr.strip()[:300]}")
    return float(took)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=1000, help="pods in the lab (default 1000)")
    parser.add_argument("--per-node", type=int, default=110, help="pods per node (default 110, Kubernetes' default max pods)")
    parser.add_argument("--cni", default="host-gw", choices=("host-gw", "vxlan", "docker0"), help="pod network (default host-gw)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of status and the baseline, alternating (default 3)")
    parser.add_argument("--check-repeat", type=int, default=1, help="runs of netlab check (default 1; 0 skips it)")
    parser.add_argument("--lab", default="hs-inspect", help="lab name (default hs-inspect)")
    parser.add_argument("--no-literal", action="store_true",
                        help="time only the ip -batch baseline, not also the literal ip -all netns exec (it takes as long)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the last netlab status to FILE")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks/inspect.py needs root (it builds namespaces): sudo .venv/bin/python benchmarks/inspect.py", file=sys.stderr)
        return 3
    if len(args.lab) > 16 or leftovers(args.lab):
        print(f"lab name {args.lab!r} is too long or already in use: pick another --lab", file=sys.stderr)
        return 2

    topo = topology(args.lab, args.cni, args.pods, args.per_node)
    settle()
    build_s, state = timed(lambda: build.up(topo, "<benchmark>"))
    try:
        names = list(state.namespaces)
        views = status.collect(state)
        lines = sum(len(v.interfaces) for v in views)  # what `ip -br addr` prints, a line per interface
        with tempfile.NamedTemporaryFile("w", suffix=".batch", prefix="netlab-bench-") as batch:
            batch.write("".join(f"netns exec {ns} ip -br addr\n" for ns in names))
            batch.flush()
            runs: dict[str, list[float]] = {"status": [], "collect": [], "baseline": [], "all": []}
            for r in range(args.repeat):
                for side in (("baseline", "status") if r % 2 == 0 else ("status", "baseline")):
                    if side == "baseline":
                        runs["baseline"].append(run_baseline(["ip", "-batch", batch.name], lines))
                        if not args.no_literal and set(netns.list_names()) == set(names):  # nothing but this lab: the literal command
                            runs["all"].append(run_baseline(["ip", "-all", "netns", "exec", "ip", "-br", "addr"], lines))
                        continue
                    took, code = timed(lambda: netlab_main(["status", args.lab], console=null_console()))
                    if code != 0:
                        raise SystemExit(f"netlab status exited {code}")
                    runs["status"].append(took)
                    runs["collect"].append(timed(lambda: status.collect(state))[0])
            if args.profile:
                import cProfile

                cProfile.runctx("netlab_main(['status', args.lab], console=null_console())", globals(), locals(), args.profile)
        selection = check.select(state.host_objects(), state.cni)
        check_runs: list[tuple[float, int]] = []
        check_out = ""
        for _ in range(args.check_repeat):
            console = Console(file=io.StringIO(), width=160, color_system=None)
            check_runs.append(timed(lambda: netlab_main(["check", args.lab], console=console)))  # noqa: B023 (called at once)
            if check_runs[-1][1] != 0:
                check_out = console.file.getvalue()  # type: ignore[attr-defined]
    finally:
        down_s, _ = timed(lambda: lab.down(args.lab))
    settle()

    med = {k: statistics.median(v) for k, v in runs.items() if v}
    nodes = len(topo.nodes)
    print(f"{args.cni} lab {args.lab}: {args.pods} pods on {nodes} nodes ({len(names)} namespaces), "
          f"built in {build_s:.1f} s, down in {down_s:.1f} s; {args.repeat} round(s), sides alternating")
    print(f"{'':56}{'median s':>10}   runs")

    def row(label: str, key: str, note: str = "") -> None:
        print(f"{label:56}{med[key]:>10.3f}   {' '.join(f'{v:.3f}' for v in runs[key])}{note}")

    row(f"netlab status {args.lab} (CLI in-process, to /dev/null)", "status")
    row("  of which reading the namespaces (status.collect)", "collect")
    row("ip -batch: netns exec NS ip -br addr, the lab's namespaces", "baseline")
    if runs["all"]:
        row("ip -all netns exec ip -br addr", "all", "   (only this lab's namespaces were on the machine)")
    else:
        why = "--no-literal" if args.no_literal else "other namespaces are on this machine"
        print(f"ip -all netns exec ip -br addr: not timed ({why})")
    ratio = med["status"] / med["baseline"]
    print(f"netlab status / baseline = {ratio:.3f}")
    if check_runs:
        check_s = statistics.median(t for t, _code in check_runs)
        codes = {code for _t, code in check_runs}
        print(f"netlab check {args.lab}: {len(selection.pairs):,} of {selection.possible:,} pairs (representative), "
              f"{check_s:.1f} s (runs: {' '.join(f'{t:.1f}' for t, _c in check_runs)}), exit {'/'.join(map(str, sorted(codes)))}")

    if check_out:  # what went wrong: the check's report without its matrix
        print("netlab check's report (its last 40 lines):")
        print("\n".join(check_out.splitlines()[-40:]))

    left = leftovers(args.lab)
    checks = [(f"netlab status within {STATUS_RATIO:g}x of the baseline ({med['status']:.3f} s vs {med['baseline']:.3f} s)",
               ratio <= STATUS_RATIO)]
    if check_runs:
        checks.append((f"netlab check under {CHECK_SECONDS:.0f} s, every path as expected ({check_s:.1f} s, exit {max(codes)})",
                       check_s < CHECK_SECONDS and codes == {0}))
    checks.append(("nothing left behind" + (f" (left: {', '.join(left[:5])})" if left else ""), not left))
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _text, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
