"""Capture expectations: what a capture at a point must (or must not) show.

A small vocabulary, the same from Python and from a scenario file::

    expect:
      - at: node1:eth0                  # TARGET:IFACE (node, pod, internet, gateway, underlay)
        packet: {encap: vxlan, vni: 1, outer: {src: node1, dst: node2},
                 inner: {src: client, dst: web-2, proto: icmp}}
      - at: internet:eth0
        packet: {src: node1, dst: internet}   # SNAT: the pod address never appears
        absent: {src: client}

``packet`` must match at least ``count`` (default 1) captured packets; ``absent`` must match
none. In a packet spec, ``src``/``dst``/``proto``/``sport``/``dport``/``ttl`` describe the
outermost IPv4 header (what tcpdump prints first; ``outer`` is the same, spelled out);
``inner`` describes the original packet (the encapsulated one, or the packet itself when
nothing is encapsulated); ``encap`` is ``vxlan``, ``ipip`` or ``none``; ``direction`` is
``in`` or ``out`` as seen by the capturing interface. Addresses are a lab name (node, pod,
``internet``, ``gateway``), an IPv4 address or a CIDR.

Validation errors are :class:`TopologyError` naming the source and the field
(``scenario.yaml: expect[0].packet.encap: ...``). A failed check raises
:class:`ExpectationFailed`, whose message shows what was expected and the packets that
were actually seen there, decoded.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from netlab.errors import NetlabError, TopologyError, UsageError
from netlab.model import field_path
from netlab.observe.capture import Capture, Point, Seen, resolve_point
from netlab.observe.decode import Frame, decode
from netlab.plan import Host

Address = ipaddress.IPv4Address | ipaddress.IPv4Network


class ExpectationFailed(NetlabError):
    """A capture did not show what an expectation asked for."""

    def __init__(self, results: list[Result]) -> None:
        self.results = results
        failed = [r for r in results if not r.ok]
        super().__init__("\n".join(r.message for r in failed))


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Header(_Spec):
    """One IPv4 header and its transport."""

    src: str | None = None
    dst: str | None = None
    proto: Literal["icmp", "udp", "tcp", "ipip"] | None = None
    sport: int | None = Field(None, ge=0, le=65535)
    dport: int | None = Field(None, ge=0, le=65535)
    ttl: int | None = Field(None, ge=0, le=255)


class PacketSpec(Header):
    """What one packet must look like; every field given must match."""

    encap: Literal["vxlan", "ipip", "none"] | None = None
    vni: int | None = Field(None, ge=0, lt=1 << 24)
    port: int | None = Field(None, ge=0, le=65535, description="VXLAN UDP port")
    direction: Literal["in", "out"] | None = None
    outer: Header | None = None
    inner: Header | None = None


class Expectation(_Spec):
    at: str
    packet: PacketSpec | None = None
    absent: PacketSpec | None = None
    count: int = Field(1, ge=1)

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        if value.count(":") != 1 or not all(value.split(":")):
            raise ValueError(f"{value!r} is not TARGET:IFACE (e.g. node1:eth0, internet:eth0, underlay:node1-eth0)")
        return value

    @model_validator(mode="after")
    def _something(self) -> Expectation:
        if self.packet is None and self.absent is None:
            raise ValueError("give `packet` (must be seen), `absent` (must not be seen), or both")
        return self


def expect(at: str, packet: Mapping[str, Any] | PacketSpec | None = None, absent: Mapping[str, Any] | PacketSpec | None = None, count: int = 1) -> Expectation:
    """Python spelling of one expectation: ``expect("node1:eth0", packet={"encap": "vxlan"})``."""
    data: dict[str, Any] = {"at": at, "count": count}
    for key, value in (("packet", packet), ("absent", absent)):
        if value is not None:
            data[key] = value.model_dump(exclude_none=True) if isinstance(value, PacketSpec) else dict(value)
    return load_expectations([data], "<python>")[0]


def load_expectations(data: Any, source: str = "<scenario>", where: str = "expect") -> list[Expectation]:
    """Validate a list of expectation mappings (a scenario's ``expect:``)."""
    if not isinstance(data, list):
        raise TopologyError(source, where, "must be a list of {at: TARGET:IFACE, packet: {...}, absent: {...}}")
    out = []
    for i, item in enumerate(data):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise TopologyError(source, here, "must be a mapping with keys at, packet, absent, count")
        try:
            out.append(Expectation.model_validate(item))
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = field_path(tuple(error["loc"]))
            kind = error["type"]
            if kind == "extra_forbidden":
                owner = _owner(error["loc"][:-1])
                message = f"unknown key {error['loc'][-1]!r}; valid keys: {', '.join(owner.model_fields)}"
            elif kind == "missing":
                message = "required key is missing"
            elif kind == "value_error":
                message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
            else:
                message = error["msg"]
                if "input" in error and not isinstance(error["input"], (dict, list)):
                    message += f" (got {error['input']!r})"
            raise TopologyError(source, f"{here}.{loc}" if loc else here, message) from None
    return out


def _owner(loc: Sequence[Any]) -> type[BaseModel]:
    model: type[BaseModel] = Expectation
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        args = getattr(annotation, "__args__", ()) or (annotation,)
        model = next(a for a in args if isinstance(a, type) and issubclass(a, BaseModel))
    return model


# ------------------------------------------------------------------ matching
class Resolver:
    """Lab names -> addresses: ``node1`` -> 192.168.1.11, ``client`` -> 172.17.0.3."""

    def __init__(self, endpoints: Sequence[Host]) -> None:
        self.by_name = {e.name: e.ip for e in endpoints if e.ip is not None}

    def __call__(self, text: str) -> Address:
        if text in self.by_name:
            return ipaddress.IPv4Address(self.by_name[text])
        try:
            if "/" in text:
                return ipaddress.IPv4Network(text, strict=False)
            return ipaddress.IPv4Address(text)
        except ValueError:
            valid = ", ".join(sorted(self.by_name))
            raise UsageError(f"{text!r} is neither a name in this lab ({valid}) nor an IPv4 address or CIDR") from None

    def label(self, text: str) -> str:
        value = self(text)
        return text if str(value) == text else f"{text}({value})"


def _addr_ok(want: str | None, got: str, resolve: Resolver) -> bool:
    if want is None:
        return True
    target = resolve(want)
    address = ipaddress.IPv4Address(got)
    return address in target if isinstance(target, ipaddress.IPv4Network) else address == target


def _outer_proto(frame: Frame) -> str:
    return {"vxlan": "udp", "ipip": "ipip"}.get(frame.encap, frame.proto)


def _header_ok(want: Header, src: str, dst: str, proto: str, sport: int | None, dport: int | None, ttl: int, resolve: Resolver) -> bool:
    return (
        _addr_ok(want.src, src, resolve)
        and _addr_ok(want.dst, dst, resolve)
        and (want.proto is None or want.proto == proto)
        and (want.sport is None or want.sport == sport)
        and (want.dport is None or want.dport == dport)
        and (want.ttl is None or want.ttl == ttl)
    )


def matches(spec: PacketSpec, frame: Frame, outgoing: bool | None, resolve: Resolver) -> bool:
    """Does one decoded packet match ``spec``?"""
    if spec.encap is not None and spec.encap != frame.encap:
        return False
    if spec.vni is not None and spec.vni != frame.vni:
        return False
    if spec.port is not None and spec.port != frame.udp_port:
        return False
    if spec.direction is not None and outgoing is not None and (spec.direction == "out") != outgoing:
        return False
    encapsulated = frame.encapsulated
    outer_sport = None if encapsulated else frame.sport
    outer_dport = frame.udp_port if frame.encap == "vxlan" else (None if encapsulated else frame.dport)
    for header in (spec, spec.outer):
        if header is not None and not _header_ok(header, frame.src, frame.dst, _outer_proto(frame), outer_sport, outer_dport, frame.ttl, resolve):
            return False
    inner = spec.inner
    if inner is not None and not _header_ok(inner, frame.inner_src, frame.inner_dst, frame.proto, frame.sport, frame.dport, frame.inner_ttl, resolve):
        return False
    return True


def describe(spec: PacketSpec, resolve: Resolver) -> str:
    parts = []
    for key, value in spec.model_dump(exclude_none=True).items():
        if isinstance(value, dict):
            parts += [f"{key}.{k}={resolve.label(v) if k in ('src', 'dst') else v}" for k, v in value.items()]
        else:
            parts.append(f"{key}={resolve.label(value) if key in ('src', 'dst') else value}")
    return " ".join(parts) or "any packet"


@dataclass
class Result:
    expectation: Expectation
    ok: bool
    matched: int
    forbidden: int
    seen: list[tuple[bool, Frame]] = field(default_factory=list)
    message: str = ""


def check(expectation: Expectation, seen: Sequence[Seen], resolve: Resolver, shown: int = 12) -> Result:
    """Evaluate one expectation against the frames captured at its point."""
    frames = [(s.outgoing, f) for s in seen if (f := decode(s.packet)) is not None]
    matched = sum(1 for out, f in frames if expectation.packet and matches(expectation.packet, f, out, resolve))
    forbidden = sum(1 for out, f in frames if expectation.absent and matches(expectation.absent, f, out, resolve))
    ok = (expectation.packet is None or matched >= expectation.count) and forbidden == 0
    lines = [f"{'ok' if ok else 'FAILED'} at {expectation.at}:"]
    if expectation.packet is not None:
        lines.append(
            f"  expected {'a packet' if expectation.count == 1 else f'{expectation.count} packets'}: "
            f"{describe(expectation.packet, resolve)}  -> {matched} matched"
        )
    if expectation.absent is not None:
        lines.append(f"  expected no packet: {describe(expectation.absent, resolve)}  -> {forbidden} matched")
    if not ok:
        lines.append(f"  seen there ({len(frames)} IPv4 packet{'s' if len(frames) != 1 else ''}):" if frames else "  seen there: nothing (no IPv4 packet at all)")
        for out, f in frames[:shown]:
            lines.append(f"    {'out' if out else 'in '} {f.line()}")
        if len(frames) > shown:
            lines.append(f"    ... {len(frames) - shown} more")
    return Result(expectation, ok, matched, forbidden, frames, "\n".join(lines))


@dataclass
class Watch:
    """Captures running for a set of expectations; ``results`` is filled when the block ends."""

    expectations: list[Expectation]
    captures: dict[str, Capture]
    resolve: Resolver
    results: list[Result] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def evaluate(self) -> list[Result]:
        self.results = [check(e, self.captures[e.at].frames, self.resolve) for e in self.expectations]
        return self.results

    def raise_for_failures(self) -> None:
        if not self.ok:
            raise ExpectationFailed(self.results)


@contextmanager
def watching(state: Any, expectations: Sequence[Expectation], timeout: float = 10.0, settle: float = 0.5, bpf: str | None = None) -> Iterator[Watch]:
    """Capture at every expectation's point around a block, then evaluate them.

    Captures start before the block runs and stop ``settle`` seconds after it ends (or at
    ``timeout``); on any exit, every socket and reader thread is closed.
    """
    endpoints = state.host_objects()
    points: dict[str, Point] = {e.at: resolve_point(endpoints, e.at) for e in expectations}
    watch = Watch(list(expectations), {}, Resolver(endpoints))
    with ExitStack() as stack:
        for at, point in points.items():
            cap = Capture(point.ns, point.iface, bpf, None, timeout)
            stack.callback(cap.stop)
            watch.captures[at] = cap.start()
        yield watch
        time.sleep(settle)
    watch.evaluate()
