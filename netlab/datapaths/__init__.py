"""Datapaths: one module per ``network.cni``, each turning a topology into a plan.

A datapath is registered by name; an unknown or not-yet-implemented one is refused with
a message listing what exists. Shared parts (underlay, gateway, internet) live in
:mod:`netlab.datapaths.underlay`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from netlab.datapaths import docker0, hostgw, ipip, vpc, vxlan
from netlab.datapaths.underlay import Builder
from netlab.errors import TopologyError
from netlab.model import KNOWN_CNIS, Topology
from netlab.plan import Plan

BuildFn = Callable[[Topology, Builder], None]

DATAPATHS: dict[str, BuildFn] = {
    "docker0": docker0.build,
    "vxlan": vxlan.build,
    "ipip": ipip.build,
    "host-gw": hostgw.build,
    "vpc-native": vpc.build,
}

# kernel features (netlab.doctor probe names) a datapath needs; `up` probes them before building
REQUIRES: dict[str, tuple[str, ...]] = {
    "vxlan": ("vxlan",),
    "ipip": ("ipip",),
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
    return dataclasses.replace(builder.plan(), requires=REQUIRES.get(cni, ()))
