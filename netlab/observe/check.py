"""``netlab check``: ping every meaningful pair of a running lab and say which paths work.

Sources are every pod (hostNetwork ones included) and node; targets are every pod, node and
the internet host. Each pair is a :class:`PingPair` with a category (``pod → pod, cross node``,
``node → pod, same node``, ``pod → internet`` ...) and an expectation: in a pod network every
path must work; with Docker's docker0 a container's address is local to its host, so a
container (or host) reaching a container on *another* host must fail (experiment 2).

Expected paths are pinged in parallel (``ip netns exec NS ping -c1 -W1``, at most
``workers`` at once, one retry). Paths that must fail are probed one at a time and judged by
the target namespace's ICMP ``InEchos`` counter: with docker0 the other host's container
often has the *same* address as a local one, so a reply alone proves nothing — only an echo
request arriving in the target's namespace does.

:func:`run` returns a :class:`Reachability` matrix: plain data, which ``netlab check`` renders
(:mod:`netlab.cli.render.check`); :meth:`Reachability.as_json` is the ``--json`` form. Exit
status: 1 if any path is not as expected.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable
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
class PingPair:
    """A source, a target and what must happen when the source pings the target."""

    src: str
    dst: str
    src_ns: str
    dst_ns: str
    ip: str
    category: str
    expect: bool  # True: must reach; False: must not reach


@dataclass
class Result:
    """What happened to one :class:`PingPair`."""

    pair: PingPair
    reached: bool
    rtt_ms: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reached == self.pair.expect


def _kind(ep: Host) -> str:
    if ep.kind == "pod":
        return "hostNetwork pod" if ep.host_network else "pod"
    return ep.kind


def _node_of(ep: Host) -> str | None:
    return ep.node if ep.kind == "pod" else (ep.name if ep.kind == "node" else None)


def pairs(endpoints: Iterable[Host], cni: str) -> list[PingPair]:
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
            out.append(PingPair(src.name, dst.name, src.ns, dst.ns, str(dst.ip), category, expect))
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
) -> Reachability:
    """Ping every pair; expected paths in parallel, must-fail paths one by one."""
    send = pinger or ping
    count = counter or echo_requests
    todo = pairs(endpoints, cni)
    must = [p for p in todo if p.expect]
    must_not = [p for p in todo if not p.expect]

    def expected(pair: PingPair) -> Result:
        reached, rtt = send(pair.src_ns, pair.ip)
        if not reached:  # one retry: the first packet may wait for ARP
            reached, rtt = send(pair.src_ns, pair.ip)
        return Result(pair, reached, rtt, "" if reached else "no reply")

    results: dict[PingPair, Result] = {}
    if must:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(must)))) as pool:
            for result in pool.map(expected, must):
                results[result.pair] = result
    for pair in must_not:
        before = count(pair.dst_ns)
        answered, rtt = send(pair.src_ns, pair.ip)
        arrived = count(pair.dst_ns) > before
        if arrived:
            detail = f"{pair.dst} received the echo request"
        elif answered:
            detail = f"answered, but not by {pair.dst}: {pair.ip} is also an address on {pair.src}'s host"
        else:
            detail = "no reply"
        results[pair] = Result(pair, arrived, rtt if arrived else None, detail)
    return Reachability(lab, cni, [results[p] for p in todo], [e for e in endpoints if e.kind in ("pod", "node", "internet")])


@dataclass
class Reachability:
    """The reachability matrix of a lab: one :class:`Result` per :class:`PingPair`."""

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
            row = rows.setdefault(r.pair.category, [0, 0])
            row[0] += r.ok
            row[1] += 1
            expect[r.pair.category] = expect.get(r.pair.category, True) and r.pair.expect
        return [(c, good, total, expect[c]) for c, (good, total) in rows.items()]

    def as_json(self) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "cni": self.cni,
            "ok": self.ok,
            "summary": [{"category": c, "as_expected": g, "total": t, "must_reach": e} for c, g, t, e in self.summary()],
            "results": [
                {**asdict(r.pair), "reached": r.reached, "ok": r.ok, "rtt_ms": r.rtt_ms, "detail": r.detail}
                for r in self.results
            ],
        }
