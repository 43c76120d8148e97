"""BIRD in every Calico node: the BGP half of calico-node, as a phase of ``netlab up``.

For ``cni: calico`` each node's namespace runs the distribution's BIRD 2 (``bird -f``) with
the configuration :mod:`netlab.datapaths.bird` renders after calico-node's confd templates.
Its configuration and control socket live in the lab's state directory, never in /etc/bird
or /run/bird: ``<state dir>/<lab>.bird/<node>.conf`` and ``<node>.ctl`` (both journaled, so
``down`` removes them), which is what ``birdc -s`` takes::

    netlab exec LAB node1 -- birdc -s /run/netlab/LAB.bird/node1.ctl show protocols

BIRD joins the lab's cgroup (:mod:`netlab.kernel.cgroup`) before it runs, so ``down`` and
``clean`` stop it with the lab's other processes. ``up`` returns once every node's mesh
sessions are Established and its peers' blocks are in its routing table.

``netlab node stop|start LAB NODE`` stops and starts one node's BIRD (:func:`stop_node`,
:func:`start_node`): its peers withdraw its blocks, then learn them again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from netlab import names
from netlab.datapaths import bird as bird_config
from netlab.errors import EnvironmentProblem, UsageError
from netlab.kernel import cgroup, processes
from netlab.kernel.inspect import MAIN_TABLE, inspect_namespaces
from netlab.model import Topology, parse_topology
from netlab.services.files import write
from netlab.state import LabState, lab_file

READY_TIMEOUT = 180.0 if os.environ.get("NETLAB_IN_VM") else 30.0
EXTRA_KEY = "bird"  # state.extra["bird"]: node -> pid (None: stopped by `netlab node stop`)


def bird_dir(lab: str) -> Path:
    return lab_file(lab, ".bird")


def socket_path(lab: str, node: str) -> Path:
    """Where ``birdc -s`` finds node ``node``'s BIRD."""
    return bird_dir(lab) / f"{node}.ctl"


def binaries() -> tuple[str, str]:
    """bird and birdc, or EnvironmentProblem saying how to get them."""
    found = [shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") for name in ("bird", "birdc")]
    if not all(found):
        raise EnvironmentProblem("cni calico runs BIRD in every node, but bird/birdc are not installed: apt install bird2 (scripts/setup.sh does)")
    return found[0] or "bird", found[1] or "birdc"


@dataclass(frozen=True)
class Peer:
    """One BGP session as ``calicoctl node status`` shows it."""

    node: str
    address: str
    kind: str  # node-to-node mesh
    state: str  # up | start | ...
    since: str
    info: str  # Established, Active, Connect, ...


def birdc(lab: str, node: str, *command: str) -> str:
    """Ask node ``node``'s BIRD (``birdc -s <socket> COMMAND``); its answer, or '' if it does not answer."""
    _bird, client = binaries()
    try:
        done = subprocess.run([client, "-s", str(socket_path(lab, node)), *command], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def parse_protocols(node: str, text: str) -> list[Peer]:
    """The BGP sessions in ``birdc show protocols`` output."""
    peers = []
    for line in text.splitlines():
        words = line.split(None, 5)
        if len(words) >= 5 and words[1] == "BGP" and words[0].startswith("Mesh_"):
            address = words[0][len("Mesh_"):].replace("_", ".")
            peers.append(Peer(node, address, "node-to-node mesh", words[3], words[4], " ".join(words[5].split()) if len(words) > 5 else ""))
    return peers


def peers(state: LabState) -> list[Peer]:
    """Every node's BGP sessions (a node whose BIRD does not answer has none)."""
    out: list[Peer] = []
    for node in (h.name for h in state.host_objects() if h.kind == "node"):  # names the model validated
        out += parse_protocols(node, birdc(state.lab, node, "show", "protocols"))
    return out


def start(state: LabState, topology: Topology) -> None:
    """Write every node's bird.conf, start BIRD in every node, wait for the mesh."""
    bird, _client = binaries()
    group = cgroup.create(state.lab)
    pids: dict[str, int] = {}
    for node in topology.nodes:
        conf = bird_dir(state.lab) / f"{node.name}.conf"
        write(state, conf, bird_config.render(topology, node))
        sock = socket_path(state.lab, node.name)
        log = bird_dir(state.lab) / f"{node.name}.log"
        for path in (sock, log):
            if not path.exists():
                state.will_write(path)
        ns = names.namespace(state.lab, node.name)
        pids[node.name] = processes.start_program(ns, [bird, "-f", "-c", str(conf), "-s", str(sock)], log, f"bird-{node.name}", group)
    state.extra = {**state.extra, EXTRA_KEY: pids}
    state.save()
    wait_mesh(state, topology)


def wait_mesh(state: LabState, topology: Topology) -> None:
    """Until every node has an Established session to every other node (or EnvironmentProblem)."""
    deadline = time.monotonic() + READY_TIMEOUT
    pids: dict[str, int | None] = {n.name: state.extra.get(EXTRA_KEY, {}).get(n.name) for n in topology.nodes}
    running = {node: pid for node, pid in pids.items() if pid is not None}  # a node stopped by `netlab node stop` stays so
    wanted = len(running) - 1
    while True:
        pending = []
        for node, pid in running.items():
            log = bird_dir(state.lab) / f"{node}.log"
            if not processes.alive(pid):
                text = log.read_text() if log.exists() else ""
                raise EnvironmentProblem(f"BIRD in node {node} exited at start: {text.strip()[-400:] or 'no output'}")
            up = [p for p in parse_protocols(node, birdc(state.lab, node, "show", "protocols")) if p.info.startswith("Established")]
            if len(up) < wanted:
                pending.append(f"{node} ({len(up)} of {wanted} sessions Established)")
        if not pending:
            pending = _missing_routes(state.lab, topology, list(running))
        if not pending:
            return
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"BGP mesh not up after {READY_TIMEOUT:.0f} s: {', '.join(pending)}; see {bird_dir(state.lab)}/*.log")
        time.sleep(0.2)


def _missing_routes(lab: str, topology: Topology, running: list[str]) -> list[str]:
    """The running nodes whose main table lacks a route to a block of another running node
    (BIRD installs them a moment after the session is Established)."""
    blocks = topology.calico_blocks()
    found = inspect_namespaces([names.namespace(lab, node) for node in running])
    missing = []
    for node in running:
        tables = found.get(names.namespace(lab, node))
        have = {r.dst for r in tables[1] if r.table == MAIN_TABLE} if tables else set()
        wanted = {str(b) for peer in running if peer != node for b in blocks[peer]}
        if not wanted <= have:
            missing.append(f"{node} (no route yet to {', '.join(sorted(wanted - have))})")
    return missing


def _node_or_refuse(state: LabState, node: str) -> None:
    if state.cni != "calico":
        raise UsageError(f"lab {state.lab!r} is cni {state.cni}: only cni calico runs a BGP daemon (BIRD) per node")
    nodes = [h.name for h in state.host_objects() if h.kind == "node"]
    if node not in nodes:
        raise UsageError(f"lab {state.lab!r} has no node {node!r}; nodes: {', '.join(nodes)}")


def established_to(state: LabState, node: str) -> list[str]:
    """The nodes whose BIRD has an Established session to ``node``."""
    address = next(str(h.ip) for h in state.host_objects() if h.name == node)
    return [p.node for p in peers(state) if p.address == address and p.info.startswith("Established")]


def stop_node(state: LabState, node: str) -> int | None:
    """Stop node ``node``'s BIRD, as when its calico-node stops: BIRD says goodbye (a BGP
    Cease, "Administrative shutdown"), so its peers withdraw its blocks at once; its own
    routes stay (``persist``). Returns the pid stopped, or None if it was not running.
    Waits until no peer has a session to it any more."""
    _node_or_refuse(state, node)
    pids: dict[str, int | None] = dict(state.extra.get(EXTRA_KEY, {}))
    pid = pids.get(node)
    if not processes.alive(pid):
        return None
    processes.terminate(pid, wait=5.0)
    if processes.alive(pid):
        raise EnvironmentProblem(f"BIRD in node {node} (pid {pid}) did not stop in 5 s")
    pids[node] = None
    state.extra = {**state.extra, EXTRA_KEY: pids}
    state.save()
    topology = parse_topology(state.topology, state.source or "<topology>")
    deadline = time.monotonic() + READY_TIMEOUT
    while established_to(state, node) or _still_routed(state.lab, topology, node):
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"the peers of {node} still route to it {READY_TIMEOUT:.0f} s after its BIRD stopped")
        time.sleep(0.1)
    return pid


def _still_routed(lab: str, topology: Topology, node: str) -> bool:
    """Does another node still have a BGP route to ``node``'s blocks? (With VXLAN felix's
    routes stay: they come from the datastore, not from BGP.)"""
    if topology.network.calico.vxlan_mode != "Never":
        return False
    blocks = {str(b) for b in topology.calico_blocks()[node]}
    others = [names.namespace(lab, n.name) for n in topology.nodes if n.name != node]
    return any(tables and blocks & {r.dst for r in tables[1] if r.table == MAIN_TABLE} for tables in inspect_namespaces(others).values())


def start_node(state: LabState, node: str) -> int | None:
    """Start node ``node``'s BIRD again (its configuration is kept) and wait for the mesh.
    Returns the new pid, or None if it was running."""
    _node_or_refuse(state, node)
    pids: dict[str, int | None] = dict(state.extra.get(EXTRA_KEY, {}))
    if processes.alive(pids.get(node)):
        return None
    bird, _client = binaries()
    conf, sock, log = (bird_dir(state.lab) / f"{node}{suffix}" for suffix in (".conf", ".ctl", ".log"))
    ns = names.namespace(state.lab, node)
    pid = processes.start_program(ns, [bird, "-f", "-c", str(conf), "-s", str(sock)], log, f"bird-{node}", cgroup.create(state.lab))
    pids[node] = pid
    state.extra = {**state.extra, EXTRA_KEY: pids}
    state.save()
    wait_mesh(state, parse_topology(state.topology, state.source or "<topology>"))
    return pid


class BirdPhase:
    """calico-node's BIRD in every node (``cni: calico``)."""

    name = "starting BIRD (Calico's BGP) in every node"

    def preflight(self, topology: Topology) -> None:
        binaries()

    def start(self, state: LabState) -> None:
        start(state, parse_topology(state.topology, state.source or "<topology>"))
