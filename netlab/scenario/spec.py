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
  - bgp_outage: {from: web-1, to: web-2, node: node2, down: 1s, interval: 10ms}   # cni calico: BIRD stopped, started
  - http:                   # HTTP requests from a host over several paths, interleaved
      from: internet
      paths:
        - {name: NodePort, service: default/web-np, expect: {client: node}}
        - {name: NLB ip, url: "http://web-ip.example.test/", expect: {client: load-balancer}}
        - {name: Ingress, service: ingress-nginx/ingress-nginx-controller, headers: ["Host: web.example.test"],
           expect: {client: "service:ingress-nginx/ingress-nginx-controller", x-forwarded-for: internet}}
```

A lab entry may list manifests to ``apply:`` once it is up (what ``netlab apply`` does), checked
here like the topology: a bad manifest builds nothing.

``optional: true`` marks a lab this kernel may be unable to build (e.g. IP-in-IP without the
ipip module): it is then reported as skipped with the reason instead of failing the run.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from netlab.errors import NetlabError, TopologyError
from netlab.model import Topology, from_pydantic, k8s_names, load_topology, read_text
from netlab.observe import expect
from netlab.services import manifests

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
    apply: tuple[str, ...] = Field((), max_length=20)  # manifest files applied once the lab is up (`netlab apply`)


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


class BgpOutageStep(_Step):
    """Pings ``from`` -> ``to`` every ``interval`` while ``node``'s BGP daemon (BIRD) is stopped
    for ``down`` and started again (``netlab node stop|start``); reports how long the pings
    failed, measured from which probes got a reply (cni calico)."""

    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    node: str
    down: str = "1s"
    interval: str = "10ms"

    @model_validator(mode="after")
    def _check(self) -> BgpOutageStep:
        if not 1_000 <= duration_us(self.interval) <= 1_000_000:
            raise ValueError(f"interval: {self.interval!r} must be between 1ms and 1s")
        if not 0 <= duration_us(self.down) <= 60_000_000:
            raise ValueError(f"down: {self.down!r} must be at most 60s")
        return self


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


# An http step's URL, header and path name: checked whole (fullmatch) before they reach argv or a report.
_URL = re.compile(r"(https?)://([a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?)(?::([0-9]{1,5}))?(/[\x21-\x7e]{0,1000})?")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}:[ ]?[\x21-\x7e](?:[\x20-\x7e]{0,998}[\x21-\x7e])?")
_URL_PATH = re.compile(r"/[\x21-\x7e]{0,1000}")
_PATH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ,./()+_-]{0,39}")
ADDRESS_ROLES = ("node", "load-balancer")


def service_ref(value: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` of a Service, checked with Kubernetes' rules; ValueError otherwise."""
    namespace, sep, name = value.partition("/")
    if not sep or k8s_names.is_dns1123_label(namespace) or k8s_names.is_dns1035_label(name):
        raise ValueError(f"{value!r} is not NAMESPACE/NAME of a Service (e.g. default/web)")
    return namespace, name


def check_address_role(value: str) -> str:
    """An http step's expected address: ``node`` (any node's address), ``load-balancer`` (the
    address the path connects to), ``service:NAMESPACE/NAME`` (a ready endpoint of that Service)
    a host of the lab (``internet``, a node or pod name; checked against the lab later) or an IPv4 address."""
    if value in ADDRESS_ROLES:
        return value
    if value.startswith("service:"):
        service_ref(value.removeprefix("service:"))
        return value
    if k8s_names.is_dns1123_subdomain(value):
        raise ValueError(f"{value!r}: expected node, load-balancer, service:NAMESPACE/NAME or a host of the lab (internet, a node or pod)")
    return value


class HttpExpect(_Frozen):
    """The addresses the answering pod must report: its TCP peer, and X-Forwarded-For's first entry."""

    client: str | None = None
    x_forwarded_for: str | None = Field(None, alias="x-forwarded-for")

    @model_validator(mode="after")
    def _check(self) -> HttpExpect:
        for value in (self.client, self.x_forwarded_for):
            if value is not None:
                check_address_role(value)
        return self


class HttpPath(_Frozen):
    """One way in: a ``url`` (its host resolved once, in the source), or a ``service`` reached on
    a node's NodePort (``node``, else the first node with a ready endpoint when the Service's
    externalTrafficPolicy is Local, else the first node), at ``path``."""

    name: str
    url: str | None = None
    service: str | None = None
    port: int | None = Field(None, ge=1, le=65535)  # the Service port (default: its first)
    node: str | None = None
    path: str = "/"
    headers: tuple[str, ...] = Field((), max_length=20)
    insecure: bool = False  # https without checking the certificate
    expect: HttpExpect = HttpExpect()

    @model_validator(mode="after")
    def _check(self) -> HttpPath:
        if not _PATH_NAME.fullmatch(self.name):
            raise ValueError(f"name: {self.name!r}: 1-40 letters, digits, spaces and ,./()+_-, starting with a letter or digit")
        if (self.url is None) == (self.service is None):
            raise ValueError("give url or service (a Service reached on a node's NodePort), not both")
        if self.url is not None:
            match = _URL.fullmatch(self.url)
            if not match or (match.group(3) and not 1 <= int(match.group(3)) <= 65535):
                raise ValueError(f"url: {self.url!r} is not http(s)://HOST[:PORT][/PATH] (lowercase host, printable path)")
            if self.port is not None or self.node is not None or self.path != "/":
                raise ValueError("port, node and path go with service; a url carries its own")
        if self.service is not None:
            service_ref(self.service)
        if not _URL_PATH.fullmatch(self.path):
            raise ValueError(f"path: {self.path!r} must start with / (printable, no spaces)")
        for header in self.headers:
            if not _HEADER.fullmatch(header):
                raise ValueError(f"headers: {header!r} is not 'Name: value' (a token, then printable text)")
        return self


class HttpStep(_Step):
    """HTTP requests from ``from`` over every path, in interleaved rounds (a new TCP connection
    per request), with the client address each pod saw and the request latency."""

    src: str = Field(alias="from")
    paths: tuple[HttpPath, ...] = Field(min_length=1, max_length=20)
    requests: int = Field(1000, ge=10, le=100_000)  # per path (`netlab run --samples` overrides)
    chunk: int = Field(100, ge=10, le=10_000)
    warmup: int = Field(20, ge=0, le=1000)
    timeout: float = Field(2.0, gt=0, le=30)
    hops: bool = True  # count the request's hops with netlab.observe.trace
    baseline: str | None = None  # a path's name: the others' p50 against it (default: the first path)

    @model_validator(mode="after")
    def _check(self) -> HttpStep:
        names = [p.name for p in self.paths]
        if len(set(names)) != len(names):
            raise ValueError(f"paths: two paths have the same name ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline: {self.baseline!r} is not a path's name; paths: {', '.join(names)}")
        return self


STEP_KINDS = ("ping", "capture", "rtt", "tcp_rr", "throughput", "impair", "http", "bgp_outage")


class Step(_Frozen):
    ping: PingStep | None = None
    capture: CaptureStep | None = None
    rtt: RttStep | None = None
    tcp_rr: TcpRrStep | None = None
    throughput: ThroughputStep | None = None
    impair: ImpairStep | None = None
    http: HttpStep | None = None
    bgp_outage: BgpOutageStep | None = None

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

    def __init__(self, ref: LabRef, topology: Topology, source: str, manifests: tuple[str, ...] = ()) -> None:
        self.ref = ref
        self.topology = topology
        self.source = source
        self.manifests = manifests  # resolved paths of ref.apply

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
        applied = []
        for j, name in enumerate(ref.apply):
            manifest = (base / name) if not Path(name).is_absolute() else Path(name)
            if not manifest.is_file():
                raise TopologyError(source, f"labs[{i}].apply[{j}]", f"no such file {str(manifest)!r} (paths are relative to the scenario file)")
            try:
                manifests.load(manifest)  # every document checked as `netlab apply` checks it
            except TopologyError as exc:
                raise TopologyError(source, f"labs[{i}].apply[{j}]", f"{manifest}: {exc.field}: {exc.message}") from None
            applied.append(str(manifest))
        labs.append(ScenarioLab(ref, topology, str(file), tuple(applied)))
    _check_names(scenario, labs, source)
    return scenario, labs


@dataclass(frozen=True)
class SourceLines:
    """Where each lab entry and each step of a scenario file starts (1-based line numbers), for
    CI annotations that point at the step; empty when the file cannot be read again."""

    labs: tuple[int, ...] = ()
    steps: tuple[int, ...] = ()


def source_lines(path: str | Path) -> SourceLines:
    """The line of every ``labs:`` entry and every ``steps:`` entry of a (valid) scenario file.

    ``yaml.safe_load`` keeps no positions, so the file is composed again into YAML nodes, which
    carry their start marks. Never raises: a file that changed since it was loaded gives what
    can still be found."""
    try:
        root = yaml.compose(read_text(path), Loader=yaml.SafeLoader)
    except (NetlabError, yaml.YAMLError, RecursionError, ValueError):
        return SourceLines()
    found: dict[str, tuple[int, ...]] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value in ("labs", "steps") and isinstance(value, yaml.SequenceNode):
                found[key.value] = tuple(item.start_mark.line + 1 for item in value.value)
    return SourceLines(labs=found.get("labs", ()), steps=found.get("steps", ()))


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
            refs.append(("from", spec.src, chosen))
        if hasattr(spec, "dst"):
            refs.append(("to", spec.dst, chosen))
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
        if isinstance(spec, BgpOutageStep):
            for lab in chosen:
                if lab.topology.network.cni != "calico":
                    raise TopologyError(source, f"{field}.labs", f"lab {lab.name!r} is cni {lab.topology.network.cni}: bgp_outage needs cni calico (BIRD)")
                if not any(node.name == spec.node for node in lab.topology.nodes):
                    raise TopologyError(source, f"{field}.node", f"lab {lab.name!r} has no node {spec.node!r}")
        if isinstance(spec, HttpStep):
            for j, path in enumerate(spec.paths):
                where_ = f"{field}.paths[{j}]"
                if path.node is not None:
                    for lab in chosen:
                        if not any(node.name == path.node for node in lab.topology.nodes):
                            raise TopologyError(source, f"{where_}.node", f"lab {lab.name!r} has no node {path.node!r}")
                for key, value in (("client", path.expect.client), ("x-forwarded-for", path.expect.x_forwarded_for)):
                    if value is not None and value not in ADDRESS_ROLES and not value.startswith("service:"):
                        refs.append((f"paths[{j}].expect.{key}", value, chosen))
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
