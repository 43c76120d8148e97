"""What dockerd runs on a Docker host beside its rules: one docker-proxy per published port.

With ``network.userlandProxy`` true (dockerd's default), every published port gets a
userland proxy in its host's namespace (:mod:`netlab.services.docker_proxy`), started with
the argv dockerd 28.5.2 uses (``libnetwork/portmapper/proxy_linux.go``). Like every server
netlab starts, each joins the lab's cgroup and its log is journaled, so ``netlab down`` and
``netlab clean`` stop it and remove the log. With ``userlandProxy: false`` nothing runs:
the rules (``netlab.datapaths.docker0``) do the hairpin NAT instead.
"""

from __future__ import annotations

from pathlib import Path

from netlab import names
from netlab.datapaths import docker0
from netlab.kernel import cgroup, processes
from netlab.model import Topology
from netlab.services.processes import _wait_ready, program
from netlab.services.records import topology_of
from netlab.state import LabState, state_dir


def proxy_argv(container_ip: str, host_port: int, container_port: int, proto: str) -> list[str]:
    """docker-proxy's arguments as dockerd passes them (host IP 0.0.0.0: the default binding)."""
    return [
        "-proto", proto, "-host-ip", "0.0.0.0", "-host-port", str(host_port),
        "-container-ip", container_ip, "-container-port", str(container_port),
    ]


class DockerProxyPhase:
    """The userland proxies as a phase of the lab's lifecycle (see :class:`netlab.lab.Phase`)."""

    name = "starting docker-proxy for the published ports"

    def preflight(self, topology: Topology) -> None:
        return None

    def start(self, state: LabState) -> None:
        start_proxies(state, topology_of(state))


def start_proxies(state: LabState, topology: Topology) -> list[int]:
    """Start one docker-proxy per published port of every host; wait until each listens."""
    started: list[tuple[str, int, Path]] = []
    group = cgroup.create(state.lab)
    for node in topology.nodes:
        ns = names.namespace(state.lab, node.name)
        for ip, pod, host_port, container_port, proto in docker0.published(node):
            what = f"docker-proxy-{node.name}-{host_port}-{proto}"
            log = state_dir() / f"{state.lab}.{what}.log"
            if not log.exists():
                state.will_write(log)
            argv = [*program("docker_proxy"), *proxy_argv(str(ip), host_port, container_port, proto)]
            pid = processes.start(ns, argv, log, what, group=group)
            started.append((f"{what} (for {pod})", pid, log))
    _wait_ready(started, "{}")
    return [pid for _what, pid, _log in started]

