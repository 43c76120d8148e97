"""Hop-by-hop traces: where a probe goes, what it looks like at every hop, and a verdict.

:func:`trace` does what a person does with tcpdump on every box, in one call:

1. **Path.** :func:`~netlab.observe.trace.path.find_path` walks the lab the way the kernel
   forwards (:mod:`~netlab.observe.trace.path`). Behind an address a DNAT may rewrite (a
   Service's ClusterIP or NodePort, a published port), every possible target pod gets its own
   branch (:mod:`~netlab.observe.trace.targets`); the reply's path is walked too (policy
   routing and gateway hairpins make it differ), next to the request's path reversed. From
   outside the cluster a request meets several rewrites in turn (a MetalLB leader, an NLB, a
   NodePort, nginx's new connection): each way in is a chain of waypoints
   (:mod:`~netlab.observe.trace.northsouth`), walked one after another; a proxy on the way
   makes the TCP probe an HTTP request carrying the marker.
2. **Capture.** One :class:`~netlab.observe.capture.Capture` per point, all started before
   the probe; afterwards the branch and the reply path that actually saw the probe are shown.
3. **Probe.** ICMP echo from a raw socket, or a UDP datagram / TCP connection from a socket,
   all opened inside the source namespace (a listener in the destination namespace answers
   UDP/TCP). Every probe carries a unique marker in its payload, which survives NAT and
   encapsulation, so the same probe is recognised at every hop
   (:mod:`~netlab.observe.trace.probe`).
4. **Rows and verdict.** Request rows in path order, reply rows in reverse, each with what
   changed since the previous row (encapsulated, decapsulated, SNAT, DNAT, TTL-1), and a
   one-line verdict (:mod:`~netlab.observe.trace.rows`). A probe that got no reply names
   the firewall rule whose packet counter rose meanwhile (:mod:`~netlab.observe.trace.drops`).

Every socket and thread is closed on any exit (also Ctrl-C); the lab is only read.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from netlab.errors import UsageError
from netlab.kernel import iptables
from netlab.observe.capture import Capture
from netlab.observe.trace import drops, northsouth
from netlab.observe.trace.dnsname import lookup
from netlab.observe.trace.path import Hop, HopPath, branch, chain_branch, find_path, taken
from netlab.observe.trace.probe import PROBE_PORT, TraceProbe, send_probe
from netlab.observe.trace.rows import Row, Trace, build_rows, replies_seen, verdict
from netlab.observe.trace.targets import Target, dnat_targets, resolve

__all__ = [
    "Hop",
    "HopPath",
    "Row",
    "Target",
    "Trace",
    "TraceProbe",
    "dnat_targets",
    "find_path",
    "resolve",
    "send_probe",
    "trace",
    "verdict",
]


def trace(
    state: Any,
    src: str,
    dst: str,
    proto: str = "icmp",
    port: int | None = None,
    timeout: float = 3.0,
    settle: float = 0.3,
    on_start: Callable[[HopPath], None] | None = None,
    host: str | None = None,
    path: str | None = None,
) -> Trace:
    """Trace one probe from ``src`` to ``dst`` across a built lab.

    ``dst`` may also be a DNS name the source resolves (an ExternalDNS record, an NLB's
    name). ``host``/``path``: send the TCP probe as an HTTP request with that Host header
    and path. It is one anyway when a proxy (ingress-nginx, a Gateway) is on the way or
    ``dst`` is a name (with the name as Host), as curl would send it."""
    if proto not in ("icmp", "udp", "tcp"):
        raise UsageError(f"unknown probe protocol {proto!r}; use icmp, udp or tcp")
    if (host or path) and proto != "tcp":
        raise UsageError("--host and --path make the probe an HTTP request: use --proto tcp")
    if path is not None and (not path.startswith("/") or any(c.isspace() or not c.isprintable() for c in path)):
        raise UsageError(f"--path {path!r}: a path starts with / and has no spaces or control characters")
    if host is not None and not _HOST.fullmatch(host):
        raise UsageError(f"--host {host!r}: not a DNS name or address")
    src_ep, src_ip, src_kind = resolve(state, src)
    if src_ep is None:
        raise UsageError(f"the source must be a node, pod or lab host, not an address ({src})")
    named = _is_dns_name(state, dst)
    if named:
        dst_ep, dst_ip, dst_kind = None, lookup(src_ep.ns, dst), "name"
    else:
        dst_ep, dst_ip, dst_kind = resolve(state, dst)
    probe_port = None if proto == "icmp" else (port or PROBE_PORT)
    kind, targets = dnat_targets(state, dst_ip, proto, probe_port) if probe_port else ("", [])
    ways = [c for c in northsouth.chains(state, dst_ip, probe_port, proto, _exits(targets)) if c.waypoints] if probe_port else []
    if ways:
        kind = _entry_kind(ways[0])
        targets = [Target(c.end.endpoint, c.end.port, c.end.why) for c in ways]
        paths = [chain_branch(state, src_ep, src_ip, c) for c in ways]
    else:
        paths = [branch(state, src_ep, src_ip, dst_ip, dst_ep, None)]
        paths += [branch(state, src_ep, src_ip, dst_ip, dst_ep, t) for t in targets]
        if targets and dst_ep is None:
            paths = paths[1:]  # a Service address itself is on no interface: only the DNAT branches
    dst_kind = kind or dst_kind
    listeners: list[tuple[str, int]] = [(t.endpoint.ns, t.port or probe_port) for t in targets] if probe_port else []
    if dst_ep is not None and probe_port:
        listeners.append((dst_ep.ns, probe_port))
    ident = int.from_bytes(os.urandom(2), "big") or 1
    marker = f"netlab-trace-{os.urandom(6).hex()}".encode()
    probe = TraceProbe(proto, src_ip, dst_ip, probe_port, marker, ident)
    probe.target_ports = tuple(sorted({t.port for t in targets if t.port} | {w.port for c in ways for w in c.waypoints if w.port}))
    if proto == "tcp" and (host or path or named or any(w.proxy for c in ways for w in c.waypoints)):
        probe.http_request(host or (dst if named else dst_ip), path or "/")
    union = HopPath([], [], [])
    for way in paths:
        union.hops += [h for h in way.points if h.point not in {x.point for x in union.hops}]
    if on_start:
        on_start(union)
    captures: dict[str, Capture] = {}
    with ExitStack() as stack:
        for hop in union.hops:
            cap = Capture(hop.point.ns, hop.point.iface, "ip", None, timeout + settle + 5)
            stack.callback(cap.stop)
            captures[str(hop.point)] = cap.start()
        namespaces = [h.point.ns for h in union.hops]
        before = drops.snapshot(namespaces, lambda ns: iptables.save(ns, counters=True))
        send_probe(src_ep.ns, listeners, probe, timeout)
        time.sleep(settle)
        after = drops.snapshot(namespaces, lambda ns: iptables.save(ns, counters=True))
    went = taken(paths, captures, probe)
    rows = build_rows(went.hops, went.back, captures, probe)
    for other in went.other_backs:
        alternative = build_rows(went.hops, other, captures, probe)
        if replies_seen(alternative) > replies_seen(rows):
            went.back, rows = other, alternative
    result = Trace(state.lab, src, dst, src_kind, dst_kind, probe, went.hops, rows, went.notes, went.back, went.via, captures=captures)
    result.chain = went.chain
    result.verdict = verdict(result)
    if not probe.replied:
        seen = result.seen("request")
        names = {h.point.ns: h.point.target for h in union.hops}
        result.drops = [str(d) for d in drops.rose(before, after, names, seen[-1].hop.point.ns if seen else None)]
        if result.drops:
            result.verdict += f", dropped at {result.drops[0]}"
    return result



_HOST = re.compile(r"[A-Za-z0-9*]([A-Za-z0-9.*-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?")


def _is_dns_name(state: Any, name: str) -> bool:
    """A name with a dot that is neither an address nor a lab name: look it up in DNS."""
    if "." not in name or any(h.name == name for h in state.host_objects()):
        return False
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return True
    return False


def _exits(targets: list[Target]) -> list[northsouth.Exit]:
    return [northsouth.Exit(t.endpoint, str(t.endpoint.ip), t.port, t.why) for t in targets if t.endpoint.ip is not None]


def _entry_kind(chain: northsouth.Chain) -> str:
    """What the traced address is: the first waypoint's kind."""
    return chain.waypoints[0].kind or "service"
