"""ipamd's warm pool, prefix delegation, max pods and veth names, against the numbers upstream publishes.

The pool tables are amazon-vpc-cni-k8s docs/eni-and-ip-target.md and docs/prefix-and-ip-target.md;
the max pods values amazon-eks-ami's files/max-pods-calculator.sh; the veth name
pkg/networkutils/names_test.go.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from netlab import names
from netlab.datapaths import make_plan, vpc
from netlab.errors import TopologyError
from netlab.model import INSTANCE_TYPES, instances, parse_topology
from netlab.model.limits import max_pods


def lab(kind: str, pods: int, cidr: str = "10.0.0.0/22", **settings: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "network": {"cni": "vpc-native", "subnets": [{"name": "a", "cidr": cidr}], "vpc": settings},
        "nodes": [{"name": "node1", "subnet": "a", "instanceType": kind, "pods": [{"name": f"p{i}"} for i in range(pods)]}],
    }


def pool(kind: str, pods: int, **settings: Any) -> tuple[list[int], int]:
    """(addresses per ENI, free addresses) after ``pods`` pods."""
    alloc = vpc.allocate(parse_topology(lab(kind, pods, **settings)))["node1"]
    assert len(alloc.running) == pods and not alloc.pending
    return [len(e.addresses) for e in alloc.enis], alloc.available


# docs/eni-and-ip-target.md: instance type, targets, pods -> attached secondary IPs per ENI
@pytest.mark.parametrize(
    ("kind", "settings", "pods", "per_eni"),
    [
        ("t3.small", {}, 0, [3]),
        ("t3.small", {}, 5, [3, 3, 3]),
        ("t3.small", {}, 9, [3, 3, 3]),
        ("t3.small", {"warmIPTarget": 1, "minimumIPTarget": 1}, 0, [1]),
        ("t3.small", {"warmIPTarget": 1, "minimumIPTarget": 1}, 5, [3, 3]),
        ("t3.small", {"warmIPTarget": 1, "minimumIPTarget": 1}, 9, [3, 3, 3]),
        ("t3.small", {"warmIPTarget": 2, "minimumIPTarget": 5}, 0, [3, 2]),
        ("t3.small", {"warmIPTarget": 2, "minimumIPTarget": 5}, 5, [3, 3, 1]),
        ("t3.small", {"warmIPTarget": 2, "minimumIPTarget": 5}, 9, [3, 3, 3]),
        ("p3dn.24xlarge", {}, 0, [49]),
        ("p3dn.24xlarge", {}, 3, [49, 49]),
        ("p3dn.24xlarge", {}, 95, [49, 49, 49]),
        ("p3dn.24xlarge", {"warmIPTarget": 5, "minimumIPTarget": 10}, 0, [10]),
        ("p3dn.24xlarge", {"warmIPTarget": 5, "minimumIPTarget": 10}, 7, [12]),
        ("p3dn.24xlarge", {"warmIPTarget": 5, "minimumIPTarget": 10}, 15, [20]),
        ("p3dn.24xlarge", {"warmIPTarget": 5, "minimumIPTarget": 10}, 45, [49, 1]),
    ],
)
def test_warm_pool_matches_ipamds_published_examples(kind: str, settings: dict[str, int], pods: int, per_eni: list[int]) -> None:
    assert pool(kind, pods, **settings)[0] == per_eni


# docs/prefix-and-ip-target.md: t3.small (3 ENIs x 3 prefix slots), pods -> /28 prefixes per ENI
@pytest.mark.parametrize(
    ("settings", "pods", "prefixes", "pods_per_prefix"),
    [
        ({}, 0, [1], [0]),
        ({}, 5, [2], [5, 0]),
        ({}, 16, [2], [16, 0]),
        ({}, 17, [3], [16, 1, 0]),
        ({}, 58, [3, 2], [16, 16, 16, 10, 0]),
        ({"warmIPTarget": 1, "minimumIPTarget": 1}, 0, [1], [0]),
        ({"warmIPTarget": 1, "minimumIPTarget": 1}, 5, [1], [5]),
        ({"warmIPTarget": 1, "minimumIPTarget": 1}, 17, [2], [16, 1]),
        ({"warmIPTarget": 1, "minimumIPTarget": 1}, 58, [3, 1], [16, 16, 16, 10]),
        ({"warmIPTarget": 7, "minimumIPTarget": 20}, 5, [2], [5, 0]),  # a minimum of 20 asks for 2 prefixes
        ({"warmIPTarget": 7, "minimumIPTarget": 20}, 17, [2], [16, 1]),
        ({"warmIPTarget": 7, "minimumIPTarget": 20}, 58, [3, 2], [16, 16, 16, 10, 0]),
    ],
)
def test_prefix_delegation_matches_the_published_examples(
    settings: dict[str, int], pods: int, prefixes: list[int], pods_per_prefix: list[int]
) -> None:
    alloc = vpc.allocate(parse_topology(lab("t3.small", pods, enablePrefixDelegation=True, **settings)))["node1"]
    assert alloc.prefix_mode and len(alloc.running) == pods
    assert [len(e.cidrs) for e in alloc.enis] == prefixes
    cidrs = [c for e in alloc.enis for c in e.cidrs]
    assert all(c.prefixlen == 28 and int(c.network_address) % 16 == 0 for c in cidrs)
    assert [sum(1 for s in alloc.running if s.ip in c) for c in cidrs] == pods_per_prefix


def test_prefix_mode_pods_take_addresses_of_their_enis_prefixes() -> None:
    topology = parse_topology(lab("t3.medium", 3, cidr="192.168.1.0/24", enablePrefixDelegation=True))
    alloc = vpc.allocate(topology)["node1"]
    # the first aligned /28 after node1's .11, and a second once 13 free < WARM_PREFIX_TARGET x 16
    assert alloc.enis[0].cidrs == [ipaddress.IPv4Network("192.168.1.16/28"), ipaddress.IPv4Network("192.168.1.32/28")]
    assert [str(s.ip) for s in alloc.running] == ["192.168.1.16", "192.168.1.17", "192.168.1.18"]
    assert alloc.max_pods == 110 and "capped at 110" in alloc.formula
    plan = make_plan(topology)
    assert "ip -n t-p0 addr add 192.168.1.16/32 dev eth0" in plan.render()
    assert any("ENABLE_PREFIX_DELEGATION=true" in n for n in plan.notes)


def test_prefix_delegation_falls_back_to_secondary_ips_on_xen() -> None:
    alloc = vpc.allocate(parse_topology(lab("m4.large", 1, enablePrefixDelegation=True)))["node1"]
    assert not alloc.prefix_mode and alloc.max_pods == 20
    assert all(c.prefixlen == 32 for e in alloc.enis for c in e.cidrs)


def test_warm_eni_is_attached_before_the_first_pod_needs_it() -> None:
    assert pool("t3.medium", 0) == ([5], 5)  # at start: eth0's 5 secondary IPs, all free
    assert pool("t3.medium", 1) == ([5, 5], 9)  # 4 free < a whole ENI's 5: eth1 attached ahead
    assert pool("t3.medium", 1, warmENITarget=0) == ([5], 4)
    assert pool("t3.medium", 6, warmENITarget=2) == ([5, 5, 5], 9)  # 3 ENIs is all a t3.medium has


def test_the_pool_stops_at_max_pods_or_the_subnets_end() -> None:
    # a /27 has .12-.30 after node1: 19 addresses for ENI primaries and secondaries
    alloc = vpc.allocate(parse_topology(lab("t3.large", 30, cidr="10.0.0.0/27")))["node1"]
    assert sum(len(e.addresses) for e in alloc.enis) + len(alloc.enis) - 1 <= 19
    assert alloc.pending and "no free IP" in alloc.pending[0][1]


# amazon-eks-ami files/max-pods-calculator.sh (--cni-prefix-delegation-enabled; and without it,
# the published misc/eni-max-pods.txt)
@pytest.mark.parametrize(
    ("kind", "prefix", "expected"),
    [
        ("t3.medium", False, 17),
        ("m5.large", False, 29),
        ("p3dn.24xlarge", False, 737),
        ("t3.medium", True, 110),  # 3 x 5 x 16 + 2 = 242, 2 vCPUs
        ("m5.large", True, 110),  # 434 uncapped (--show-max-allowed)
        ("m5.4xlarge", True, 110),  # 16 vCPUs
        ("m5.8xlarge", True, 250),  # 3714 uncapped, 32 vCPUs
        ("t3.nano", True, 34),  # 2 x 1 x 16 + 2, below the cap
        ("m4.large", True, 20),  # Xen: no prefixes
    ],
)
def test_max_pods_as_the_calculator_gives_it(kind: str, prefix: bool, expected: int) -> None:
    assert max_pods(kind, prefix)[0] == expected


def test_the_published_instance_table_is_loaded_whole_and_validated() -> None:
    assert len(INSTANCE_TYPES) > 1000
    assert INSTANCE_TYPES["m5.large"] == instances.InstanceType("m5.large", 3, 10, "nitro", False, 29)
    assert all(row.max_pods == row.enis * (row.ipv4_per_eni - 1) + 2 for row in INSTANCE_TYPES.values())
    header = "instance_type\tenis\tipv4_per_eni\thypervisor\tbare_metal\tmax_pods\n"
    with pytest.raises(ValueError, match="line 2: max pods 30 is not"):
        instances._parse(header + "m5.large\t3\t10\tnitro\tfalse\t30\n")
    with pytest.raises(ValueError, match="line 1: expected the header"):
        instances._parse("kind\tenis\n")
    with pytest.raises(ValueError, match="line 2: expected 6 tab-separated fields"):
        instances._parse(header + "m5.large\t3\n")
    assert instances.vcpus("m5.8xlarge") == 32 and instances.vcpus("m5.large") == 2 and instances.vcpus("m5.metal") == 96


def test_host_veth_names_are_the_cnis() -> None:
    # pkg/networkutils/names_test.go: kube-system/coredns-57ff979f67-qqbdh -> enib5faff8a083
    assert names.eni_veth("kube-system", "coredns-57ff979f67-qqbdh") == "enib5faff8a083"
    plan = make_plan(parse_topology(lab("t3.medium", 1)))
    assert f"dev {names.eni_veth('default', 'p0')} scope link" in plan.render()


def test_mtu_9001_on_enis_pods_and_subnets_1500_to_the_internet() -> None:
    data = lab("t3.micro", 2, cidr="192.168.1.0/24")
    data["network"]["internet"] = "203.0.113.0/24"
    out = make_plan(parse_topology(data)).render()
    assert "ip -n t-underlay link add a mtu 9001 type bridge" in out
    assert "ip -n t-node1 link add eth0 mtu 9001 type veth peer name node1-eth0 mtu 9001" in out
    assert "ip -n t-gateway link add a mtu 9001 type veth" in out  # the gateway's subnet side
    assert "ip -n t-internet link add eth0 mtu 1500 type veth peer name internet mtu 1500 netns t-gateway" in out
    lines = out.splitlines()
    assert any(line.startswith("ip -n t-node1 link add eth1 ") and " mtu 9001 " in line for line in lines)  # the second ENI
    veth = f"ip -n t-node1 link add {names.eni_veth('default', 'p0')} "
    assert any(line.startswith(veth) and line.endswith("mtu 9001 netns t-p0") for line in lines)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"enablePrefixDelegation": True, "warmPrefixTarget": 0}, "network.vpc"),
        ({"warmENITarget": -1}, "network.vpc.warmENITarget"),
        ({"eniMTU": 9002}, "network.vpc.eniMTU"),
        ({"warmIPTarget": "many"}, "network.vpc.warmIPTarget"),
    ],
)
def test_bad_pool_settings_are_refused_naming_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(TopologyError) as err:
        parse_topology(lab("t3.small", 0, **settings), "x.yaml")
    assert err.value.field.startswith(field)


def test_status_eni_table_shows_addresses_assignments_and_free() -> None:
    import io

    from rich.console import Console

    from netlab.cli.render.status import eni_table
    from netlab.observe.status import EniView

    view = EniView("node1", "eth1", "192.168.1.18", "02:00:00:00:00:01", ["192.168.1.19/32", "192.168.1.20/32"],
                   {"192.168.1.19": "web-6"}, ["192.168.1.20"])
    console = Console(file=io.StringIO(), width=200)
    console.print(eni_table([view]))
    text = console.file.getvalue()
    assert "ENIs (ipamd's warm pool)" in text
    row = next(line for line in text.splitlines() if "eth1" in line)
    assert "192.168.1.18" in row and "192.168.1.19 192.168.1.20" in row and "192.168.1.19 web-6" in row and row.rstrip(" │").endswith("1")
