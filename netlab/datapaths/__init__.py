"""Datapaths: one module per ``network.cni``, each turning a topology into a plan.

A datapath is registered by name; an unknown or not-yet-implemented one is refused with
a message listing what exists. Shared parts (underlay, gateway, internet) live in
:mod:`netlab.datapaths.underlay`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable

from netlab import names
from netlab.datapaths import calico, docker0, hostgw, vpc, vxlan
from netlab.datapaths.underlay import Builder
from netlab.errors import TopologyError
from netlab.model import KNOWN_CNIS, Topology
from netlab.model.limits import BRIDGE_PORTS, BRIDGE_WHY
from netlab.plan import Plan, SetMaster

BuildFn = Callable[[Topology, Builder], None]

DATAPATHS: dict[str, BuildFn] = {
    "docker0": docker0.build,
    "vxlan": vxlan.build,
    "calico": calico.build,
    "host-gw": hostgw.build,
    "vpc-native": vpc.build,
}

# kernel features (netlab.doctor probe names) a datapath needs; `up` probes them before building
REQUIRES: dict[str, tuple[str, ...]] = {
    "vxlan": ("vxlan",),
}


def make_plan(topology: Topology, source: str = "<topology>") -> Plan:
    """Turn a validated topology into the plan that builds it (pure: no kernel access)."""
    cni = topology.network.cni
    build = DATAPATHS.get(cni)
    if build is None:
        implemented = ", ".join(DATAPATHS)
        if cni in KNOWN_CNIS:
            raise TopologyError(source, "network.cni", f"cni {cni!r} is not implemented yet; implemented: {implemented}")
        raise TopologyError(source, "network.cni", f"unknown cni {cni!r}; implemented: {implemented}")
    builder = Builder(topology, source)
    builder.underlay()
    build(topology, builder)
    requires = calico.requires(topology) if cni == "calico" else REQUIRES.get(cni, ())
    plan = dataclasses.replace(builder.plan(), requires=requires)
    check_bridge_ports(topology, plan, source)
    return plan


def check_bridge_ports(topology: Topology, plan: Plan, source: str = "<topology>") -> None:
    """Refuse a plan that enslaves more ports to one bridge than the kernel allows
    (:data:`netlab.model.limits.BRIDGE_PORTS`): an underlay subnet's bridge (its nodes, the
    gateway, vpc-native's secondary ENIs), docker0 or cni0. The model refuses too many pods
    per node first; this also counts what only the datapath decides (gateway, ENIs)."""
    ports = Counter((op.ns, op.master) for op in plan.operations if type(op) is SetMaster)
    for (ns, bridge), count in ports.items():
        if count <= BRIDGE_PORTS:
            continue
        if ns == names.namespace(topology.name, names.UNDERLAY):
            index = next(i for i, s in enumerate(topology.network.subnets) if s.name == bridge)
            enslaved = [op.name for op in plan.operations if type(op) is SetMaster and (op.ns, op.master) == (ns, bridge)]
            nodes = sum(1 for port in enslaved if port.endswith("-eth0"))
            gateway = " and the gateway" if f"gw-{bridge}" in enslaved else ""
            enis = len(enslaved) - nodes - (1 if gateway else 0)
            raise TopologyError(
                source,
                f"network.subnets[{index}]",
                f"subnet {bridge}'s underlay bridge would have {count} ports ({nodes} nodes"
                + (f", {enis} secondary ENIs" if enis else "")
                + f"{gateway}), but {BRIDGE_WHY}; put some nodes on another subnet (network.subnets, nodes[].subnet)",
            )
        index, node = next((i, n) for i, n in enumerate(topology.nodes) if names.namespace(topology.name, n.name) == ns)
        raise TopologyError(
            source,
            f"nodes[{index}].pods",
            f"{node.name}'s bridge {bridge} would have {count} ports, but {BRIDGE_WHY}; spread the pods over more nodes",
        )
