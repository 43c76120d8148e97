"""Scenario files: labs to build and steps to run on them, as a reproducible experiment.

```yaml
name: overlay-vs-native
labs:                       # built side by side; names and cni may override the file's
  - {file: ../topologies/flannel-vxlan.yaml, name: ovn-vxlan}
  - {file: ../topologies/flannel-vxlan.yaml, name: ovn-ipip, cni: ipip, optional: true}
steps:                      # each step is a one-key mapping; `labs:` limits it to some labs
  - ping: {from: pod-a, to: pod-c}
  - capture: {labs: [ovn-vxlan], probe: {from: pod-a, to: pod-c}, expect: [{at: node1:eth0, packet: {...}}]}
  - rtt: {from: pod-a, to: pod-c, baseline: {from: node1, to: node2}, samples: 2000}
  - tcp_rr: {from: pod-a, to: pod-c}
  - throughput: {from: pod-a, to: pod-c, streams: [1, 4]}
  - impair: {at: node1:eth0, rate: 100mbit}
```

``optional: true`` marks a lab this kernel may be unable to build (e.g. IP-in-IP without the
ipip module): it is then reported as skipped with the reason instead of failing the run.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from netlab.errors import TopologyError
from netlab.model import Topology, from_pydantic, load_topology, read_text
from netlab.observe import expect

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s)$")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def duration_us(text: str) -> int:
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"bad duration {text!r}: use e.g. 500us, 5ms, 1s")
    scale = {"us": 1, "ms": 1000, "s": 1_000_000}[match.group(2)]
    return int(float(match.group(1)) * scale)


class LabRef(_Frozen):
    file: str
    name: str | None = None
    cni: str | None = None
    network: dict[str, Any] = Field(default_factory=dict)  # overrides merged into the file's network
    optional: bool = False


class Path_(_Frozen):  # noqa: N801 - 'Path' is taken by pathlib
    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    lab: str | None = None


class _Step(_Frozen):
    labs: tuple[str, ...] | None = None


class PingStep(_Step):
    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    count: int = Field(3, ge=1, le=100)
    expect: Literal["reply", "no-reply"] = "reply"


class RttAssert(_Frozen):
    max_p50_us: float | None = None
    max_overhead_us: float | None = None
    max_ratio: float | None = None


class RttStep(_Step):
    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    samples: int = Field(2000, ge=10, le=200_000)
    warmup: int = Field(100, ge=0)
    chunk: int = Field(100, ge=10)
    interval: float = Field(0.0002, ge=0.0001, le=1.0)
    cpu: int | None = Field(0, ge=0)  # pin the sender (None: let the scheduler choose)
    size: int = Field(56, ge=0, le=65000)
    baseline: Path_ | None = None
    assert_: RttAssert | None = Field(None, alias="assert")


class TcpRrStep(_Step):
    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    seconds: float = Field(2.0, gt=0, le=60)


class ThroughputAssert(_Frozen):
    min_gbps: float | None = None


class ThroughputStep(_Step):
    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    seconds: float = Field(3.0, gt=0, le=60)
    streams: tuple[int, ...] = (1, 4)
    assert_: ThroughputAssert | None = Field(None, alias="assert")


class Traffic(_Frozen):
    """The packets a capture step sends while it watches: ``count`` pings, or UDP/TCP to ``port``."""

    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    proto: Literal["icmp", "udp", "tcp"] = "icmp"
    port: int | None = None
    count: int = Field(3, ge=1, le=100)


class CaptureStep(_Step):
    probe: Traffic  # the file's key stays `probe:`
    expect: tuple[dict[str, Any], ...] = Field(min_length=1)
    timeout: float = Field(5.0, gt=0, le=60)


class ImpairStep(_Step):
    at: str
    rate: str | None = None
    delay: str | None = None
    jitter: str | None = None
    loss: str | None = None
    clear: bool = False

    @model_validator(mode="after")
    def _check(self) -> ImpairStep:
        if ":" not in self.at:
            raise ValueError(f"at: {self.at!r} must be TARGET:IFACE, e.g. node1:eth0")
        if self.rate is not None and not _RATE.fullmatch(self.rate):
            raise ValueError(f"rate: bad rate {self.rate!r}: use e.g. 100mbit, 1gbit")
        for name in ("delay", "jitter"):
            value = getattr(self, name)
            if value is not None:
                duration_us(value)
        if self.loss is not None and not _PERCENT.fullmatch(self.loss):
            raise ValueError(f"loss: bad loss {self.loss!r}: use e.g. 1%")
        if not self.clear and not (self.rate or self.delay or self.loss):
            raise ValueError("give rate, delay and/or loss (or clear: true)")
        return self

    @property
    def needs_netem(self) -> bool:
        return bool(self.delay or self.loss or self.jitter)


STEP_KINDS = ("ping", "capture", "rtt", "tcp_rr", "throughput", "impair")


class Step(_Frozen):
    ping: PingStep | None = None
    capture: CaptureStep | None = None
    rtt: RttStep | None = None
    tcp_rr: TcpRrStep | None = None
    throughput: ThroughputStep | None = None
    impair: ImpairStep | None = None

    @model_validator(mode="before")
    @classmethod
    def _one(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) != 1:
            raise ValueError(f"a step is a mapping with exactly one of: {', '.join(STEP_KINDS)}")
        return data

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    @property
    def spec(self) -> Any:
        return getattr(self, self.kind)


class Scenario(_Frozen):
    name: str
    description: str = ""
    labs: tuple[LabRef, ...] = Field(min_length=1)
    steps: tuple[Step, ...] = ()


class ScenarioLab:
    """A lab of a scenario, resolved: its topology, and whether the run may skip it."""

    def __init__(self, ref: LabRef, topology: Topology, source: str) -> None:
        self.ref = ref
        self.topology = topology
        self.source = source

    @property
    def name(self) -> str:
        return self.topology.name


def load_scenario(path: str | Path) -> tuple[Scenario, list[ScenarioLab]]:
    """Read and validate a scenario and the topologies it names; build nothing."""
    source = str(path)
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TopologyError(source, where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:  # PyYAML's parser recurses once per nesting level
        raise TopologyError(source, "", "not valid YAML: the document nests too deeply") from None
    if not isinstance(data, dict):
        raise TopologyError(source, "", "expected a mapping with keys name, labs, steps")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise from_pydantic(exc, source, Scenario) from None
    base = Path(path).parent
    labs: list[ScenarioLab] = []
    for i, ref in enumerate(scenario.labs):
        file = (base / ref.file) if not Path(ref.file).is_absolute() else Path(ref.file)
        if not file.exists():
            raise TopologyError(source, f"labs[{i}].file", f"no such file {str(file)!r} (paths are relative to the scenario file)")
        topology = load_topology(file)
        update: dict[str, Any] = {}
        if ref.name:
            update["name"] = ref.name
        data = topology.model_dump(by_alias=True, exclude_unset=True)
        data.setdefault("network", {}).update(ref.network)
        if ref.cni:
            data["network"]["cni"] = ref.cni
        if update:
            data.update(update)
        try:
            topology = Topology.model_validate(data)
        except ValidationError as exc:
            raise from_pydantic(exc, source, Scenario) from None
        except TopologyError as exc:
            raise TopologyError(source, f"labs[{i}]", f"{file}: {exc.field}: {exc.message}") from None
        if any(lab.name == topology.name for lab in labs):
            raise TopologyError(source, f"labs[{i}].name", f"two labs are named {topology.name!r}: give each a name")
        labs.append(ScenarioLab(ref, topology, str(file)))
    _check_names(scenario, labs, source)
    return scenario, labs


def _check_names(scenario: Scenario, labs: list[ScenarioLab], source: str) -> None:
    """Every lab, pod and node a step names must exist, so nothing is built for a typo."""
    lab_names = {lab.name for lab in labs}
    for i, step in enumerate(scenario.steps):
        spec = step.spec
        field = f"steps[{i}].{step.kind}"
        chosen = [lab for lab in labs if spec.labs is None or lab.name in spec.labs]
        for name in spec.labs or ():
            if name not in lab_names:
                raise TopologyError(source, f"{field}.labs", f"unknown lab {name!r}; labs: {', '.join(sorted(lab_names))}")
        refs: list[tuple[str, str, list[ScenarioLab]]] = []
        if hasattr(spec, "src"):
            refs += [("from", spec.src, chosen), ("to", spec.dst, chosen)]
        if isinstance(spec, CaptureStep):
            expect.load_expectations(list(spec.expect), source, f"{field}.expect")
            refs += [("probe.from", spec.probe.src, chosen), ("probe.to", spec.probe.dst, chosen)]
        if isinstance(spec, (CaptureStep, ImpairStep)) and hasattr(spec, "at"):
            refs.append(("at", spec.at.split(":")[0], chosen))
        if isinstance(spec, RttStep) and spec.baseline is not None:
            base = [lab for lab in labs if lab.name == spec.baseline.lab] if spec.baseline.lab else chosen[:1]
            if spec.baseline.lab and not base:
                raise TopologyError(source, f"{field}.baseline.lab", f"unknown lab {spec.baseline.lab!r}")
            refs += [("baseline.from", spec.baseline.src, base), ("baseline.to", spec.baseline.dst, base)]
        for key, name, where in refs:
            for lab in where:
                if not _knows(lab.topology, name):
                    raise TopologyError(source, f"{field}.{key}", f"lab {lab.name!r} has no node or pod named {name!r}")


def _knows(topology: Topology, name: str) -> bool:
    if name in ("internet", "gateway", "underlay"):
        return name != "internet" or topology.network.internet is not None
    if any(node.name == name for node in topology.nodes):
        return True
    if any(pod.name == name for _node, pod in topology.pods()):
        return True
    try:  # an IP address is fine too (a Service's ClusterIP, say)
        ipaddress.IPv4Address(name)
        return True
    except ValueError:
        return False
