"""Limits a validated topology would hit at build time are refused before anything is built.

The bridge port limit was measured on this kernel (6.18): the 1024th port enslaved to one
bridge fails with EXFULL, "Exchange full" (BR_MAX_PORTS = 1024 in net/bridge/br_private.h,
port number 0 reserved by find_portno in net/bridge/br_if.c): 1023 ports fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netlab.datapaths import make_plan, vpc
from netlab.errors import TopologyError
from netlab.model import INSTANCE_TYPES, load_topology, parse_topology
from netlab.model.limits import BR_MAX_PORTS, BRIDGE_PORTS, pod_limit


def lab(cni: str, pods: list[int], **network: Any) -> dict[str, Any]:
    """A lab with one node per entry of ``pods``, holding that many pods each."""
    return {
        "name": "l",
        "network": {"cni": cni, **network},
        "nodes": [{"name": f"n{i}", "pods": [{"name": f"p{i}-{j}"} for j in range(count)]} for i, count in enumerate(pods)],
    }


def refused(data: dict[str, Any], field: str, *words: str) -> TopologyError:
    with pytest.raises(TopologyError) as caught:
        make_plan(parse_topology(data, "f.yaml"), "f.yaml")
    error = caught.value
    assert error.field == field, str(error)
    for word in words:
        assert word in str(error), f"{word!r} not in {error}"
    assert error.exit_code == 2
    return error


def test_the_bridge_port_limit_is_the_kernels() -> None:
    assert (BR_MAX_PORTS, BRIDGE_PORTS) == (1024, 1023)


def test_docker0_takes_1023_containers_per_host_not_1024() -> None:
    plan = make_plan(parse_topology(lab("docker0", [1023, 1])))
    assert sum(1 for h in plan.hosts if h.kind == "pod") == 1024
    refused(
        lab("docker0", [1, 1024]), "nodes[1].pods",
        "n1 has 1024 pods", "docker0 takes at most 1023 containers", "BR_MAX_PORTS = 1024", "net/bridge/br_private.h",
        "Exchange full", "spread the containers over more hosts",
    )


@pytest.mark.parametrize(("cni", "fits", "block"), [("vxlan", 253, ".1 is cni0's"), ("host-gw", 253, ".1 is cni0's")])
def test_a_nodes_pod_block_bounds_its_pods(cni: str, fits: int, block: str) -> None:
    topology = parse_topology(lab(cni, [1, fits]))
    assert sum(1 for _n, _p in topology.pods()) == fits + 1
    refused(lab(cni, [1, fits + 1]), "nodes[1].pods", f"n1 has {fits + 1} pods", "its pod block 10.244.2.0/24", f"holds {fits} pods", block, "add nodes")


def test_host_network_pods_take_no_address_of_the_block() -> None:
    data = lab("host-gw", [253])
    data["nodes"][0]["pods"].append({"name": "agent", "hostNetwork": True})
    parse_topology(data)


def test_vpc_native_max_pods_is_the_datapaths_and_pods_beyond_it_are_pending() -> None:
    for kind, row in INSTANCE_TYPES.items():
        data = lab("vpc-native", [0])
        data["nodes"][0]["instanceType"] = kind
        topology = parse_topology(data)
        limit = topology.pod_limit(topology.nodes[0])
        alloc = vpc.allocate(topology)["n0"]
        assert limit.count == alloc.max_pods == row.max_pods == row.enis * (row.ipv4_per_eni - 1) + 2, kind
        assert alloc.formula in limit.why and limit.host_network
    maxpods = load_topology(Path(__file__).resolve().parents[3] / "topologies" / "vpc-maxpods.yaml")  # 18 on a t3.medium
    assert maxpods.pod_limit(maxpods.nodes[0]).count == 17  # valid: the 18th is Pending, as on EKS


def test_pod_limit_names_its_source_for_every_pod_network() -> None:
    import ipaddress

    block = ipaddress.IPv4Network("10.244.1.0/24")
    assert "BR_MAX_PORTS" in pod_limit("docker0", None).why
    assert "10.244.1.0/24" in pod_limit("vxlan", block).why
    assert "t3.micro allows max pods 2 ENIs × (2 − 1) + 2 = 4" in pod_limit("vpc-native", None, "t3.micro").why


def test_an_underlay_subnet_bridge_takes_1023_ports_nodes_and_gateway_included() -> None:
    def nodes(count: int, **network: Any) -> dict[str, Any]:
        data = lab("docker0", [0] * count, subnets=[{"name": "lan", "cidr": "10.0.0.0/20"}], **network)
        return data

    make_plan(parse_topology(nodes(1023)))
    refused(nodes(1024), "network.subnets[0]", "subnet lan's underlay bridge would have 1024 ports (1024 nodes)", "BR_MAX_PORTS", "another subnet")
    make_plan(parse_topology(nodes(1022, internet="203.0.113.0/24")))  # the gateway's port is the 1023rd
    refused(nodes(1023, internet="203.0.113.0/24"), "network.subnets[0]", "1024 ports (1023 nodes and the gateway)")


def test_vpc_natives_secondary_enis_are_underlay_bridge_ports_too() -> None:
    def nodes(count: int) -> dict[str, Any]:
        data = lab("vpc-native", [43] + [0] * (count - 1), subnets=[{"name": "lan", "cidr": "10.0.0.0/16"}])
        data["nodes"][0]["instanceType"] = "t3.2xlarge"  # 43 pods: all 4 ENIs (14 pod addresses each)
        return data

    assert len(vpc.allocate(parse_topology(nodes(2)))["n0"].enis) == 4
    make_plan(parse_topology(nodes(1019)))  # 1019 node ports, 3 secondary ENIs, the gateway: 1023
    refused(nodes(1020), "network.subnets[0]", "would have 1024 ports (1020 nodes, 3 secondary ENIs and the gateway)")
