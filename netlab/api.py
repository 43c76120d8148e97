"""netlab as a library: build a lab, look at it, probe it, tear it down.

::

    import netlab

    with netlab.up("topologies/flannel-vxlan.yaml", name="t1") as lab:  # torn down on exit, even on error
        done = lab.exec("client", ["ping", "-c1", "web-2"])            # subprocess.CompletedProcess
        t = lab.trace("client", "web-2")                                # hops, changes, verdict
        assert t.encapsulation == "vxlan" and not t.nat
        with lab.capture("node1:eth0", bpf="udp port 8472") as cap:
            lab.exec("client", ["ping", "-c1", "web-2"])
        assert cap.packets                                              # scapy packets
        lab.check().raise_for_failures()
    report = netlab.run_scenario("scenarios/overlay-vs-native.yaml")

A lab built here is the lab ``netlab up`` builds: the same plan, journal, lock and rollback
(:func:`netlab.build.up`), listed by ``netlab status``, removed by ``netlab down`` or ``netlab
clean`` by its record. Targets are named as on the command line: nodes, pods, ``internet``,
``gateway``; ``trace`` also takes Services, addresses and DNS names. Errors are the
:mod:`netlab.errors` tree; a topology problem is a :class:`~netlab.errors.TopologyError`
naming the source and the field, raised before anything is built.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netlab import lab as engine
from netlab.errors import EnvironmentProblem, TopologyError
from netlab.kernel import cgroup, netns
from netlab.model import Topology, parse_topology
from netlab.model.load import read_text
from netlab.state import LabState

if TYPE_CHECKING:
    from netlab.observe.capture import Capture
    from netlab.observe.check import Reachability
    from netlab.observe.trace import Trace
    from netlab.scenario.results import ScenarioReport

TopologySource = str | Path | Mapping[str, Any] | Topology


def load(topology: TopologySource, name: str | None = None, cni: str | None = None) -> tuple[Topology, str]:
    """A validated topology and its source label, from a file, a mapping or a model, with the lab's
    ``name`` and ``network.cni`` replaced when given (validated like the file's own values)."""
    if isinstance(topology, Topology):
        data: Any = topology.model_dump(mode="json", by_alias=True, exclude_unset=True)
        source = "<python>"
    elif isinstance(topology, Mapping):
        data, source = dict(topology), "<python>"
    else:
        import yaml

        source = str(topology)
        text = read_text(topology)
        if name is None and cni is None:
            return parse_topology(text, source), source
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            return parse_topology(text, source), source  # the parser says where and why
    if not isinstance(data, dict):
        raise TopologyError(source, "", "expected a mapping with keys name, network, nodes")
    if name is not None:
        data = {**data, "name": name}
    if cni is not None:
        network = data.get("network") or {}
        if not isinstance(network, dict):
            raise TopologyError(source, "network", "expected a mapping")
        data = {**data, "network": {**network, "cni": cni}}
    return parse_topology(data, source), source


@dataclass
class Lab:
    """A running lab: what :func:`up` returns and :func:`attach` finds.

    As a context manager it tears the lab down on exit (also on an exception or Ctrl-C).
    ``captures`` and ``last_trace`` keep what this object captured and traced, for reports.
    """

    name: str
    source: str = ""
    captures: list[tuple[str, Capture]] = field(default_factory=list, repr=False)
    last_trace: Trace | None = field(default=None, repr=False)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    @property
    def state(self) -> LabState:
        """The lab's record (its namespaces, hosts, services), read afresh; the lab must be up."""
        return engine.running(self.name)

    @property
    def is_up(self) -> bool:
        """Whether the lab still has a record (``down`` removes it)."""
        return LabState.load(self.name) is not None

    def exec(self, target: str, argv: Sequence[str], *, capture_output: bool = True, timeout: float | None = None,
             input: str | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (a list, never a shell string) inside ``target``'s namespace, in the lab's
        cgroup (``down`` stops what it leaves running), like ``netlab exec LAB TARGET -- ARGV``.
        Output is captured as text unless ``capture_output`` is false (then it goes to ours)."""
        state = self.state
        ep = engine.host(state, target)
        try:
            return subprocess.run(
                netns.exec_argv(ep.ns, list(argv)), capture_output=capture_output, text=True, timeout=timeout, input=input,
                check=check, preexec_fn=cgroup.joiner(cgroup.create(state.lab)),
            )
        except FileNotFoundError:
            raise EnvironmentProblem("the `ip` command is missing: apt install iproute2") from None

    def trace(self, src: str, dst: str, proto: str = "icmp", port: int | None = None, *, host: str | None = None,
              path: str | None = None, timeout: float = 3.0) -> Trace:
        """Trace one probe from ``src`` to ``dst`` hop by hop, like ``netlab trace``: the result has
        ``rows`` (the packet at every hop), ``encapsulation``, ``nat``, ``replied``, ``verdict``."""
        from netlab.observe.trace import trace

        self.last_trace = trace(self.state, src, dst, proto, port, timeout=timeout, host=host, path=path)
        return self.last_trace

    @contextmanager
    def capture(self, point: str, bpf: str | None = None, count: int | None = None, timeout: float = 10.0,
                settle: float = 0.2) -> Iterator[Capture]:
        """Capture on ``point`` (``node1:eth0``, or a pod's name for its own interface) around a block,
        like ``netlab capture``. On leaving the block it waits for ``count`` packets (at most
        ``timeout`` seconds), or without ``count`` for ``settle`` seconds; then ``.packets`` are scapy
        packets and ``.write(path)`` writes a pcap. The socket is closed on any exit."""
        from netlab.observe.capture import Capture, resolve_point

        where = resolve_point(self.state.host_objects(), point)
        cap = Capture(where.ns, where.iface, bpf, count, timeout if count else timeout + settle + 3600.0).start()
        self.captures.append((str(where), cap))
        try:
            yield cap
            if count:
                cap.wait()
            else:
                time.sleep(settle)
        finally:
            cap.stop()

    def check(self, every: bool = False, workers: int = 16) -> Reachability:
        """Ping the lab's reachability matrix, like ``netlab check`` (``every``: ``--all``); call
        ``.raise_for_failures()`` on the result to fail on any path that misbehaved."""
        from netlab.observe import check

        state = self.state
        return check.run(state.host_objects(), state.cni, state.lab, workers=workers, every=every)

    def status(self) -> dict[str, Any]:
        """What ``netlab status LAB --json`` prints: namespaces, interfaces, routes, Services, DNS."""
        return status(self.state)

    def apply(self, file: str | Path, dry_run: bool = False) -> list[str]:
        """Apply a Kubernetes manifest file (Services, Deployments, Ingresses ...) to the lab, like
        ``netlab apply LAB -f FILE``; return kubectl's result lines."""
        from netlab.services import manifests

        return manifests.apply_file(self.state, file, dry_run=dry_run)

    def down(self) -> engine.Teardown | None:
        """Remove the lab by its record (as ``netlab down``); nothing to do if it is already gone."""
        if LabState.load(self.name) is None:
            return None
        return engine.down(self.name)


def up(topology: TopologySource, name: str | None = None, cni: str | None = None) -> Lab:
    """Build a lab, exactly as ``netlab up`` does, from a topology file, a mapping of the same
    shape, or a :class:`~netlab.model.Topology`; ``name`` and ``cni`` override the topology's.
    Needs root. On any failure everything built is removed before the error is raised."""
    model, source = load(topology, name, cni)
    return build(model, source)


def build(topology: Topology, source: str = "") -> Lab:
    """Build an already validated ``topology`` (see :func:`load`) as ``netlab up`` does."""
    from netlab import build as builder

    engine.require_root()
    builder.up(topology, source)
    return Lab(topology.name, source)


def attach(name: str) -> Lab:
    """The running lab ``name`` (built by ``netlab up`` or :func:`up`), to look at or probe."""
    state = engine.running(name)
    return Lab(state.lab, state.source)


def status(state: LabState, views: list[Any] | None = None) -> dict[str, Any]:
    """A running lab's status as data (``netlab status --json``); ``views``: already collected."""
    import dataclasses

    from netlab.observe import status as observe_status
    from netlab.services import cluster, gateway, ingress, records

    data = observe_status.as_json(state, views if views is not None else observe_status.collect(state))
    if state.cni == "calico":
        from netlab.services import bird

        data["bgp"] = [dataclasses.asdict(p) for p in bird.peers(state)]
    if state.cni == "vpc-native":
        data["enis"] = [dataclasses.asdict(e) for e in observe_status.enis(state)]
    if records.has_services(state):
        data["services"] = cluster.describe_services(state)
        data["externalDNS"] = cluster.describe_dns(state)
        info, gw = ingress.describe(state), gateway.describe(state)
        if info:
            data["ingress"] = info
        if gw:
            data["gatewayAPI"] = gw
    return data


def run_scenario(path: str | Path, out: str | Path | None = None, samples: int | None = None) -> ScenarioReport:
    """Run a scenario file like ``netlab run``: build its labs, run its steps, always tear down.
    ``out``: write report.json and the plots there. ``report.passed`` says whether every step did."""
    from netlab.scenario.runner import Runner
    from netlab.scenario.spec import load_scenario

    scenario, labs = load_scenario(str(path))
    return Runner(scenario, labs, str(path), Path(out) if out is not None else None, samples).run()
