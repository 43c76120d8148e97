"""``netlab check``: ping the meaningful pairs of a running lab and say which paths work.

Sources are pods (hostNetwork ones included) and nodes; targets are pods, nodes and the
internet host. Each pair is a :class:`PingPair` with a category (``pod → pod, cross node``,
``node → pod, same node``, ``pod → internet`` ...) and an expectation: in a pod network every
path must work; with Docker's docker0 a container's address is local to its host, so a
container (or host) reaching a container on *another* host must fail (experiment 2).

Which pairs (:func:`select`): the full matrix grows with the square of the pods (1,008,016
pairs for 1000 pods on 10 nodes), so by default check probes a *representative* set: the full
matrix of the lab cut down to every node and, on each node, the first two pods of each kind
(ordinary pods, per attachment such as a secondary ENI; one hostNetwork pod, as they all share
the node's namespace). That keeps every node pair (the routes, FDB and tunnel entries a
datapath writes per pair of nodes), every kind of pod on every node as source and target,
pod → pod on the same node, and so every path type (category and expectation) the lab has.
A lab with at most two pods of each kind per node is probed completely; ``--all``
(``every=True``) probes the full matrix of any lab.

Expected paths are pinged in parallel (one echo request each, as ``ping -c1 -W1`` sends it,
from a raw socket in the source namespace: :func:`ping`; at most ``workers`` at once, one
retry). Paths that must fail are probed one at a time and judged by
the target namespace's ICMP ``InEchos`` counter: with docker0 the other host's container
often has the *same* address as a local one, so a reply alone proves nothing — only an echo
request arriving in the target's namespace does.

:func:`run` returns a :class:`Reachability` matrix: plain data, which ``netlab check`` renders
(:mod:`netlab.cli.render.check`); :meth:`Reachability.as_json` is the ``--json`` form. Exit
status: 1 if any path is not as expected.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import struct
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any

from netlab.kernel import netns
from netlab.kernel.inspect import NeighbourTable, neighbour_table
from netlab.observe import icmp
from netlab.plan import Host

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


def _probed(endpoints: Iterable[Host]) -> list[Host]:
    return [e for e in endpoints if e.kind in ("pod", "node", "internet") and e.ip is not None]


def _pair(src: Host, dst: Host, cni: str) -> PingPair:
    """What ``src`` pinging ``dst`` is called and must do."""
    if dst.kind == "internet":
        category, expect = f"{_kind(src)} → internet", True
    else:
        same = _node_of(src) == _node_of(dst)
        category = f"{_kind(src)} → {_kind(dst)}, {'same node' if same else 'cross node'}"
        if dst.kind == "node" and src.kind == "node":
            category = "node → node"
        # docker0: a container's address means something only on its own host
        expect = not (cni == "docker0" and dst.kind == "pod" and not dst.host_network and not same)
    return PingPair(src.name, dst.name, src.ns, dst.ns, str(dst.ip), category, expect)


def pairs(endpoints: Iterable[Host], cni: str) -> list[PingPair]:
    """Every meaningful (source, target) pair of a lab, with what must happen."""
    eps = _probed(endpoints)
    sources = [e for e in eps if e.kind in ("pod", "node")]
    # not itself, nor a hostNetwork pod and its own node (one namespace)
    return [_pair(src, dst, cni) for src in sources for dst in eps if dst.ns != src.ns]


def count_pairs(endpoints: Iterable[Host]) -> int:
    """How many pairs :func:`pairs` gives, without making them (a million for 1000 pods)."""
    eps = _probed(endpoints)
    sources = [e for e in eps if e.kind in ("pod", "node")]
    per_ns: dict[str, list[int]] = {}
    for e in eps:
        per_ns.setdefault(e.ns, [0, 0])[1] += 1
    for e in sources:
        per_ns[e.ns][0] += 1
    return len(sources) * len(eps) - sum(src * dst for src, dst in per_ns.values())


PODS_PER_KIND = 2  # pods of each kind kept per node: pod → pod on the same node takes two


def representatives(endpoints: Iterable[Host]) -> list[Host]:
    """The endpoints a representative check probes between, in the lab's order: every node and
    the internet, and per node the first :data:`PODS_PER_KIND` pods of each kind (ordinary pods
    per attachment; one hostNetwork pod, since they are all the node's own namespace)."""
    kept: list[Host] = []
    seen: dict[tuple[str | None, bool, str], int] = {}
    for e in _probed(endpoints):
        if e.kind == "pod":
            key = (e.node, e.host_network, e.attachment)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > (1 if e.host_network else PODS_PER_KIND):
                continue
        kept.append(e)
    return kept


def path_types(chosen: Iterable[PingPair]) -> set[tuple[str, bool]]:
    """The distinct (category, must reach) of some pairs."""
    return {(p.category, p.expect) for p in chosen}


@dataclass(frozen=True)
class Selection:
    """The pairs a check probes, out of how many the lab has, and why those."""

    pairs: list[PingPair]
    possible: int
    representative: bool  # False: the full matrix (asked for with --all, or the lab is that small)

    @property
    def why(self) -> str:
        if not self.representative:
            return f"every pair ({self.possible:,})"
        return (f"representative: every node pair, {PODS_PER_KIND} pods of each kind per node, every path type "
                f"({len(self.pairs):,} of {self.possible:,} pairs); --all for all {self.possible:,}")


def select(endpoints: Iterable[Host], cni: str, every: bool = False) -> Selection:
    """The pairs to probe: the full matrix with ``every``, else the representative set (see the module)."""
    eps = list(endpoints)
    possible = count_pairs(eps)
    if every:
        return Selection(pairs(eps, cni), possible, False)
    chosen = pairs(representatives(eps), cni)
    return Selection(chosen, possible, len(chosen) < possible)


_IDENTS = itertools.count(random.randrange(0x10000))
_PAYLOAD = 56  # bytes, as ping sends by default
_UNREACHABLE, _TIME_EXCEEDED = 3, 11


def ping(ns: str, ip: str, wait: float = 1.0) -> tuple[bool, float | None]:
    """One echo request from namespace ``ns`` to ``ip``, as ``ping -c1 -W1`` sends it: (answered, RTT in ms).

    Sent on a raw ICMP socket opened inside ``ns`` (by a helper thread), not by starting
    ``ip netns exec NS ping``: that copies the machine's mount table into a new mount
    namespace, whose size grows with every namespace's bind mount (measured: 2 ms a probe
    with 200 namespaces, 15 ms with 1000). A reply counts when it carries this probe's
    identifier and payload; an ICMP error quoting the probe ends the wait at once.
    """
    ident = next(_IDENTS) & 0xFFFF
    payload = os.urandom(8) + bytes(_PAYLOAD - 8)
    sock = netns.run_in(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    with sock:
        sent = time.perf_counter()
        try:
            sock.sendto(icmp.echo_request(ident, 1, payload), (ip, 0))
        except OSError:  # no route to it, for one
            return False, None
        deadline = sent + wait
        while (left := deadline - time.perf_counter()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except TimeoutError:
                break
            now = time.perf_counter()
            header = (data[0] & 0x0F) * 4
            kind, _code, _sum, rid, rseq = struct.unpack_from("!BBHHH", data, header)
            if kind == icmp.ECHO_REPLY and (rid, rseq) == (ident, 1) and data[header + 8 :] == payload:
                return True, (now - sent) * 1000
            if kind in (_UNREACHABLE, _TIME_EXCEEDED) and len(data) >= header + 8 + 20 + 8:
                quoted = data[header + 8 :]  # the IP header and first 8 bytes of what could not be delivered
                inner = (quoted[0] & 0x0F) * 4
                if len(quoted) >= inner + 8 and struct.unpack_from("!BBHHH", quoted, inner)[::3] == (icmp.ECHO_REQUEST, ident):
                    return False, None
    return False, None


def echo_requests(ns: str) -> int:
    """ICMP echo requests namespace ``ns`` has received (``Icmp: InEchos`` of its /proc/net/snmp)."""

    def read() -> int:
        with open("/proc/thread-self/net/snmp") as handle:
            rows = [line.split() for line in handle if line.startswith("Icmp:")]
        return int(dict(zip(rows[0][1:], rows[1][1:], strict=True))["InEchos"])

    return netns.run_in(ns, read)


Progress = Callable[[int, int], None]  # (pairs probed, pairs to probe)


def run(
    endpoints: Iterable[Host],
    cni: str,
    lab: str = "",
    pinger: Pinger | None = None,
    counter: EchoCounter | None = None,
    workers: int = 16,
    every: bool = False,
    progress: Progress | None = None,
    selection: Selection | None = None,
    neighbours: Callable[[], NeighbourTable | None] | None = None,
) -> Reachability:
    """Ping the ``selection`` of pairs (default: :func:`select`'s, the full matrix with ``every``);
    expected paths in parallel, must-fail paths one by one. ``progress`` is called after each pair.
    ``neighbours`` reads the machine's ARP table before and after: a lab of thousands of pods can
    need more entries than the one table all namespaces share may hold, and the report says so."""
    send = pinger or ping
    count = counter or echo_requests
    eps = list(endpoints)
    selection = selection or select(eps, cni, every)
    todo = selection.pairs
    must = [p for p in todo if p.expect]
    must_not = [p for p in todo if not p.expect]
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, len(todo))

    def expected(pair: PingPair) -> Result:
        reached, rtt = send(pair.src_ns, pair.ip)
        if not reached:  # one retry: the first packet may wait for ARP
            reached, rtt = send(pair.src_ns, pair.ip)
        return Result(pair, reached, rtt, "" if reached else "no reply")

    neighbours = neighbours or neighbour_table
    table_before = neighbours()
    results: dict[PingPair, Result] = {}
    if must:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(must)))) as pool:
            futures = [pool.submit(expected, pair) for pair in must]
            try:
                for future in as_completed(futures):
                    result = future.result()
                    results[result.pair] = result
                    tick()
            except BaseException:  # Ctrl-C: wait for the pings in flight only, not for every one queued
                for future in futures:
                    future.cancel()
                raise
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
        tick()
    hosts = [e for e in eps if e.kind in ("pod", "node", "internet")]
    report = Reachability(lab, cni, [results[p] for p in todo], hosts, selection.possible, selection.why)
    table_after = neighbours()
    if table_before and table_after and table_after.overflows > table_before.overflows:
        report.neighbour_overflows, report.neighbour_limit = table_after.overflows - table_before.overflows, table_after.limit
    return report


@dataclass
class Reachability:
    """The reachability matrix of a lab: one :class:`Result` per :class:`PingPair`."""

    lab: str
    cni: str
    results: list[Result]
    hosts: list[Host] = field(default_factory=list)
    possible: int = 0  # pairs the lab has; len(results) of them were probed
    selection: str = ""  # which pairs, and why (Selection.why)
    neighbour_overflows: int = 0  # times the machine's ARP table was full while probing
    neighbour_limit: int = 0  # its size (the host's net.ipv4.neigh.default.gc_thresh3)

    @property
    def warnings(self) -> list[str]:
        """What may have made paths fail besides the lab itself."""
        if not self.neighbour_overflows:
            return []
        return [f"the kernel's ARP table was full {self.neighbour_overflows:,} times during this check: it is one table for "
                f"every namespace on the machine, at most {self.neighbour_limit:,} entries (the host's "
                "net.ipv4.neigh.default.gc_thresh3), so a path may have failed for want of an entry, not because of the lab; "
                "raise gc_thresh1/2/3 for a lab this big (README, \"Speed\")"]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    def raise_for_failures(self) -> Reachability:
        """Raise :class:`~netlab.errors.ExpectationFailed` listing every path that did not behave
        as expected (a must-reach pair that got no reply, a must-fail pair that arrived); return
        ``self`` when all did, so ``lab.check().raise_for_failures()`` reads as one statement."""
        from netlab.errors import ExpectationFailed

        bad = self.failures
        if not bad:
            return self
        lines = [f"  {r.pair.src} -> {r.pair.dst} ({r.pair.ip}, {r.pair.category}): "
                 f"{'must reach' if r.pair.expect else 'must not reach'}, {r.detail or ('reached' if r.reached else 'no reply')}"
                 for r in bad]
        raise ExpectationFailed(f"lab {self.lab}: {len(bad)} of {len(self.results)} path(s) did not behave as expected:\n"
                                + "\n".join(lines) + "\n(`netlab check " + self.lab + "` shows the matrix)")

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
            "probed": len(self.results),
            "possible": self.possible,
            "selection": self.selection,
            "warnings": self.warnings,
            "summary": [{"category": c, "as_expected": g, "total": t, "must_reach": e} for c, g, t, e in self.summary()],
            "results": [
                {**asdict(r.pair), "reached": r.reached, "ok": r.ok, "rtt_ms": r.rtt_ms, "detail": r.detail}
                for r in self.results
            ],
        }
