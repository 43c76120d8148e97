"""Build benchmark: netlab against a hand-written iproute2 ``-batch`` script (issue 2, "Speed").

Both sides build the same lab in the same invocation: one Docker host (experiment 1's
layout, without the internet) with N containers, then tear it down::

    <lab>-underlay  bridge lan, port host1-eth0
    <lab>-host1     eth0 192.168.1.11/24, ip_forward=1, docker0 172.17.0.1/16,
                    veth<7 hex> per container enslaved to docker0, dockerd's nat table
    <lab>-cK        eth0 172.17.x.y/16 (MAC 02:42:<ip>), default via 172.17.0.1

netlab builds it through its Python API (topology -> plan -> NetlinkBackend). The script
is what a person would write for the same result with iproute2 alone, as efficiently as
iproute2 allows: ``ip -batch`` cannot switch namespace per line, so it is one ``ip -batch``
for all ``netns add`` lines, one ``ip -n <ns> -batch`` per namespace for everything inside
it (veth pairs created with the peer directly in the container's namespace), one
``iptables-restore`` and one ``sysctl``; teardown is one ``ip -batch`` of ``netns del``
lines. The script runs under one ``bash`` (the way a person runs a script).

Printed: build and teardown seconds (wall clock), the build's CPU seconds, peak memory, the ratio, and PASS/FAIL against the
targets. Memory is the peak resident set: for netlab, of its own process (``getrusage``;
most of it is the Python interpreter and imports, so the growth while building is shown
too); for the script, of its largest process (bash, ip, iptables-restore), measured by
GNU ``time`` (apt package ``time``) because the kernel charges a child the RSS of the
Python process it was forked from. ``--tracemalloc`` adds a separate run measuring
netlab's Python heap peak. The targets are:
netlab's build at most half the script's, teardown under 1 s, nothing left behind
(no namespace of either lab, no netlab state record or journal).

    sudo .venv/bin/python benchmarks/build.py                      # 500 containers
    sudo .venv/bin/python benchmarks/build.py --containers 100 --repeat 3 --lab t2-bench

Exit code: 0 all targets met, 1 a target missed, 3 not root.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netlab import lab as netlab_lab  # noqa: E402
from netlab import names
from netlab.datapaths import make_plan  # noqa: E402
from netlab.kernel import netns  # noqa: E402
from netlab.model import Topology, parse_topology  # noqa: E402
from netlab.state import LabState  # noqa: E402

DOCKER_NET = ipaddress.IPv4Network("172.17.0.0/16")
NODE = "host1"


@dataclass
class Run:
    build: float
    teardown: float
    peak_rss_mb: float | None
    left: list[str] = field(default_factory=list)
    rss_growth_mb: float = 0.0
    cpu: float = 0.0  # user + system seconds spent building (this process, or the script's processes)


def topology(lab: str, containers: int) -> Topology:
    pods = [{"name": f"c{i}"} for i in range(containers)]
    if pods:
        pods[0]["ports"] = ["8080:80"]
    return parse_topology({"name": lab, "network": {"cni": "docker0"}, "nodes": [{"name": NODE, "pods": pods}]}, "<benchmark>")


def leftovers(lab: str) -> list[str]:
    left = [f"netns {n}" for n in netns.list_names() if n.startswith(f"{lab}-")]
    left += [f"state {p}" for p in (LabState.path_for(lab), LabState.journal_for(lab)) if p.exists()]
    return left


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def settle(timeout: float = 15.0) -> None:
    """Wait for the kernel to finish freeing deleted namespaces (it does so asynchronously),
    so one side's teardown does not slow the other side's build."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        count = _live_netns()
        if count is None:
            time.sleep(2)
            return
        if count == last:
            return
        last = count
        time.sleep(0.5)


def _live_netns() -> int | None:
    try:
        for line in Path("/proc/slabinfo").read_text().splitlines():
            if line.startswith("net_namespace "):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# --------------------------------------------------------------------- netlab
def run_netlab(lab: str, containers: int, profile: str | None = None) -> Run:
    topo = topology(lab, containers)
    rss_before = maxrss_mb(resource.RUSAGE_SELF)
    cpu_before = cpu_seconds(resource.RUSAGE_SELF)
    start = time.perf_counter()
    plan = make_plan(topo, "<benchmark>")
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    netlab_lab.up(topo, plan, "<benchmark>")
    if profile:
        profiler.disable()
        profiler.dump_stats(profile)
    built = time.perf_counter()
    cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu_before
    netlab_lab.down(lab)
    done = time.perf_counter()
    peak = maxrss_mb(resource.RUSAGE_SELF)
    return Run(built - start, done - built, peak, leftovers(lab), rss_growth_mb=peak - rss_before, cpu=cpu)


def netlab_heap_peak(lab: str, containers: int) -> float:
    """netlab's Python heap peak while building (a separate, slower run under tracemalloc)."""
    topo = topology(lab, containers)
    tracemalloc.start()
    try:
        netlab_lab.up(topo, make_plan(topo, "<benchmark>"), "<benchmark>")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        if LabState.load(lab) is not None:
            netlab_lab.down(lab)
    return peak / 2**20


# --------------------------------------------------------------------- the script
def write_script(lab: str, containers: int, workdir: Path) -> tuple[Path, Path]:
    """Write build.sh / teardown.sh and their batch files; return the two scripts."""
    ns_under, ns_host = f"{lab}-underlay", f"{lab}-{NODE}"
    ns_pods = [f"{lab}-c{i}" for i in range(containers)]
    every = [ns_under, ns_host, *ns_pods]
    gateway = DOCKER_NET.network_address + 1

    (workdir / "netns.batch").write_text("".join(f"netns add {ns}\n" for ns in every))
    (workdir / "underlay.batch").write_text(
        "link set lo up\n"
        "link add lan mtu 1500 type bridge\n"
        "link set lan up\n"
        f"link add {NODE}-eth0 mtu 1500 type veth peer name eth0 mtu 1500 netns {ns_host}\n"
        f"link set {NODE}-eth0 master lan\n"
        f"link set {NODE}-eth0 up\n"
    )
    host = [
        "link set lo up",
        "link set eth0 up",
        "addr add 192.168.1.11/24 dev eth0",
        "link add docker0 address 02:42:5e:00:00:01 mtu 1500 type bridge",
        f"addr add {gateway}/16 dev docker0",
        "link set docker0 up",
    ]
    for i, ns in enumerate(ns_pods):
        ip = DOCKER_NET.network_address + 2 + i
        veth = "veth" + f"{i:07x}"
        host += [
            f"link add {veth} mtu 1500 type veth peer name eth0 address {names.docker_mac(str(ip))} mtu 1500 netns {ns}",
            f"link set {veth} master docker0",
            f"link set {veth} up",
        ]
        (workdir / f"c{i}.batch").write_text(
            f"link set lo up\nlink set eth0 up\naddr add {ip}/16 dev eth0\nroute add default via {gateway}\n"
        )
    (workdir / "host.batch").write_text("\n".join(host) + "\n")
    first = DOCKER_NET.network_address + 2
    (workdir / "nat.rules").write_text(
        "*nat\n:DOCKER - [0:0]\n"
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n"
        "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER\n"
        f"-A POSTROUTING -s {DOCKER_NET} ! -o docker0 -j MASQUERADE\n"
        + (f"-A POSTROUTING -s {first}/32 -d {first}/32 -p tcp -m tcp --dport 80 -j MASQUERADE\n" if containers else "")
        + "-A DOCKER -i docker0 -j RETURN\n"
        + (f"-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination {first}:80\n" if containers else "")
        + "COMMIT\n"
    )
    build = workdir / "build.sh"
    lines = [
        "set -e",
        f"cd {workdir}",
        "ip -batch netns.batch",
        f"ip -n {ns_under} -batch underlay.batch",
        f"ip -n {ns_host} -batch host.batch",
        f"ip netns exec {ns_host} sysctl -qw net.ipv4.ip_forward=1",
        f"ip netns exec {ns_host} iptables-restore --noflush -w < nat.rules",
    ]
    lines += [f"ip -n {ns} -batch c{i}.batch" for i, ns in enumerate(ns_pods)]
    build.write_text("\n".join(lines) + "\n")
    (workdir / "teardown.batch").write_text("".join(f"netns del {ns}\n" for ns in reversed(every)))
    teardown = workdir / "teardown.sh"
    teardown.write_text(f"set -e\ncd {workdir}\nip -batch teardown.batch\n")
    return build, teardown


def run_script(lab: str, containers: int, workdir: Path) -> Run:
    build, teardown = write_script(lab, containers, workdir)
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    rss_file = workdir / "maxrss.kb"
    # GNU time reports the peak RSS of bash and every process it waited for, in KB
    prefix = [timer, "-f", "%M", "-o", str(rss_file)] if timer else []
    cpu_before = cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([*prefix, "bash", str(build)], capture_output=True, text=True)
    built = time.perf_counter()
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    down = subprocess.run(["bash", str(teardown)], capture_output=True, text=True)
    finished = time.perf_counter()
    try:
        peak: float | None = int(rss_file.read_text().split()[-1]) / 1024
    except (OSError, ValueError, IndexError):
        peak = None
    if done.returncode != 0 or down.returncode != 0:
        for ns in netns.list_names():  # our own lab's namespaces only
            if ns.startswith(f"{lab}-"):
                netns.remove(ns)
        raise SystemExit(f"the iproute2 script failed: {done.stderr.strip()} {down.stderr.strip()}")
    return Run(built - start, finished - built, peak, leftovers(lab), cpu=cpu)


# --------------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=500, help="containers on the host (default 500)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side; medians are compared (default 1)")
    parser.add_argument("--lab", default="bench", help="netlab lab name; the script uses <lab>-sh (default bench)")
    parser.add_argument("--tracemalloc", action="store_true", help="add a run measuring netlab's Python heap peak")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of netlab's (last) build to FILE")
    parser.add_argument("--keep-script", metavar="DIR", help="write the iproute2 script and batch files to DIR and keep them")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks/build.py needs root (it builds namespaces): sudo .venv/bin/python benchmarks/build.py", file=sys.stderr)
        return 3
    lab, script_lab = args.lab, f"{args.lab}-sh"
    for name in (lab, script_lab):
        if len(name) > 16 or leftovers(name):
            print(f"lab name {name!r} is too long or already in use: pick another --lab", file=sys.stderr)
            return 2

    keep = Path(args.keep_script) if args.keep_script else None
    netlab_runs: list[Run] = []
    script_runs: list[Run] = []
    for r in range(args.repeat):
        # alternate which side goes first, and let the kernel finish freeing namespaces between sides
        for side in (("script", "netlab") if r % 2 == 0 else ("netlab", "script")):
            settle()
            if side == "netlab":
                netlab_runs.append(run_netlab(lab, args.containers, args.profile))
            elif keep:
                keep.mkdir(parents=True, exist_ok=True)
                script_runs.append(run_script(script_lab, args.containers, keep))
            else:
                with tempfile.TemporaryDirectory(prefix="netlab-bench-") as tmp:
                    script_runs.append(run_script(script_lab, args.containers, Path(tmp)))
    heap = netlab_heap_peak(lab, args.containers) if args.tracemalloc else None

    def med(runs: list[Run], attr: str) -> float:
        return statistics.median(getattr(run, attr) for run in runs)

    nb, nt = med(netlab_runs, "build"), med(netlab_runs, "teardown")
    sb, st = med(script_runs, "build"), med(script_runs, "teardown")
    ops = len(make_plan(topology(lab, args.containers)))
    print(f"one docker0 host, {args.containers} containers ({ops} netlab operations, {args.containers + 2} namespaces); "
          f"median of {args.repeat} run(s)")
    netlab_rss = max(r.peak_rss_mb or 0 for r in netlab_runs)
    growth = max(r.rss_growth_mb for r in netlab_runs)
    script_rss = [r.peak_rss_mb for r in script_runs if r.peak_rss_mb is not None]
    script_mem = f"{max(script_rss):>13.1f}" if script_rss else f"{'n/a':>13}"
    nc, sc = med(netlab_runs, "cpu"), med(script_runs, "cpu")
    print(f"{'':18}{'build s':>10}{'build CPU s':>13}{'teardown s':>12}{'peak RSS MB':>13}")
    print(f"{'netlab':18}{nb:>10.3f}{nc:>13.3f}{nt:>12.3f}{netlab_rss:>13.1f}   "
          f"(its process: Python and imports; +{growth:.1f} MB while building)")
    print(f"{'iproute2 script':18}{sb:>10.3f}{sc:>13.3f}{st:>12.3f}{script_mem}   "
          f"(its largest process{'' if script_rss else ': install GNU time'})")
    print("(build CPU: user+system seconds of the building processes, less sensitive to other load than wall time)")
    if heap is not None:
        print(f"netlab Python heap peak while building (tracemalloc): {heap:.1f} MB")
    if len(netlab_runs) > 1:
        print("all runs, build s: netlab " + " ".join(f"{r.build:.3f}" for r in netlab_runs)
              + " · script " + " ".join(f"{r.build:.3f}" for r in script_runs))
    ratio = nb / sb if sb else float("inf")
    print(f"netlab build / script build = {ratio:.2f}")

    left = [item for run in netlab_runs + script_runs for item in run.left] + leftovers(lab) + leftovers(script_lab)
    checks = [
        (f"netlab build <= half the script's ({nb:.3f} s vs {sb / 2:.3f} s)", nb <= sb / 2),
        (f"netlab teardown < 1 s ({nt:.3f} s)", nt < 1.0),
        ("nothing left behind" + (f" (left: {', '.join(sorted(set(left))[:5])})" if left else ""), not left),
    ]
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _text, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
