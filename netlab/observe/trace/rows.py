"""A trace's rows: the probe at every hop, what changed since the previous one, and a verdict.

:func:`build_rows` puts the captured frames that are the probe in order: request rows in path
order, reply rows in reverse, each with what changed since the previous row where the probe
was seen (encapsulated, decapsulated, SNAT, DNAT, TTL-1) and the namespace where it changed.
On the reply path a rewrite that undoes the request's NAT is named un-SNAT / un-DNAT.
:func:`verdict` sums a :class:`Trace` up in one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netlab.observe.capture import Capture
from netlab.observe.decode import Frame, decode
from netlab.observe.trace.northsouth import Chain
from netlab.observe.trace.path import Hop
from netlab.observe.trace.probe import TraceProbe


@dataclass
class Row:
    """The probe at one hop, in one direction (or that it was not seen there)."""

    hop: Hop
    direction: str  # request | reply
    frame: Frame | None  # None: the probe was not seen here
    outgoing: bool | None
    time: float | None
    changes: list[str] = field(default_factory=list)
    where: str = ""  # the namespace (target name) where the changes happened

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": str(self.hop.point),
            "ns": self.hop.point.ns,
            "iface": self.hop.point.iface,
            "role": self.hop.role,
            "direction": self.direction,
            "seen": self.frame is not None,
            "dir": None if self.outgoing is None else ("out" if self.outgoing else "in"),
            "time": self.time,
            "frame": self.frame.as_dict() if self.frame else None,
            "changes": self.changes,
            "changed_at": self.where or None,
        }


@dataclass
class Trace:
    """One traced probe: its path, its rows, notes from the walk, the captures and a verdict."""

    lab: str
    src: str
    dst: str
    src_kind: str
    dst_kind: str
    probe: TraceProbe
    hops: list[Hop]
    rows: list[Row]
    notes: list[str]
    back: list[Hop] = field(default_factory=list)
    via: str = ""
    verdict: str = ""
    drops: list[str] = field(default_factory=list)  # rules whose DROP counter rose (drops.py)
    captures: dict[str, Capture] = field(default_factory=dict, repr=False)
    chain: Chain | None = None  # a north-south path's waypoints (LB, node, proxy)

    def seen(self, direction: str = "request") -> list[Row]:
        """The rows of ``direction`` where the probe was seen."""
        return [r for r in self.rows if r.direction == direction and r.frame is not None]

    def changes(self, direction: str = "request") -> list[tuple[str, str]]:
        """Every change in ``direction``, with the namespace (target name) where it happened."""
        return [(c, r.where) for r in self.seen(direction) for c in r.changes]

    @property
    def replied(self) -> bool:
        """Whether the probe's answer came back to the source."""
        return bool(self.probe.replied)

    @property
    def encapsulation(self) -> str:
        """How the request travelled between nodes: ``vxlan``, ``ipip`` or ``none``."""
        for row in self.seen("request"):
            if row.frame is not None and row.frame.encapsulated:
                return row.frame.encap
        return "none"

    @property
    def nat(self) -> list[str]:
        """The request's address rewrites (``SNAT src ...``, ``DNAT dst ...``); empty without NAT."""
        return [c for c, _where in self.changes("request") if c.startswith(("SNAT", "DNAT"))]

    def text(self) -> str:
        """The verdict and one line per row: where, which way, the packet seen there, what changed."""
        lines = [f"trace {self.probe.proto} {self.src} -> {self.dst} in lab {self.lab}: {self.verdict}"]
        for row in self.rows:
            seen = row.frame.line() if row.frame is not None else "(not seen)"
            changed = f"  [{', '.join(row.changes)}]" if row.changes else ""
            lines.append(f"  {row.direction:7} {row.hop.point!s:24} {seen}{changed}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])

    def as_dict(self) -> dict[str, Any]:
        """What ``netlab trace --json`` prints (the CLI adds the pcaps written)."""
        return {
            "lab": self.lab,
            "src": self.src,
            "dst": self.dst,
            "proto": self.probe.proto,
            "port": self.probe.port,
            "src_ip": self.probe.src_ip,
            "dst_ip": self.probe.dst_ip,
            "marker": self.probe.marker.decode(),
            "replied": self.probe.replied,
            "path": [{"at": str(h.point), "ns": h.point.ns, "iface": h.point.iface, "role": h.role} for h in self.hops],
            "return_path": [str(h.point) for h in self.back],
            "rows": [r.as_dict() for r in self.rows],
            "notes": self.notes,
            "via": self.via or None,
            "waypoints": [{"label": w.label, "kind": w.kind, "at": w.endpoint.name, "address": w.address, "port": w.port}
                          for w in self.chain.waypoints] if self.chain else [],
            "answer": self.probe.answer_fields() or None,
            "verdict": self.verdict,
            "dropped_by": self.drops,
        }

    def write(self, directory: str | os.PathLike[str]) -> list[Path]:
        """One pcap per capture point (everything captured there), ``NN-target-iface.pcap``,
        numbered in path order (the request's, then points only the reply crossed)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        points = list(dict.fromkeys(h.point for h in [*self.hops, *self.back]))
        for i, point in enumerate(points, 1):
            cap = self.captures.get(str(point))
            if cap is None:
                continue
            path = out / f"{i:02d}-{point.target}-{point.iface}.pcap"
            cap.write(str(path))
            written.append(path)
        return written


def build_rows(hops: Sequence[Hop], back: Sequence[Hop], captures: dict[str, Capture], probe: TraceProbe) -> list[Row]:
    """One row per hop of ``hops`` (request) and of ``back`` (reply), from what ``captures`` saw."""
    found: dict[tuple[str, str], list[tuple[Frame, bool, float]]] = {}
    for point in {str(h.point) for h in [*hops, *back]}:
        for seen in captures[point].frames:
            frame = decode(seen.packet)
            which = probe.matches(frame) if frame is not None else None
            if frame is not None and which in ("request", "reply"):
                found.setdefault((point, which), []).append((frame, seen.outgoing, seen.time))
    rows = []
    for direction, order in (("request", list(hops)), ("reply", list(back))):
        previous: Row | None = None
        passes: dict[str, int] = {}  # a point on the path twice takes its frames in turn
        for hop in order:
            key = str(hop.point)
            hits = found.get((key, direction), [])
            turn = passes.get(key, 0)
            passes[key] = turn + 1
            hit = hits[turn] if turn < len(hits) else None
            row = Row(hop, direction, *(hit if hit else (None, None, None)))
            if row.frame is not None and previous is not None and previous.frame is not None and _proxied(direction, previous, hop):
                f = row.frame
                how = "new connection" if direction == "request" else "answered on the first connection"
                row.changes = [f"proxied: {how} {f.inner_src}:{f.sport} -> {f.inner_dst}:{f.dport}"]
                row.where = hop.point.target
            elif row.frame is not None and previous is not None and previous.frame is not None:
                row.changes = _diff(previous.frame, row.frame)
                if row.changes:
                    same = previous.hop.point.ns == hop.point.ns
                    row.where = hop.point.target if same else previous.hop.point.target
            if row.frame is not None:
                previous = row
            rows.append(row)
    _name_reverse_nat(rows)
    return rows


def _proxied(direction: str, previous: Row, hop: Hop) -> bool:
    """Is this the other side of a proxy (a new connection, not a rewrite of the same packet)?"""
    return (hop.role == "proxy") if direction == "request" else (previous.hop.role == "proxy" and hop.role != "proxy")


def _diff(before: Frame, after: Frame) -> list[str]:
    """What changed from one hop's frame to the next's."""
    out = []
    if before.encap == "none" and after.encap != "none":
        out.append(f"encapsulated {after.short_encap()} {after.src}->{after.dst}")
    elif before.encap != "none" and after.encap == "none":
        out.append(f"decapsulated {before.short_encap()}")
    if before.inner_src != after.inner_src or before.sport != after.sport:
        out.append(f"SNAT src {_where(before.inner_src, before.sport, after.sport)}->{_where(after.inner_src, after.sport, before.sport)}")
    if before.inner_dst != after.inner_dst or before.dport != after.dport:
        out.append(f"DNAT dst {_where(before.inner_dst, before.dport, after.dport)}->{_where(after.inner_dst, after.dport, before.dport)}")
    if after.inner_ttl < before.inner_ttl:
        out.append(f"TTL-{before.inner_ttl - after.inner_ttl}")
    return out


def _where(ip: str, port: int | None, other: int | None) -> str:
    """An address, with its port when a NAT changed the port too."""
    return f"{ip}:{port}" if port is not None and port != other else ip


def _name_reverse_nat(rows: list[Row]) -> None:
    """On the reply path, a rewrite that undoes the request's NAT is un-SNAT / un-DNAT."""
    snats = {c.split()[-1] for r in rows if r.direction == "request" for c in r.changes if c.startswith("SNAT")}
    dnats = {c.split()[-1] for r in rows if r.direction == "request" for c in r.changes if c.startswith("DNAT")}
    for row in rows:
        if row.direction != "reply":
            continue
        renamed = []
        for change in row.changes:
            if change.startswith("DNAT dst ") and "->".join(reversed(change.split()[-1].split("->"))) in snats:
                change = "un-SNAT dst " + change.split()[-1]
            elif change.startswith("SNAT src ") and "->".join(reversed(change.split()[-1].split("->"))) in dnats:
                change = "un-DNAT src " + change.split()[-1]
            renamed.append(change)
        row.changes = renamed


def verdict(t: Trace) -> str:
    """One line: the kind of path, the encapsulation, the NAT on the way, and whether a reply came."""
    if t.chain is not None:
        return north_south_verdict(t, t.chain)
    kind = f"{t.src_kind}-to-{t.dst_kind}" + (f" ({t.via})" if t.via and t.seen("request") else "")
    requests = t.seen("request")
    if not requests:
        why = "; ".join(t.notes) or t.probe.detail
        return f"{kind}: the probe was not seen on any hop" + (f": {why}" if why else "")
    encaps = sorted({r.frame.short_encap() for r in requests if r.frame is not None and r.frame.encapsulated})
    words = [kind + (f" via {', '.join(encaps)}" if encaps else ", no encapsulation")]
    nat = [f"{c.split(' ', 2)[0]} {c.split()[-1].replace('->', ' -> ')} at {where}" for c, where in t.changes("request") if "NAT" in c]
    words.append(", ".join(nat) if nat else "no NAT")
    last = requests[-1]
    arrived = last.hop is t.hops[-1] and not t.notes
    if t.probe.replied:
        unnat = [f"{c.split(' ', 2)[0]} at {where}" for c, where in t.changes("reply") if c.startswith("un-")]
        words.append("reply received" + (f" ({', '.join(unnat)})" if unnat else ""))
    elif arrived:
        words.append(f"reached {last.hop.point} but no reply" + (f" ({t.probe.detail})" if t.probe.detail else ""))
    else:
        words.append(f"NOT delivered: last seen at {last.hop.point}")
    return ", ".join(words)


def replies_seen(rows: list[Row]) -> int:
    """How many reply rows saw the probe's reply (to pick the reply path that was taken)."""
    return sum(1 for r in rows if r.direction == "reply" and r.frame is not None)



def north_south_verdict(t: Trace, chain: Chain) -> str:
    """One line for a request from outside: the way it went (LB, node, DNAT, proxy, pod), where
    the client's address was lost (or that the pod saw it), and whether an answer came."""
    kind = f"{t.src_kind}-to-{t.dst_kind}"
    requests = t.seen("request")
    if not requests:
        why = "; ".join(t.notes) or t.probe.detail
        return f"{kind}: the probe was not seen on any hop" + (f": {why}" if why else "")
    changes = t.changes("request")
    steps = []
    for w in chain.waypoints:
        if w.proxy:
            steps.append(f"{w.label} in {w.endpoint.name} (new connection)")
            continue
        steps.append(w.label)
        if any(c.startswith("DNAT") and where == w.endpoint.name for c, where in changes):
            steps.append(f"DNAT at {w.endpoint.name}")
    steps.append(f"{chain.end.endpoint.name}:{chain.end.port}" if chain.end.port else chain.end.endpoint.name)
    words = [f"{kind}: " + " -> ".join(steps)]
    encaps = sorted({r.frame.short_encap() for r in requests if r.frame is not None and r.frame.encapsulated})
    if encaps:
        words.append("via " + ", ".join(encaps))
    words.append(_client_seen(t, chain))
    last = requests[-1]
    if t.probe.replied:
        answer = t.probe.answer_fields()
        status = f" (HTTP {answer['status']}" + (f" from {answer['pod']})" if answer.get("pod") else ")") if answer else ""
        words.append("reply received" + status)
    elif last.hop is t.hops[-1] and not t.notes:
        words.append(f"reached {last.hop.point} but no reply" + (f" ({t.probe.detail})" if t.probe.detail else ""))
    else:
        words.append(f"NOT delivered: last seen at {last.hop.point}")
    return ", ".join(words)


def _client_seen(t: Trace, chain: Chain) -> str:
    """Which address the pod (and each proxy before it) saw, where the client's was lost, and
    what a proxy passed on (X-Forwarded-For, a PROXY protocol header)."""
    legs: list[list[Row]] = [[]]
    for row in t.seen("request"):
        if row.hop.role == "proxy":
            legs.append([])
        legs[-1].append(row)
    client = t.probe.src_ip
    proxies = [w for w in chain.waypoints if w.proxy]
    words: list[str] = []
    kept = True
    for i, leg in enumerate(legs):
        who = proxies[i].endpoint.name if i < len(proxies) else chain.end.endpoint.name
        arrived = leg[-1].frame
        assert arrived is not None
        snat = next(((c, r.where) for r in leg for c in r.changes if c.startswith("SNAT")), None)
        if arrived.inner_src == client:
            words.append(f"{who} saw the client's address {client}" + (" (the proxy connected from it)" if i else ""))
        elif snat is not None:
            to = snat[0].split("->")[-1].split(":")[0]
            words.append(f"client address lost at {snat[1]} (SNAT to {to}): {who} saw {arrived.inner_src}")
        elif i:
            words.append(f"{who} saw {proxies[i - 1].endpoint.name}'s own address (a new connection)")
        else:
            words.append(f"{who} saw {arrived.inner_src}")
        kept = kept and arrived.inner_src == client
    if len(legs) == 1:
        return words[0]
    answer = t.probe.answer_fields()
    header = answer.get("proxy-protocol", "")
    if header:
        passed, named = f"its PROXY header: {header}", header.split(" ")[3].rsplit(":", 1)[0] if len(header.split(" ")) > 3 else ""
    else:
        named = answer.get("x-forwarded-for", "")
        passed = f"X-Forwarded-For {named}" if named else "no X-Forwarded-For"
    if named and client in [a.strip() for a in named.split(",")]:
        passed += " (the client's)"
    elif named:
        passed += " (not the client's)"
    return "; ".join(words) + f", {passed}"
