"""``netlab node add`` refuses, before anything is built, what it cannot add to a running lab."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from netlab.datapaths import make_plan
from netlab.errors import UsageError
from netlab.model import parse_topology
from netlab.services import nodes
from netlab.state import LabState

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"


def state_of(data: dict[str, Any]) -> LabState:
    topology = parse_topology(data)
    plan = make_plan(topology)
    return LabState(
        lab=topology.name, cni=topology.network.cni, status="up",
        hosts=[asdict(h) for h in plan.hosts], topology=topology.model_dump(mode="json", by_alias=True),
    )


def calico(**network: Any) -> dict[str, Any]:
    data = yaml.safe_load((TOPOLOGIES / "calico-bgp.yaml").read_text())
    data["name"] = "pc2-u"
    data["network"].update(network)
    return data


def refused(state: LabState, name: str, *words: str, subnet: str | None = None) -> None:
    with pytest.raises(UsageError) as err:
        nodes.add(state, name, subnet)
    assert err.value.exit_code == 2
    for word in words:
        assert word in str(err.value), str(err.value)


def test_only_calico_labs() -> None:
    data = yaml.safe_load((TOPOLOGIES / "host-gw.yaml").read_text())
    refused(state_of(data), "node3", "cni host-gw", "cni calico")


def test_an_existing_name_or_unknown_subnet_builds_nothing() -> None:
    refused(state_of(calico()), "node2", "node2", "nothing was built")
    refused(state_of(calico()), "node3", "nodes[2].subnet", "nothing was built", subnet="nowhere")


def test_a_node_holding_a_second_block_would_see_it_move() -> None:
    data = calico()
    data["network"]["calico"]["blockSize"] = 30  # 4 addresses a block: node1's 2 pods + ... fill it
    data["nodes"][0]["pods"] = [{"name": f"p{i}"} for i in range(6)]
    refused(state_of(data), "node3", "node1's blocks would move", "nothing was built")
