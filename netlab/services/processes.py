"""The servers a cluster runs: the cluster DNS (in ``coredns``), the hostname workload in every
pod that backs a Service or declares container ports (not in an ingress controller pod: that
runs nginx, :mod:`netlab.services.ingress`), MetalLB's speaker in every node (once
a LoadBalancer Service has an address) and the internet's DNS (in a lab with an ``internet``:
the nodes' resolver, which the cluster DNS forwards to, and ExternalDNS's zones).

Each is started inside its pod's namespace (:func:`netlab.kernel.processes.start`), by file
rather than ``-m netlab...``, so the process imports only the standard library (and dnslib),
not netlab and pydantic: it starts in a tenth of the time, which matters for N pods and on
an emulated CPU. It runs in the lab's cgroup (:mod:`netlab.kernel.cgroup`) and its log is
journaled in the lab's record, so ``netlab down`` and ``netlab clean`` stop it and remove the
log even after a crash.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from netlab.errors import EnvironmentProblem
from netlab.kernel import cgroup, processes
from netlab.model.service import Service
from netlab.services.endpoints import PodInfo, workload_ports
from netlab.services.files import external_dns_path, records_path, resolv_conf_path, speaker_config_path
from netlab.services.gateway import is_data_plane
from netlab.services.ingress import is_controller
from netlab.services.records import ClusterRecord, Server
from netlab.state import LabState, state_dir

DNS_POD = "coredns"
READY_TIMEOUT = 180.0 if os.environ.get("NETLAB_IN_VM") else 15.0  # an emulated CPU starts Python slowly


def program(name: str) -> list[str]:
    """How to run one of this package's servers/clients (``dns``, ``workload``, ``client``)."""
    return ["-I", str(Path(__file__).with_name(f"{name}.py"))]  # -I: not its own directory on sys.path


def _start(state: LabState, ns: str, log_name: str, argv: list[str]) -> tuple[int, Path]:
    log = state_dir() / f"{state.lab}.{log_name}.log"
    if not log.exists():
        state.will_write(log)
    return processes.start(ns, argv, log, log_name, group=cgroup.create(state.lab)), log


def _wait_ready(started: list[tuple[str, int, Path]], label: str = "the server in pod {}") -> None:
    """Wait until every started server's log says ``serving``; EnvironmentProblem naming it
    (``label`` formatted with its name) when it exits or is not serving in time."""
    deadline = time.monotonic() + READY_TIMEOUT
    pending = list(started)
    while pending:
        for item in list(pending):
            name, pid, log = item
            text = log.read_text() if log.exists() else ""
            if "serving" in text:
                pending.remove(item)
            elif not processes.alive(pid):
                raise EnvironmentProblem(f"{label.format(name)} exited at start: {text.strip()[-400:] or 'no output'}")
            elif time.monotonic() > deadline:
                raise EnvironmentProblem(f"{label.format(name)} was not serving after {READY_TIMEOUT:.0f} s: {text.strip()[-400:] or 'no output'}")
        time.sleep(0.02)


def start_dns(state: LabState, record: ClusterRecord, pods: list[PodInfo]) -> None:
    """Start the cluster DNS in the ``coredns`` pod unless it runs already."""
    pod = next((p for p in pods if p.name == DNS_POD), None)
    if pod is None or (record.dns is not None and processes.alive(record.dns.pid)):
        return
    argv = [*program("dns"), "--records", str(records_path(state.lab)), "--resolv-conf", str(resolv_conf_path(pod.netns))]
    pid, log = _start(state, pod.netns, DNS_POD, argv)
    record.dns = Server(pid, str(log), pod=DNS_POD)
    _wait_ready([(DNS_POD, pid, log)])


def start_workloads(state: LabState, record: ClusterRecord, services: list[Service], pods: list[PodInfo]) -> None:
    """Every pod runs the hostname server on exactly the ports it should: restarted when
    they change, stopped when none are left."""
    started = []
    for pod in pods:
        if pod.name == DNS_POD or pod.host_network or is_controller(pod.labels) or is_data_plane(pod.labels):  # these run their own server
            continue
        ports = workload_ports(services, pod)
        current = record.workloads.get(pod.name)
        if current and current.ports == ports and processes.alive(current.pid):
            continue
        if current:
            processes.terminate(current.pid)
            record.workloads.pop(pod.name, None)
        if not ports:
            continue
        argv = [*program("workload"), "--name", pod.name]
        for port, proto in ports:
            argv += [f"--{proto.lower()}", str(port)]
        pid, log = _start(state, pod.netns, pod.name, argv)
        record.workloads[pod.name] = Server(pid, str(log), ports)
        started.append((pod.name, pid, log))
    _wait_ready(started)


def start_speakers(state: LabState, record: ClusterRecord, nodes: dict[str, str]) -> None:
    """MetalLB's speaker DaemonSet: one ARP speaker per node (``nodes``: name -> namespace)
    unless it runs already."""
    started = []
    for node, ns in nodes.items():
        current = record.speakers.get(node)
        if current and processes.alive(current.pid):
            continue
        name = f"speaker-{node}"
        argv = [*program("speaker"), "--node", node, "--iface", "eth0", "--config", str(speaker_config_path(state.lab))]
        pid, log = _start(state, ns, name, argv)
        record.speakers[node] = Server(pid, str(log), pod=name)
        started.append((name, pid, log))
    _wait_ready(started)


def wait_applied(record: ClusterRecord, generation: int) -> None:
    """Wait until every speaker acted on config ``generation`` (announced or withdrew), so the
    wire follows the election when sync returns."""
    deadline = time.monotonic() + READY_TIMEOUT
    pending = dict(record.speakers)
    while pending:
        for node, server in list(pending.items()):
            text = Path(server.log).read_text() if Path(server.log).exists() else ""
            if f"applied generation {generation}\n" in text:
                pending.pop(node)
            elif not processes.alive(server.pid):
                raise EnvironmentProblem(f"MetalLB's speaker on {node} exited: {text.strip()[-400:] or 'no output'}")
            elif time.monotonic() > deadline:
                raise EnvironmentProblem(f"MetalLB's speaker on {node} did not apply its configuration in {READY_TIMEOUT:.0f} s")
        if pending:
            time.sleep(0.02)


def start_external_dns(state: LabState, record: ClusterRecord, ns: str, address: str) -> None:
    """The internet's authoritative DNS on ``address``:53, unless it runs already."""
    if record.external_dns is not None and processes.alive(record.external_dns.pid):
        return
    argv = [*program("authdns"), "--records", str(external_dns_path(state.lab)), "--address", address]
    pid, log = _start(state, ns, "external-dns", argv)
    record.external_dns = Server(pid, str(log), pod="internet")
    _wait_ready([("internet (authoritative DNS)", pid, log)])
