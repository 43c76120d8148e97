"""``netlab run``: build a scenario's labs side by side, run its steps, always tear down.

Each step yields a :class:`~netlab.scenario.results.StepResult` (pass / fail / error / skipped)
with its data; the :class:`~netlab.scenario.results.ScenarioReport` gathers them with the
conditions of the run (kernel, CPU, MTUs, offloads).
Labs are removed at the end whatever happens: a failing step, an exception, Ctrl-C.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from netlab import build, doctor, lab
from netlab.errors import EnvironmentProblem, NetlabError, UsageError
from netlab.kernel import cgroup, netns, tc
from netlab.kernel.inspect import Inspector, inspect_namespace
from netlab.observe import expect
from netlab.observe.capture import Capture
from netlab.observe.graph import dot, live
from netlab.plan import Host
from netlab.scenario import http_paths, measure, plots
from netlab.scenario import outage as outage_capture
from netlab.scenario.results import LabOutcome, ScenarioReport, StepResult
from netlab.scenario.spec import (
    BgpOutageStep,
    CaptureStep,
    HttpStep,
    ImpairStep,
    PingStep,
    RttStep,
    Scenario,
    ScenarioLab,
    TcpRrStep,
    ThroughputStep,
    duration_us,
)
from netlab.state import LabState

Notify = Callable[[str], None]


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        labs: list[ScenarioLab],
        source: str,
        out_dir: Path | None = None,
        samples: int | None = None,
        notify: Notify | None = None,
        activity: Notify | None = None,
    ) -> None:
        self.scenario = scenario
        self.labs = labs
        self.source = source
        self.out_dir = out_dir
        self.samples = samples
        self.notify = notify or (lambda _msg: None)
        self.activity = activity or (lambda _msg: None)  # what is going on right now (a spinner)
        self.up: dict[str, LabState] = {}
        self.rtt_samples: dict[str, dict[str, list[float]]] = {}
        self.report: ScenarioReport | None = None  # the run so far (also after run() raised)
        self.building: str | None = None  # the lab being built (after run() raised: the one that failed)

    # ------------------------------------------------------------------ lifecycle
    def preflight(self) -> None:
        """Refuse before building anything when a step needs what this kernel lacks."""
        lab.require_root()
        if any(isinstance(s.spec, ImpairStep) and s.spec.needs_netem for s in self.scenario.steps):
            doctor.require(["netem"], f"{self.source}: an impair step with delay/loss")

    def run(self) -> ScenarioReport:
        """Build the labs, run every step on them, tear them all down; the report of the run.

        Raises what building a lab that is not ``optional`` raises (:class:`~netlab.errors.NetlabError`),
        after tearing down what was built; :attr:`report` then holds the results so far.
        """
        cond = measure.conditions()
        report = ScenarioReport(self.scenario.name, self.source, time.time(), cond.as_dict())
        self.report = report
        self.preflight()
        started = time.monotonic()
        try:
            for item in self.labs:
                report.labs.append(self._build(item))
            for index, step in enumerate(self.scenario.steps):
                for result in self._step(index, step.kind, step.spec):
                    report.steps.append(result)
                    self.notify(f"{result.status:7} {result.title}" + (f" — {result.detail}" if result.detail else ""))
            report.conditions.update(self._observed_conditions())
            if self.out_dir is not None:
                report.artifacts += self._artifacts(report)
        finally:
            for name in list(self.up):
                lab.down(name)
                del self.up[name]
            report.duration = time.monotonic() - started
        return report

    def _build(self, item: ScenarioLab) -> LabOutcome:
        cni = item.topology.network.cni
        self.building = item.name
        self.notify(f"building {item.name} ({cni})")
        try:
            state = build.up(item.topology, item.source)
        except EnvironmentProblem as exc:
            if not item.ref.optional:
                raise
            self.notify(f"skipped {item.name}: {exc}")
            self.building = None
            return LabOutcome(item.name, cni, "skipped", str(exc))
        self.up[item.name] = state
        notes = list(state.notes)
        if item.manifests:
            from netlab.services import manifests

            for path in item.manifests:
                self.activity(f"{item.name}: netlab apply -f {path}")
                for line in manifests.apply_file(state, path):
                    self.notify(f"{item.name}: {line}")
            notes.append(f"applied {', '.join(Path(p).name for p in item.manifests)}")
            http_paths.wait_for_targets(state, notify=self.activity)
        self.building = None
        return LabOutcome(item.name, cni, "up", "; ".join(notes))

    def _observed_conditions(self) -> dict[str, Any]:
        mtus: dict[str, dict[str, int]] = {}
        offloads: dict[str, dict[str, str]] = {}
        for name, state in self.up.items():
            per: dict[str, int] = {}
            for ep in state.host_objects():
                if ep.kind in ("node", "pod") and not ep.host_network:
                    ifaces, _routes = inspect_namespace(ep.ns)
                    for iface in ifaces:
                        if iface.name == ep.iface:
                            per[ep.name] = iface.mtu
            mtus[name] = per
            first_pod = next((e for e in state.host_objects() if e.kind == "pod" and not e.host_network), None)
            if first_pod:
                offloads[name] = measure.offloads(first_pod.ns, first_pod.iface)
        return {"mtus": mtus, "offloads": offloads}

    # ------------------------------------------------------------------ steps
    def _targets(self, spec: Any) -> list[str]:
        return [name for name in self.up if spec.labs is None or name in spec.labs]

    def _ep(self, lab_name: str, name: str) -> Host:
        state = self.up[lab_name]
        try:
            return lab.host(state, name)
        except UsageError:
            return Host(name, "address", "", ipaddress.IPv4Address(name))

    def _step(self, index: int, kind: str, spec: Any) -> list[StepResult]:
        handler = getattr(self, f"_step_{kind}")
        targets = self._targets(spec)
        self.activity(f"step {index + 1}/{len(self.scenario.steps)}: {kind} in {', '.join(targets) or '-'}")
        if not targets:
            wanted = ", ".join(spec.labs or ())
            return [StepResult(index, kind, wanted or "-", f"{kind} in {wanted}", "skipped", "none of its labs is up")]
        started = time.monotonic()
        try:
            return list(handler(index, spec, targets))
        except NetlabError as exc:
            return [StepResult(index, kind, ",".join(targets), kind, "error", str(exc), seconds=time.monotonic() - started)]
        except Exception as exc:  # a bug or a kernel surprise: report it on the step, keep going
            return [StepResult(index, kind, ",".join(targets), kind, "error", f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - started)]

    def _step_ping(self, index: int, spec: PingStep, targets: list[str]) -> list[StepResult]:
        out = []
        for name in targets:
            started = time.monotonic()
            src, dst = self._ep(name, spec.src), self._ep(name, spec.dst)
            argv = netns.exec_argv(src.ns, ["ping", "-n", "-c", str(spec.count), "-i", "0.2", "-W", "1", str(dst.ip)])
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            replied = done.returncode == 0
            ok = replied == (spec.expect == "reply")
            title = f"ping {spec.src} -> {spec.dst} ({dst.ip}) in {name}"
            detail = ("replies" if replied else "no reply") + ("" if ok else f", expected {spec.expect}")
            out.append(StepResult(index, "ping", name, title, "pass" if ok else "fail", detail, seconds=time.monotonic() - started))
        return out

    def _step_rtt(self, index: int, spec: RttStep, targets: list[str]) -> list[StepResult]:
        started = time.monotonic()  # the paths are sampled interleaved: each result carries the whole step's time
        samplers: dict[str, Callable[[int], list[float]]] = {}
        for name in targets:
            src, dst = self._ep(name, spec.src), self._ep(name, spec.dst)
            samplers[name] = _pinger(src.ns, str(dst.ip), spec.interval, spec.size, spec.cpu)
        base_key, base_lab = None, ""
        if spec.baseline is not None:
            base_lab = spec.baseline.lab or targets[0]
            if base_lab not in self.up:
                raise UsageError(f"baseline lab {base_lab!r} is not up")
            src, dst = self._ep(base_lab, spec.baseline.src), self._ep(base_lab, spec.baseline.dst)
            base_key = f"underlay {spec.baseline.src}->{spec.baseline.dst}"
            samplers = {base_key: _pinger(src.ns, str(dst.ip), spec.interval, spec.size, spec.cpu), **samplers}
        total = self.samples or spec.samples
        meter = measure.CpuMeter()
        self.activity(f"rtt {spec.src} -> {spec.dst}: warming up")
        samples = measure.interleaved(
            samplers, total, spec.chunk, spec.warmup,
            progress=lambda done, rounds: self.activity(f"rtt {spec.src} -> {spec.dst}: round {done}/{rounds} ({len(samplers)} paths interleaved)"),
        )
        busy = meter.busy()
        self.rtt_samples[f"step{index}"] = {key: measure.flat(r) for key, r in samples.items()}
        out = []
        for key, rounds in samples.items():
            values = measure.flat(rounds)
            stats = measure.Stats.of(values)
            data: dict[str, Any] = {"stats": asdict(stats), "warnings": measure.warnings_for(stats, busy)}
            status, detail = "pass", f"p50 {stats.p50:.0f} us, p99 {stats.p99:.0f} us"
            if base_key and key != base_key:
                cmp = measure.compare(samples[base_key], rounds)
                data["vs_baseline"] = asdict(cmp)
                detail += f", overhead {cmp.diff_p50:+.1f} us [{cmp.diff_ci[0]:+.1f}, {cmp.diff_ci[1]:+.1f}], x{cmp.ratio_p50:.2f}"
                status, why = _rtt_assert(spec, stats, cmp)
                if why:
                    detail += f" — {why}"
            role = "baseline" if key == base_key else key
            data["lab"] = base_lab if key == base_key else key
            title = f"rtt {spec.src} -> {spec.dst} in {key}" if key != base_key else f"rtt {key}"
            out.append(StepResult(index, "rtt", role, title, status, detail, data))
        for result in out:
            result.seconds = time.monotonic() - started
        return out

    def _step_http(self, index: int, spec: HttpStep, targets: list[str]) -> list[StepResult]:
        """Every path of every lab in interleaved rounds; per path its client addresses (checked),
        hops, and latency p50/p99 with 95% CIs, and its p50 against the baseline path."""
        started = time.monotonic()  # the paths are sampled interleaved: each result carries the whole step's time
        paths: dict[str, tuple[str, http_paths.Target, http_paths.Seen]] = {}
        samplers: dict[str, Callable[[int], list[float]]] = {}
        for name in targets:
            src = self._ep(name, spec.src)
            for path in spec.paths:
                key = path.name if len(targets) == 1 else f"{name}: {path.name}"
                target = http_paths.resolve_target(self.up[name], src.ns, path)
                seen = http_paths.Seen()
                paths[key] = (name, target, seen)
                samplers[key] = http_paths.sampler(src.ns, target, seen, spec.timeout)
        total = self.samples or spec.requests
        chunk = min(spec.chunk, max(10, total // 5))  # at least 5 rounds where the count allows: the CIs resample rounds
        self.activity(f"http from {spec.src}: warming up {len(samplers)} paths")
        if spec.warmup:  # connections, ARP, conntrack, nginx's workers: not part of the result
            for take in samplers.values():
                take(spec.warmup)
        for _lab, _target, seen in paths.values():
            seen.clear()
        rounds = measure.interleaved(
            samplers, total, chunk, 0,
            progress=lambda done, n: self.activity(f"http from {spec.src}: round {done}/{n} ({len(samplers)} paths interleaved)"),
        )
        base_name = spec.baseline or spec.paths[0].name
        base_key = base_name if len(targets) == 1 else f"{targets[0]}: {base_name}"
        out = []
        for key, (name, target, seen) in paths.items():
            data: dict[str, Any] = {
                "path": key, "lab": name, "url": target.url, "connect": f"{target.connect}:{target.port}", "options": target.options,
                "answers": dict(seen.answers), "clients": dict(seen.clients), "x_forwarded_for": dict(seen.forwarded),
                "errors": sum(seen.errors.values()), "error_kinds": dict(seen.errors),
                "expect": {k: {"role": role, "addresses": sorted(a)} for k, (role, a) in target.expected.items()},
            }
            values = measure.flat(rounds[key])
            problems = http_paths.check(target, seen)
            if values:
                stats = measure.Stats.of(values)
                _p50, p50_ci = measure.percentile_ci(rounds[key], 50)
                _p99, p99_ci = measure.percentile_ci(rounds[key], 99)
                # no CPU warning: the client's back-to-back requests are the load (the machine is busy by design)
                data.update(stats=asdict(stats), p50_ci=p50_ci, p99_ci=p99_ci, warnings=measure.warnings_for(stats, min_samples=500))
                if base_key and key != base_key and measure.flat(rounds[base_key]):
                    data["baseline"] = base_key
                    data["vs_baseline"] = asdict(measure.compare(rounds[base_key], rounds[key]))
            if spec.hops:
                self.activity(f"http from {spec.src}: tracing {key}")
                pods = [a for a in seen.answers if not a.startswith("HTTP ")]
                data["hops"], data["hops_note"] = http_paths.count_hops(self.up[name], spec.src, target, pods)
            clients = ", ".join(sorted(seen.clients)) or "none"
            detail = f"pods saw {clients}"
            if values:
                detail += f"; p50 {data['stats']['p50']:.0f} us, p99 {data['stats']['p99']:.0f} us"
            if spec.hops and data["hops"] is None:
                detail += f"; hops ?: {data['hops_note']}"
            if problems:
                detail += " — " + "; ".join(problems)
            title = f"http {spec.src} -> {key}" + (f" in {name}" if len(targets) == 1 else "")
            out.append(StepResult(index, "http", key, title, "fail" if problems else "pass", detail, data))
        for result in out:
            result.seconds = time.monotonic() - started
        return out

    def _step_tcp_rr(self, index: int, spec: TcpRrStep, targets: list[str]) -> list[StepResult]:
        out = []
        for name in targets:
            started = time.monotonic()
            src, dst = self._ep(name, spec.src), self._ep(name, spec.dst)
            result = measure.tcp_rr(src.ns, dst.ns, str(dst.ip), spec.seconds, group=cgroup.create(name))
            out.append(
                StepResult(index, "tcp_rr", name, f"tcp_rr {spec.src} -> {spec.dst} in {name}", "pass",
                           f"avg {result['avg']:.1f} us, p50 {result['p50']:.1f} us (one-way, sockperf)", {"latency_us": result},
                           seconds=time.monotonic() - started)
            )
        return out

    def _step_throughput(self, index: int, spec: ThroughputStep, targets: list[str]) -> list[StepResult]:
        out = []
        for name in targets:
            started = time.monotonic()
            src, dst = self._ep(name, spec.src), self._ep(name, spec.dst)
            figures = {}
            for streams in spec.streams:
                figures[str(streams)] = measure.throughput(src.ns, dst.ns, str(dst.ip), spec.seconds, streams, group=cgroup.create(name))
            status, detail = "pass", ", ".join(f"{g:.2f} Gbit/s x{s}" for s, g in figures.items())
            floor = spec.assert_.min_gbps if spec.assert_ else None
            if floor is not None and min(figures.values()) < floor:
                status, detail = "fail", detail + f" — below {floor} Gbit/s"
            out.append(StepResult(index, "throughput", name, f"throughput {spec.src} -> {spec.dst} in {name}", status, detail, {"gbps": figures},
                                  seconds=time.monotonic() - started))
        return out

    def _step_capture(self, index: int, spec: CaptureStep, targets: list[str]) -> list[StepResult]:
        expectations = expect.load_expectations(list(spec.expect), self.source, f"steps[{index}].capture.expect")
        out = []
        for name in targets:
            started = time.monotonic()
            src, dst = self._ep(name, spec.probe.src), self._ep(name, spec.probe.dst)
            with expect.watching(self.up[name], expectations, timeout=spec.timeout) as watch:
                replied = send_traffic(src.ns, str(dst.ip), spec.probe.proto, spec.probe.count, spec.probe.port)
            failures = [r.message for r in watch.results if not r.ok]
            detail = "\n".join(failures) if failures else f"{len(expectations)} expectation(s) met"
            if not replied and spec.probe.proto == "icmp":
                detail += " (the probe got no reply)"
            data: dict[str, Any] = {"expectations": [r.message for r in watch.results]}
            title = f"capture {spec.probe.proto} {spec.probe.src} -> {spec.probe.dst} in {name}"
            if self.out_dir is not None:
                for at, cap in watch.captures.items():
                    path = self.out_dir / f"step{index + 1}-{name}-{at.replace(':', '-')}.pcap"
                    self.out_dir.mkdir(parents=True, exist_ok=True)
                    cap.write(str(path))
                data["graph"] = self._picture(index, name, list(watch.captures.values()), title)
            out.append(StepResult(index, "capture", name, title, "pass" if watch.ok else "fail", detail, data, seconds=time.monotonic() - started))
        return out

    def _step_bgp_outage(self, index: int, spec: BgpOutageStep, targets: list[str]) -> list[StepResult]:
        """Stop ``node``'s BIRD, keep it stopped for ``down``, start it; ping all along."""
        from netlab.services import bird

        out = []
        interval, down = duration_us(spec.interval) / 1e6, duration_us(spec.down) / 1e6
        for name in targets:
            state = self.up[name]
            src, dst = self._ep(name, spec.src), self._ep(name, spec.dst)
            marks: dict[str, float] = {}
            wall: dict[str, float] = {}
            node = src if src.kind == "node" else self._ep(name, src.node or spec.src)
            cap = Capture(node.ns, "eth0", f"icmp and host {dst.ip}", None, down + 30)
            with measure.OutageProbe(src.ns, str(dst.ip), interval) as probe:
                cap.start()
                try:
                    time.sleep(0.5)  # answered probes before the outage
                    marks["stop"], wall["stop"] = time.monotonic(), time.time()
                    bird.stop_node(state, spec.node)
                    marks["withdrawn"] = time.monotonic()
                    time.sleep(down)
                    marks["start"] = time.monotonic()
                    bird.start_node(state, spec.node)
                    marks["relearned"], wall["relearned"] = time.monotonic(), time.time()
                    time.sleep(0.5)  # answered probes after it
                finally:
                    cap.stop()
            outage = probe.result()
            seen = outage_capture.summarize(cap.frames, wall["stop"], wall["relearned"], self._macs(name))
            if self.out_dir is not None:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                cap.write(str(self.out_dir / f"step{index + 1}-{name}-{node.name}-eth0.pcap"))
            t0 = probe.sent[0] if probe.sent else marks["stop"]
            data = {
                "outage_s": outage.seconds, "sent": outage.sent, "lost": outage.lost, "interval_s": interval,
                "first_lost_s": outage.first_lost, "recovered_s": outage.recovered,
                **{f"{k}_s": v - t0 for k, v in marks.items()},
                "capture": {"at": f"{node.name}:eth0", **seen},
            }
            title = f"bgp_outage {spec.src} -> {spec.dst} ({dst.ip}) while {spec.node}'s BIRD is stopped in {name}"
            detail = (
                f"traffic failed for {outage.seconds:.3f} s ({outage.lost} of {outage.sent} probes lost, {spec.interval} apart); "
                f"BIRD stopped {spec.down}: routes withdrawn {marks['withdrawn'] - marks['stop']:.3f} s after the stop, "
                f"relearned {marks['relearned'] - marks['start']:.3f} s after the start; "
                + outage_capture.describe(seen, f"{node.name}:eth0")
            )
            out.append(StepResult(index, "bgp_outage", name, title, "pass", detail, data))
        return out

    def _macs(self, lab_name: str) -> dict[str, str]:
        """MAC address -> the lab host whose interface has it (to name a frame's next hop)."""
        state = self.up[lab_name]
        kernel = Inspector()
        owners: dict[str, str] = {}
        for host in state.host_objects():
            if host.host_network:
                continue
            for link in kernel.links(host.ns):
                if link.mac:
                    owners.setdefault(link.mac.lower(), host.name)
        return owners

    def _step_impair(self, index: int, spec: ImpairStep, targets: list[str]) -> list[StepResult]:
        out = []
        target, iface = spec.at.split(":", 1)
        for name in targets:
            started = time.monotonic()
            ep = self._ep(name, target)
            what = impair(ep.ns, iface, spec)
            out.append(StepResult(index, "impair", name, f"impair {spec.at} in {name}", "pass", what, seconds=time.monotonic() - started))
        return out

    # ------------------------------------------------------------------ artifacts
    def _picture(self, index: int, name: str, captures: list[Any], title: str) -> str | None:
        """A capture step's picture: the lab with its capture points numbered in the order the
        traffic reached them (``stepN-LAB.svg``); None where Graphviz's dot is not installed."""
        assert self.out_dir is not None
        path = self.out_dir / f"step{index + 1}-{name}.svg"
        try:
            dot.render(live.for_captures(self.up[name], captures, title), path)
        except EnvironmentProblem:
            return None
        return str(path)

    def _artifacts(self, report: ScenarioReport) -> list[str]:
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        files = plots.write(self.rtt_samples, report, self.out_dir)
        return [str(p) for p in files]


def send_traffic(ns: str, dst: str, proto: str, count: int, port: int | None = None) -> bool:
    """Send a capture step's traffic: ``count`` pings (or UDP/TCP sends) from ``ns``; True if (for ICMP) replies came back."""
    if proto == "icmp":
        argv = netns.exec_argv(ns, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", dst])
        return subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM

    def send() -> bool:
        for _ in range(count):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.settimeout(1.0)
                try:
                    sock.connect((dst, port or 80))
                    sock.send(b"netlab-probe")
                except OSError:
                    pass
        return True

    return netns.run_in(ns, send)


def _pinger(ns: str, dst: str, interval: float, size: int, cpu: int | None) -> Callable[[int], list[float]]:
    if cpu is not None and cpu >= (os.cpu_count() or 1):
        raise UsageError(f"rtt: cpu {cpu} does not exist on this machine (it has {os.cpu_count()})")
    return lambda n: measure.icmp_rtts(ns, dst, n, interval, size, cpu=cpu)


def _rtt_assert(spec: RttStep, stats: measure.Stats, cmp: measure.Comparison) -> tuple[str, str]:
    a = spec.assert_
    if a is None:
        return "pass", ""
    if a.max_p50_us is not None and stats.p50 > a.max_p50_us:
        return "fail", f"p50 above {a.max_p50_us} us"
    if a.max_overhead_us is not None and cmp.diff_p50 > a.max_overhead_us:
        return "fail", f"overhead above {a.max_overhead_us} us"
    if a.max_ratio is not None and cmp.ratio_p50 > a.max_ratio:
        return "fail", f"ratio above {a.max_ratio}"
    return "pass", ""


def impair(ns: str, iface: str, spec: ImpairStep) -> str:
    """Put a tbf (rate) or netem (delay/loss, optionally rate) qdisc on ``ns:iface``, or clear it."""
    if spec.clear:
        tc.clear(ns, iface)
        return f"cleared {iface}"
    if spec.needs_netem:
        params: dict[str, Any] = {}
        if spec.delay:
            params["delay"] = duration_us(spec.delay)
        if spec.jitter:
            params["jitter"] = duration_us(spec.jitter)
        if spec.loss:
            params["loss"] = float(spec.loss.rstrip("%"))
        if spec.rate:
            params["rate"] = spec.rate
        tc.set_netem(ns, iface, params)
        return f"netem {params} on {iface}"
    assert spec.rate is not None  # the schema wants a rate, a delay or a loss
    tc.set_tbf(ns, iface, spec.rate)
    return f"tbf rate {spec.rate} on {iface}"
