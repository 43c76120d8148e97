"""``netlab check``: ping every meaningful pair of a running lab and say which paths work.

Sources are every pod (hostNetwork ones included) and node; targets are every pod, node and
the internet host. Each pair is a *probe* with a category (``pod → pod, cross node``,
``node → pod, same node``, ``pod → internet`` ...) and an expectation: in a pod network every
path must work; with Docker's docker0 a container's address is local to its host, so a
container (or host) reaching a container on *another* host must fail (experiment 2).

Expected paths are pinged in parallel (``ip netns exec NS ping -c1 -W1``, at most
``workers`` at once, one retry). Paths that must fail are probed one at a time and judged by
the target namespace's ICMP ``InEchos`` counter: with docker0 the other host's container
often has the *same* address as a local one, so a reply alone proves nothing — only an echo
request arriving in the target's namespace does.

The report renders itself with rich (``console.print(report)``); :meth:`Report.as_json` is
the ``--json`` form. Exit status: 1 if any path is not as expected.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from netlab.errors import EnvironmentProblem
from netlab.kernel import netns
from netlab.plan import Host

_RTT = re.compile(r"time=([\d.]+) ms")
Pinger = Callable[[str, str], "tuple[bool, float | None]"]
EchoCounter = Callable[[str], int]


@dataclass(frozen=True)
class Probe:
    src: str
    dst: str
    src_ns: str
    dst_ns: str
    ip: str
    category: str
    expect: bool  # True: must reach; False: must not reach


@dataclass
class Result:
    probe: Probe
    reached: bool
    rtt_ms: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reached == self.probe.expect


def _kind(ep: Host) -> str:
    if ep.kind == "pod":
        return "hostNetwork pod" if ep.host_network else "pod"
    return ep.kind


def _node_of(ep: Host) -> str | None:
    return ep.node if ep.kind == "pod" else (ep.name if ep.kind == "node" else None)


def probes(endpoints: Iterable[Host], cni: str) -> list[Probe]:
    """Every meaningful (source, target) pair of a lab, with what must happen."""
    eps = [e for e in endpoints if e.kind in ("pod", "node", "internet") and e.ip is not None]
    sources = [e for e in eps if e.kind in ("pod", "node")]
    out = []
    for src in sources:
        for dst in eps:
            if dst.ns == src.ns:  # itself, or a hostNetwork pod and its own node
                continue
            if dst.kind == "internet":
                category, expect = f"{_kind(src)} → internet", True
            else:
                same = _node_of(src) == _node_of(dst)
                category = f"{_kind(src)} → {_kind(dst)}, {'same node' if same else 'cross node'}"
                if dst.kind == "node" and src.kind == "node":
                    category = "node → node"
                # docker0: a container's address means something only on its own host
                expect = not (cni == "docker0" and dst.kind == "pod" and not dst.host_network and not same)
            out.append(Probe(src.name, dst.name, src.ns, dst.ns, str(dst.ip), category, expect))
    return out


def ping(ns: str, ip: str, wait: int = 1) -> tuple[bool, float | None]:
    """One echo request from namespace ``ns`` to ``ip``: (answered, RTT in ms)."""
    argv = netns.exec_argv(ns, ["ping", "-n", "-c1", f"-W{wait}", ip])
    try:
        # ping itself gives up after `wait`; the margin is for slow machines (an emulated VM)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=wait + 60)
    except FileNotFoundError as exc:
        raise EnvironmentProblem(f"{exc.filename} is missing: apt install iproute2 iputils-ping") from None
    except subprocess.TimeoutExpired:
        return False, None
    if done.returncode == 2 and "not found" in done.stderr:
        raise EnvironmentProblem("ping is not installed: apt install iputils-ping")
    match = _RTT.search(done.stdout)
    return done.returncode == 0, float(match.group(1)) if match else None


def echo_requests(ns: str) -> int:
    """ICMP echo requests namespace ``ns`` has received (``Icmp: InEchos`` of its /proc/net/snmp)."""

    def read() -> int:
        with open("/proc/thread-self/net/snmp") as handle:
            rows = [line.split() for line in handle if line.startswith("Icmp:")]
        return int(dict(zip(rows[0][1:], rows[1][1:], strict=True))["InEchos"])

    return netns.run_in(ns, read)


def run(
    endpoints: Iterable[Host],
    cni: str,
    lab: str = "",
    pinger: Pinger | None = None,
    counter: EchoCounter | None = None,
    workers: int = 16,
) -> Report:
    """Probe every pair; expected paths in parallel, must-fail paths one by one."""
    send = pinger or ping
    count = counter or echo_requests
    todo = probes(endpoints, cni)
    must = [p for p in todo if p.expect]
    must_not = [p for p in todo if not p.expect]

    def expected(probe: Probe) -> Result:
        reached, rtt = send(probe.src_ns, probe.ip)
        if not reached:  # one retry: the first packet may wait for ARP
            reached, rtt = send(probe.src_ns, probe.ip)
        return Result(probe, reached, rtt, "" if reached else "no reply")

    results: dict[Probe, Result] = {}
    if must:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(must)))) as pool:
            for result in pool.map(expected, must):
                results[result.probe] = result
    for probe in must_not:
        before = count(probe.dst_ns)
        answered, rtt = send(probe.src_ns, probe.ip)
        arrived = count(probe.dst_ns) > before
        if arrived:
            detail = f"{probe.dst} received the echo request"
        elif answered:
            detail = f"answered, but not by {probe.dst}: {probe.ip} is also an address on {probe.src}'s host"
        else:
            detail = "no reply"
        results[probe] = Result(probe, arrived, rtt if arrived else None, detail)
    return Report(lab, cni, [results[p] for p in todo], [e for e in endpoints if e.kind in ("pod", "node", "internet")])


def _display_order(endpoints: list[Host]) -> list[Host]:
    """Pods grouped under their node (ordinary, then hostNetwork), then the node; the internet last."""
    nodes = [e for e in endpoints if e.kind == "node"]
    out = []
    for node in nodes:
        pods = [e for e in endpoints if e.kind == "pod" and e.node == node.name]
        out += [e for e in pods if not e.host_network] + [e for e in pods if e.host_network] + [node]
    return out + [e for e in endpoints if e not in out]


_KINDS = ("pod", "hostNetwork pod", "node", "internet")


def _rank(category: str) -> tuple[int, int, int]:
    src, _, rest = category.partition(" → ")
    dst, _, where = rest.partition(", ")
    return (_KINDS.index(src) if src in _KINDS else 9, _KINDS.index(dst) if dst in _KINDS else 9, where == "cross node")


@dataclass
class Report:
    lab: str
    cni: str
    results: list[Result]
    hosts: list[Host] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> list[tuple[str, int, int, bool]]:
        """(category, as expected, total, must reach) per category, in first-seen order."""
        rows: dict[str, list[int]] = {}
        expect: dict[str, bool] = {}
        for r in self.results:
            row = rows.setdefault(r.probe.category, [0, 0])
            row[0] += r.ok
            row[1] += 1
            expect[r.probe.category] = expect.get(r.probe.category, True) and r.probe.expect
        return [(c, good, total, expect[c]) for c, (good, total) in rows.items()]

    def as_json(self) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "cni": self.cni,
            "ok": self.ok,
            "summary": [{"category": c, "as_expected": g, "total": t, "must_reach": e} for c, g, t, e in self.summary()],
            "results": [
                {**asdict(r.probe), "reached": r.reached, "ok": r.ok, "rtt_ms": r.rtt_ms, "detail": r.detail}
                for r in self.results
            ],
        }

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.table import Table
        from rich.text import Text

        cells = {(r.probe.src, r.probe.dst): r for r in self.results}
        ordered = _display_order(self.hosts)
        sources = [e for e in ordered if any(r.probe.src == e.name for r in self.results)]
        targets = [e for e in ordered if any(r.probe.dst == e.name for r in self.results)]
        matrix = Table(title=f"netlab check {self.lab} (cni {self.cni}): ✓ reached · ✗ no reply · ⊘ blocked as it must be", title_justify="left")
        matrix.add_column("from \\ to", no_wrap=True)
        for ep in targets:
            matrix.add_column(ep.name, justify="center", overflow="fold")
        for ep in sources:
            src = ep.name
            where = "hostNetwork" if ep.host_network else str(ep.ip)
            row: list[Any] = [f"{src} [dim]{where}[/]"]
            for ep in targets:
                r = cells.get((src, ep.name))
                if r is None:
                    row.append("")
                elif r.probe.expect:
                    row.append(Text("✓", "green") if r.reached else Text("✗", "bold red"))
                else:
                    row.append(Text("⊘", "green") if not r.reached else Text("LEAK", "bold red"))
            matrix.add_row(*row)
        yield matrix
        summary = Table("path", "as expected", "", title_justify="left")
        for category, good, total, must in sorted(self.summary(), key=lambda row: _rank(row[0])):
            what = "" if must else " (must fail)"
            mark = Text("ok", "green") if good == total else Text("FAIL", "bold red")
            summary.add_row(category + what, f"{good}/{total}", mark)
        yield summary
        for r in self.failures:
            want = "should reach" if r.probe.expect else "must NOT reach"
            yield Text(f"✗ {r.probe.src} → {r.probe.dst} ({r.probe.ip}) {want} it: {r.detail}", "red")
        total = len(self.results)
        if self.ok:
            yield Text(f"all {total} paths as expected", "bold green")
        else:
            yield Text(f"{len(self.failures)} of {total} paths not as expected", "bold red")
