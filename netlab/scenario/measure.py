"""Measuring paths in a built lab: RTT, TCP request/response latency, throughput.

- RTT: ICMP echo answered by the *kernel* of the target namespace (no user-space server
  in the path), sent from a raw ICMP socket in the source namespace (:func:`icmp_rtts`:
  receive timestamps are the kernel's). Samples of compared paths are taken in interleaved chunks, in a new
  random order every round, so drift of the machine hits every path alike.
- TCP request/response: ``sockperf ping-pong`` (server in the target namespace).
- Throughput: ``iperf3`` (server in the target namespace), one stream and parallel.
- Statistics: percentiles, and for each path against a baseline the p50 difference in µs
  and the p50 ratio with bootstrap 95% confidence intervals.

Every process started in a namespace is stopped before the function returns.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netlab.errors import EnvironmentProblem, NetlabError
from netlab.kernel import cgroup, netns
from netlab.observe import icmp


class MeasurementError(NetlabError):
    """A measurement could not be taken (no replies, a tool failed)."""


@dataclass(frozen=True)
class Stats:
    n: int
    min: float
    p50: float
    p90: float
    p99: float
    mean: float
    stddev: float
    unit: str = "us"

    @classmethod
    def of(cls, samples: Sequence[float], unit: str = "us") -> Stats:
        if not samples:
            raise MeasurementError("no samples: nothing came back")
        a = np.asarray(samples, dtype=float)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(len(a), float(a.min()), float(p50), float(p90), float(p99), float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0, unit)


@dataclass(frozen=True)
class Comparison:
    """``other`` against ``baseline``: p50 difference (µs) and ratio, with 95% CIs."""

    diff_p50: float
    diff_ci: tuple[float, float]
    ratio_p50: float
    ratio_ci: tuple[float, float]

    @property
    def significant(self) -> bool:
        low, high = self.diff_ci
        return low > 0 or high < 0


def compare(
    baseline: Sequence[float] | Sequence[Sequence[float]],
    other: Sequence[float] | Sequence[Sequence[float]],
    resamples: int = 2000,
    seed: int = 1,
) -> Comparison:
    """p50 difference and ratio of ``other`` against ``baseline`` with 95% bootstrap CIs.

    Given flat samples, samples are resampled independently. Given *rounds* (lists of
    samples taken side by side, as :func:`interleaved` does), whole rounds are resampled and
    kept paired across the two paths (a paired block bootstrap): drift of the machine from
    one round to the next then widens the interval instead of hiding in it.
    """
    rng = np.random.default_rng(seed)
    if len(baseline) and isinstance(baseline[0], (list, tuple, np.ndarray)):
        a_rounds = [np.asarray(r, dtype=float) for r in baseline]  # type: ignore[arg-type]
        b_rounds = [np.asarray(r, dtype=float) for r in other]  # type: ignore[arg-type]
        if len(a_rounds) != len(b_rounds):
            raise ValueError("paired rounds: both paths need the same number of rounds")
        a, b = np.concatenate(a_rounds), np.concatenate(b_rounds)
        picks = rng.integers(0, len(a_rounds), (resamples, len(a_rounds)))
        ma = np.array([np.median(np.concatenate([a_rounds[i] for i in pick])) for pick in picks])
        mb = np.array([np.median(np.concatenate([b_rounds[i] for i in pick])) for pick in picks])
    else:
        a = np.asarray(baseline, dtype=float)
        b = np.asarray(other, dtype=float)
        ma = np.median(a[rng.integers(0, len(a), (resamples, len(a)))], axis=1)
        mb = np.median(b[rng.integers(0, len(b), (resamples, len(b)))], axis=1)
    diffs = mb - ma
    ratios = mb / np.where(ma == 0, np.nan, ma)
    d_lo, d_hi = np.percentile(diffs, [2.5, 97.5])
    r_lo, r_hi = np.nanpercentile(ratios, [2.5, 97.5])
    base50, other50 = float(np.median(a)), float(np.median(b))
    return Comparison(
        other50 - base50, (float(d_lo), float(d_hi)), other50 / base50 if base50 else float("nan"), (float(r_lo), float(r_hi))
    )


def percentile_ci(
    rounds: Sequence[Sequence[float]], q: float, resamples: int = 2000, seed: int = 1
) -> tuple[float, tuple[float, float]]:
    """The ``q``-th percentile of samples taken in rounds, with a 95% CI from a block bootstrap
    over whole rounds (as :func:`compare` resamples them): drift between rounds widens it."""
    kept = [np.asarray(r, dtype=float) for r in rounds if len(r)]
    if not kept:
        raise MeasurementError("no samples: nothing came back")
    value = float(np.percentile(np.concatenate(kept), q))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(kept), (resamples, len(kept)))
    boot = np.array([np.percentile(np.concatenate([kept[i] for i in pick]), q) for pick in picks])
    low, high = np.percentile(boot, [2.5, 97.5])
    return value, (float(low), float(high))


def warnings_for(stats: Stats, cpu_busy: float | None = None, min_samples: int = 1000) -> list[str]:
    """Reasons not to trust a result."""
    out = []
    if stats.n < min_samples:
        out.append(f"only {stats.n} samples (want >= {min_samples})")
    if stats.p50 > 0 and stats.p99 / stats.p50 > 10:
        out.append(f"p99 is {stats.p99 / stats.p50:.0f}x p50: heavy tail, the machine was likely busy")
    if cpu_busy is not None and cpu_busy > 0.9:
        out.append(f"CPU {cpu_busy:.0%} busy during the run: figures are inflated")
    return out


# ------------------------------------------------------------------ RTT
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("qq")


def icmp_rtts(
    src_ns: str, dst: str, count: int, interval: float = 0.0002, size: int = 56, timeout: float = 1.0, cpu: int | None = 0
) -> list[float]:
    """``count`` ICMP echo RTTs in µs, at nanosecond resolution, from ``src_ns`` to ``dst``.

    Like ping, but the reply's time is the kernel's receive timestamp (SO_TIMESTAMPNS) and
    the figure keeps its nanoseconds (iputils prints whole µs, which made every bootstrap
    interval of a median collapse to zero width). The sending thread is pinned to ``cpu``
    (veth paths are processed on the sending CPU) and never sleeps between probes: on a VM
    the wake-up latency of an idle vCPU is larger than the datapath and bimodal, and made
    medians of the same path jump by 10-20 µs between runs (measured here: p50 overhead
    +4..+15 µs with 2 ms gaps, +5..+6 µs pinned with 0.2 ms gaps). The echo is answered by
    the target's kernel: no user-space server in the path.
    """

    def sample() -> list[float]:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})  # this thread only
        ident = random.randrange(1, 0xFFFF)
        payload = bytes(range(256)) * (size // 256 + 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.settimeout(timeout)
            out: list[float] = []
            for seq in range(count):
                packet = icmp.echo_request(ident, seq & 0xFFFF, payload[:size])
                sent = time.time_ns()
                sock.sendto(packet, (dst, 0))
                while True:
                    try:
                        data, ancillary, _flags, _addr = sock.recvmsg(65535, socket.CMSG_SPACE(_TIMESPEC.size))
                    except TimeoutError:
                        break  # lost: no sample
                    header = (data[0] & 0x0F) * 4
                    kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", data[header : header + 8])
                    if kind != 0 or rid != ident or rseq != seq & 0xFFFF:
                        continue  # another ICMP message reaching this namespace
                    received = next(
                        (a * 1_000_000_000 + b for level, kind2, value in ancillary
                         if level == socket.SOL_SOCKET and kind2 == SO_TIMESTAMPNS
                         for a, b in [_TIMESPEC.unpack(value[: _TIMESPEC.size])]),
                        time.time_ns(),
                    )
                    out.append((received - sent) / 1000.0)
                    break
                until = time.perf_counter() + interval
                while time.perf_counter() < until:  # busy: the CPU must not idle
                    pass
            return out
        finally:
            sock.close()

    samples = netns.run_in(src_ns, sample)
    if not samples:
        raise MeasurementError(f"no echo replies from {dst} (from {src_ns})")
    return samples


def interleaved(
    samplers: dict[str, Callable[[int], list[float]]],
    total: int,
    chunk: int = 100,
    warmup: int = 50,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[list[float]]]:
    """Take ``total`` samples from every sampler in rounds of ``chunk``, in a new random
    order every round. Returns each path's samples round by round (for :func:`compare`)."""
    rng = random.Random(seed)
    for sampler in samplers.values():
        sampler(warmup)  # ARP, caches, conntrack entries: not part of the result
    out: dict[str, list[list[float]]] = {name: [] for name in samplers}
    rounds = -(-total // chunk)
    for done in range(rounds):
        order = list(samplers)
        rng.shuffle(order)
        want = min(chunk, total - done * chunk)
        for name in order:
            out[name].append(samplers[name](want))
        if progress:
            progress(done + 1, rounds)
    return out


def flat(rounds: Sequence[Sequence[float]]) -> list[float]:
    return [value for r in rounds for value in r]


# ------------------------------------------------------------------ servers in namespaces
@contextmanager
def server(ns: str, argv: list[str], ready_after: float = 0.3, group: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """Run a server inside ``ns`` for the duration of a block; always stopped afterwards. In
    cgroup ``group`` (the lab's), so that ``down`` stops it even if this process dies first."""
    proc = subprocess.Popen(netns.exec_argv(ns, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=cgroup.joiner(group))
    try:
        time.sleep(ready_after)
        if proc.poll() is not None:
            raise MeasurementError(f"{argv[0]} in {ns} exited at start: {proc.stderr.read().strip() if proc.stderr else ''}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise EnvironmentProblem(f"{tool} is not installed: run sudo scripts/setup.sh (it installs {tool})")


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MeasurementError(f"timed out after {timeout:.0f}s: {' '.join(argv)}") from None
    except FileNotFoundError as exc:
        raise EnvironmentProblem(f"{exc.filename} is not installed: run sudo scripts/setup.sh") from None


_SOCKPERF_PCT = re.compile(r"percentile\s+([0-9.]+)\s*=\s*([0-9.]+)")
_SOCKPERF_AVG = re.compile(r"avg-latency=([0-9.]+)")


def tcp_rr(src_ns: str, dst_ns: str, dst: str, seconds: float = 2.0, port: int = 11111, group: Path | None = None) -> dict[str, float]:
    """TCP request/response latency (one-way = RTT/2, as sockperf reports it), in µs."""
    _need("sockperf")
    with server(dst_ns, ["sockperf", "server", "--tcp", "-i", dst, "-p", str(port)], group=group):
        done = _run(
            netns.exec_argv(src_ns, ["sockperf", "ping-pong", "--tcp", "-i", dst, "-p", str(port), "-t", str(seconds), "-m", "64"]),
            seconds + 30,
        )
    found = {float(p): float(v) for p, v in _SOCKPERF_PCT.findall(done.stdout)}
    avg = _SOCKPERF_AVG.search(done.stdout)
    if not found or not avg:
        raise MeasurementError(f"sockperf from {src_ns} to {dst} gave no result: {(done.stdout + done.stderr).strip()[-300:]}")
    return {"avg": float(avg.group(1)), "p50": found.get(50.0, float("nan")), "p99": found.get(99.0, float("nan"))}


def throughput(
    src_ns: str, dst_ns: str, dst: str, seconds: float = 3.0, streams: int = 1, port: int = 5201, group: Path | None = None
) -> float:
    """TCP throughput in Gbit/s with iperf3."""
    _need("iperf3")
    with server(dst_ns, ["iperf3", "-s", "-1", "-B", dst, "-p", str(port)], group=group):
        done = _run(
            netns.exec_argv(src_ns, ["iperf3", "-c", dst, "-p", str(port), "-t", str(seconds), "-P", str(streams), "-J"]),
            seconds + 30,
        )
    try:
        report = json.loads(done.stdout)
        return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9
    except (ValueError, KeyError) as exc:
        raise MeasurementError(f"iperf3 from {src_ns} to {dst} failed: {(done.stdout + done.stderr).strip()[-300:]}") from exc


# ------------------------------------------------------------------ conditions
@dataclass
class Conditions:
    kernel: str
    cpu: str
    cores: int
    emulated_vm: bool  # MTUs and offloads of the paths are added by the runner, from the built labs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def offloads(ns: str, iface: str = "eth0") -> dict[str, str]:
    """The offloads that change latency/throughput figures, as ``ethtool -k`` shows them."""
    if shutil.which("ethtool") is None:
        return {}
    done = _run(netns.exec_argv(ns, ["ethtool", "-k", iface]), 10)
    keep = ("tx-checksumming", "scatter-gather", "tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload")
    out = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keep:
            out[key.strip()] = value.strip().split()[0] if value.strip() else ""
    return out


def conditions() -> Conditions:
    return Conditions(
        kernel=platform.release(),
        cpu=cpu_model(),
        cores=os.cpu_count() or 0,
        emulated_vm=os.environ.get("NETLAB_IN_VM", "") != "",
    )


class CpuMeter:
    """Share of CPU time busy between ``start()`` and ``busy()`` (from /proc/stat)."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    def busy(self) -> float:
        total, idle = self._read()
        d_total, d_idle = total - self._start[0], idle - self._start[1]
        return 1.0 - d_idle / d_total if d_total else 0.0


@dataclass(frozen=True)
class Outage:
    """How long pings failed, from which probes got a reply (:func:`outage_of`)."""

    sent: int
    lost: int
    seconds: float  # from the first probe of the longest failing run to the first answered after it
    first_lost: float | None  # its send time, seconds after the first probe
    recovered: float | None  # send time of the first answered probe after it


def outage_of(sent: list[float], answered: set[int]) -> Outage:
    """The longest run of unanswered probes: ``sent[i]`` is probe i's send time (seconds),
    ``answered`` the probes that got a reply. A run still failing at the end counts up to the
    last probe sent."""
    best: tuple[int, int] | None = None  # [start, end) of the longest unanswered run
    start = None
    for i in range(len(sent) + 1):
        failing = i < len(sent) and i not in answered
        if failing and start is None:
            start = i
        elif not failing and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    lost = len(sent) - len(answered & set(range(len(sent))))
    if best is None:
        return Outage(len(sent), lost, 0.0, None, None)
    first, end = best
    until = sent[end] if end < len(sent) else sent[-1]
    return Outage(len(sent), lost, until - sent[first], sent[first] - sent[0], sent[end] - sent[0] if end < len(sent) else None)


class OutageProbe:
    """ICMP echo requests from namespace ``ns`` to ``dst`` every ``interval`` seconds, in a
    background thread, until :meth:`stop`; then :meth:`result` says how long they failed.
    One raw socket; a probe counts as answered when its echo reply arrives within ``timeout``."""

    def __init__(self, ns: str, dst: str, interval: float = 0.01, timeout: float = 1.0) -> None:
        self.ns, self.dst, self.interval, self.timeout = ns, dst, interval, timeout
        self.sent: list[float] = []
        self.answered: set[int] = set()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"outage-{ns}", daemon=True)

    def __enter__(self) -> OutageProbe:
        self._thread.start()
        self._ready.wait(5.0)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5.0)
        if self._error is not None:
            raise self._error

    def result(self) -> Outage:
        return outage_of(self.sent, self.answered)

    def _run(self) -> None:
        try:
            netns.run_in(self.ns, self._loop)
        except BaseException as exc:  # reported by stop()
            self._error = exc
            self._ready.set()

    def _loop(self) -> None:
        ident = random.randrange(1, 0xFFFF)
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        sock.setblocking(False)
        self._ready.set()
        try:
            next_send = time.monotonic()
            stop_at: float | None = None
            while True:
                now = time.monotonic()
                if stop_at is None and self._stop.is_set():
                    stop_at = now + self.timeout  # wait for the last replies
                if stop_at is not None and now >= stop_at:
                    return
                if stop_at is None and now >= next_send:
                    seq = len(self.sent)
                    self.sent.append(now)
                    try:
                        sock.sendto(icmp.echo_request(ident, seq & 0xFFFF, b"netlab-outage"), (self.dst, 0))
                    except OSError:
                        pass  # no route now (the BGP route is withdrawn): a lost probe
                    next_send += self.interval
                wait = max(0.0, (stop_at if stop_at is not None else next_send) - time.monotonic())
                ready, _w, _x = select.select([sock], [], [], wait)
                while ready:
                    try:
                        data = sock.recv(65535)
                    except BlockingIOError:
                        break
                    header = (data[0] & 0x0F) * 4
                    kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", data[header : header + 8])
                    if kind != icmp.ECHO_REPLY or rid != ident:
                        continue
                    received = time.monotonic()
                    # the probe with this 16-bit sequence sent most recently, answered within the timeout
                    for seq in range(len(self.sent) - 1, -1, -1):
                        if seq & 0xFFFF == rseq:
                            if received - self.sent[seq] <= self.timeout:
                                self.answered.add(seq)
                            break
        finally:
            sock.close()
