"""A Calico node added to a running lab (``netlab node add LAB NAME [--subnet S]``).

What happens on a real cluster when a node joins: the kubelet registers the Node, calico-node
starts on it, claims an IPAM block (libcalico-go ``lib/ipam``: block affinity on first use;
with IP-in-IP or VXLAN the tunnel address is the first it hands out), and every node's confd
re-renders ``bird.cfg`` with one more ``Mesh_<a_b_c_d>`` protocol (the node-to-node mesh lists
every Node resource) and tells BIRD to reload it; BIRD opens the new session and the blocks
flow both ways.

netlab does the same in three steps:

1. the datapath's own operations for the lab with the node, minus the lab without it (the
   node's namespace, its underlay port and address, tunnel device, felix's ipsets and rules,
   VXLAN peer entries on the others), applied by the one journaled loop
   (:func:`netlab.lab.apply`), so a failure leaves nothing of the new node behind;
2. every existing node's ``bird.conf`` rewritten and reloaded (``birdc configure``: BIRD keeps
   the sessions whose configuration did not change, as confd's reload does);
3. BIRD started in the new node (in the lab's cgroup), and ``node add`` returns once every
   running node has every other running node's blocks in its table.

The node is appended to the lab's node list: the others keep their addresses (node IPs are
per subnet in node order; the new node takes the next one of its subnet) and blocks. A lab
whose nodes hold second blocks would see those renumbered (netlab claims blocks in rounds,
:mod:`netlab.model.ipam`), so it is refused, as is a lab with Services (kube-proxy's rules on
the new node are not built).
"""

from __future__ import annotations

import copy
from dataclasses import asdict

from netlab import lab, names
from netlab.datapaths import bird as bird_config
from netlab.datapaths import make_plan
from netlab.errors import TopologyError, UsageError
from netlab.kernel import cgroup, limits, processes
from netlab.kernel.backend import NetlinkBackend
from netlab.model import Topology, parse_topology
from netlab.plan import Host
from netlab.services import bird
from netlab.services.files import write
from netlab.services.pods import incremental_ops
from netlab.state import LabState


def add(state: LabState, name: str, subnet: str | None = None) -> Host:
    """Add Calico node ``name`` (on ``subnet``, default the first) to the running lab; it joins
    the BGP mesh and claims a block. UsageError (nothing built) when the lab is not Calico or
    the node cannot be added; BuildError (nothing left of it) when the kernel refuses."""
    if state.cni != "calico":
        raise UsageError(f"lab {state.lab!r} is cni {state.cni}: netlab node add adds Calico nodes (cni calico) only")
    source = state.source or state.lab
    old_topo = parse_topology(state.topology, source)
    what = f"cannot add node {name!r} to lab {state.lab!r}"
    if old_topo.services:
        raise UsageError(f"{what}: the lab has Services, and kube-proxy's rules on a new node are not built; nothing was built")
    data = copy.deepcopy(state.topology)
    entry: dict[str, object] = {"name": name, "pods": []}
    if subnet is not None:
        entry["subnet"] = subnet
    data["nodes"] = [*data["nodes"], entry]
    try:
        new_topo = parse_topology(data, source)
        old_plan, new_plan = make_plan(old_topo, source), make_plan(new_topo, source)
    except TopologyError as exc:
        raise UsageError(f"{what}: the lab's topology with it would be refused at {exc.field}: {exc.message}; nothing was built") from None
    _no_renumbering(state, old_topo, new_topo, new_plan.hosts, what)
    ops = incremental_ops(old_plan, new_plan, set())
    limits.check_namespaces(len(set(new_plan.namespaces) - set(old_plan.namespaces)), f"adding node {name} to lab {state.lab!r}")
    kernel = NetlinkBackend()
    try:
        lab.apply(state, ops, kernel)
    finally:
        kernel.close()
    state.topology = new_topo.model_dump(mode="json", by_alias=True)
    state.hosts = [*state.hosts, *(asdict(h) for h in new_plan.hosts if h.name == name)]
    state.save()
    _join_mesh(state, new_topo, name)
    return next(h for h in new_plan.hosts if h.name == name)


def _no_renumbering(state: LabState, old: Topology, new: Topology, hosts: tuple[Host, ...], what: str) -> None:
    before = old.calico_blocks()
    after = new.calico_blocks()
    for node, blocks in before.items():
        if after[node] != blocks:
            raise UsageError(
                f"{what}: {node}'s blocks would move ({', '.join(map(str, blocks))} -> {', '.join(map(str, after[node]))}): "
                "netlab claims blocks in rounds, node by node; nothing was built"
            )
    recorded = {h.name: h for h in state.host_objects()}
    for host in hosts:
        if host.name in recorded and recorded[host.name].ip != host.ip:
            raise UsageError(f"{what}: {host.name} would be renumbered ({recorded[host.name].ip} -> {host.ip}); nothing was built")


def _join_mesh(state: LabState, topology: Topology, name: str) -> None:
    """confd's part (rewrite and reload every BIRD) and calico-node's start on the new node."""
    binary, _client = bird.binaries()
    pids: dict[str, int | None] = dict(state.extra.get(bird.EXTRA_KEY, {}))
    for node in topology.nodes:
        write(state, bird.bird_dir(state.lab) / f"{node.name}.conf", bird_config.render(topology, node))
        if node.name != name and processes.alive(pids.get(node.name)):
            bird.birdc(state.lab, node.name, "configure")
    node = next(n for n in topology.nodes if n.name == name)
    conf, sock, log = (bird.bird_dir(state.lab) / f"{node.name}{suffix}" for suffix in (".conf", ".ctl", ".log"))
    for path in (sock, log):
        if not path.exists():
            state.will_write(path)
    ns = names.namespace(state.lab, node.name)
    pids[name] = processes.start_program(ns, [binary, "-f", "-c", str(conf), "-s", str(sock)], log, f"bird-{name}", cgroup.create(state.lab))
    state.extra = {**state.extra, bird.EXTRA_KEY: pids}
    state.save()
    bird.wait_mesh(state, topology)
