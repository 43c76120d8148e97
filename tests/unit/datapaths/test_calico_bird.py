"""cni calico without root: IPAM blocks, Calico's names, the plan, and BIRD's configuration.

The BIRD configuration is compared with golden files under ``golden/`` (each names the
upstream templates it follows); ``NETLAB_UPDATE_GOLDEN=1`` rewrites them after a deliberate
change. Every rendered configuration is also parsed by BIRD itself (``bird -p``) where BIRD
is installed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from netlab import names
from netlab.datapaths import bird, make_plan
from netlab.errors import TopologyError
from netlab.model import load_topology, parse_topology
from netlab.model.ipam import addresses, claim_blocks
from netlab.plan import AddAddress, AddFdb, AddNeighbour, AddRoute, AddVeth, AddVxlan, SetTunnel
from netlab.services.bird import parse_protocols

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).with_name("golden")
GOLDEN_HEADER = "# golden: "


def topo(mode: str = "Never", subnets: int = 1, pods: int = 1, block: int = 26, vxlan: str = "Never"):
    nets = [{"name": "a", "cidr": "192.168.1.0/24"}, {"name": "b", "cidr": "192.168.2.0/24"}][:subnets]
    nodes = [
        {"name": "node1", "subnet": "a", "pods": [{"name": f"a{i}"} for i in range(pods)]},
        {"name": "node2", "subnet": "a", "pods": [{"name": "b0"}]},
    ]
    if subnets == 2:
        nodes.append({"name": "node3", "subnet": "b", "pods": [{"name": "c0"}]})
    return parse_topology(
        {"name": "pcb-u", "network": {"cni": "calico", "calico": {"ipipMode": mode, "vxlanMode": vxlan, "blockSize": block}, "subnets": nets}, "nodes": nodes}
    )


# ----------------------------------------------------------------------------- names
def test_workload_veth_name_is_calicos() -> None:
    # libcalico-go VethNameForWorkload: "cali" + sha1("<namespace>.<pod>")[:11]
    expected = "cali" + hashlib.sha1(b"default.web-1").hexdigest()[:11]
    assert names.calico_workload_veth("default", "web-1") == expected
    assert len(expected) == 15  # IFNAMSIZ - 1
    plan = make_plan(load_topology(ROOT / "topologies/calico-bgp.yaml"))
    veths = {op.name for op in plan.operations if isinstance(op, AddVeth) and op.ns == "calico-bgp-node1"}
    assert expected in veths


# ----------------------------------------------------------------------------- IPAM
def test_blocks_are_claimed_in_order_and_a_full_block_gets_a_second() -> None:
    pool = ipaddress.IPv4Network("10.244.0.0/16")
    assert [list(map(str, b)) for b in claim_blocks(pool, 26, [1, 65, 0])] == [
        ["10.244.0.0/26"], ["10.244.0.64/26", "10.244.0.192/26"], ["10.244.0.128/26"],
    ]
    two = claim_blocks(pool, 26, [65])[0]
    assert str(addresses(two, 65)[-1]) == "10.244.0.64"
    with pytest.raises(ValueError, match="blocks of /26"):
        claim_blocks(ipaddress.IPv4Network("10.244.0.0/25"), 26, [1, 1, 1])


def test_tunl0_takes_the_first_address_of_the_block_with_ipip() -> None:
    plan = make_plan(topo("Always"))
    tunnel = [op for op in plan.operations if isinstance(op, AddAddress) and op.dev == "tunl0" and op.ns == "pcb-u-node1"]
    assert [str(op.address) for op in tunnel] == ["10.244.0.0/32"]
    assert any(isinstance(op, SetTunnel) and op.mtu == 1480 for op in plan.operations)
    assert {h.name: str(h.ip) for h in plan.hosts}["a0"] == "10.244.0.1"
    assert plan.requires == ("ipip", "ipset")


def test_bgp_only_has_no_tunnel_and_needs_no_ipip() -> None:
    plan = make_plan(topo("Never"))
    assert not [op for op in plan.operations if isinstance(op, SetTunnel)]
    assert {h.name: str(h.ip) for h in plan.hosts}["a0"] == "10.244.0.0"
    assert plan.requires == ("ipset",)
    # no static route to another node's block: BGP brings those
    assert not [op for op in plan.operations if isinstance(op, AddRoute) and op.dst is not None and op.dst.prefixlen == 26]


def test_a_second_block_when_the_first_fills() -> None:
    t = topo("Always", pods=64)  # tunl0 + 64 pods: 65 addresses
    blocks = t.calico_blocks()
    assert list(map(str, blocks["node1"])) == ["10.244.0.0/26", "10.244.0.128/26"]
    assert "route 10.244.0.128/26 blackhole;" in bird.render(t, t.nodes[0])
    assert {h.name: str(h.ip) for h in make_plan(t).hosts}["a63"] == "10.244.0.128"


def test_never_across_subnets_is_refused() -> None:
    with pytest.raises(TopologyError, match="ipipMode and vxlanMode Never"):
        topo("Never", subnets=2)


def test_block_size_larger_than_the_pool_is_refused() -> None:
    with pytest.raises(TopologyError, match="blockSize"):
        parse_topology({"name": "pcb-u", "network": {"cni": "calico", "podCIDR": "10.244.0.0/27", "calico": {"blockSize": 26}},
                        "nodes": [{"name": "node1"}]})


def test_unknown_ipip_mode_names_the_field() -> None:
    with pytest.raises(TopologyError, match=r"network\.calico\.ipipMode"):
        parse_topology({"name": "pcb-u", "network": {"cni": "calico", "calico": {"ipipMode": "Sometimes"}}, "nodes": [{"name": "node1"}]})


# ----------------------------------------------------------------------------- BIRD
def golden_topology(mode: str):
    if mode == "VXLANCrossSubnet":
        return topo("Never", subnets=2, vxlan="CrossSubnet")
    return topo(mode, subnets=1 if mode == "Never" else 2)


@pytest.mark.parametrize("mode", ["Never", "Always", "CrossSubnet", "VXLANCrossSubnet"])
def test_bird_config_matches_golden(mode: str) -> None:
    t = golden_topology(mode)
    for node in t.nodes:
        text = bird.render(t, node)
        path = GOLDEN / f"calico-bird-{mode.lower()}-{node.name}.conf"
        header = (
            f"{GOLDEN_HEADER}netlab.datapaths.bird.render() of mode {mode}, node {node.name}; upstream: projectcalico/calico v3.31.7\n"
            f"{GOLDEN_HEADER}confd/etc/calico/confd/templates/bird.cfg.template, bird_aggr.cfg.template, bird_ipam.cfg.template\n"
        )
        if os.environ.get("NETLAB_UPDATE_GOLDEN"):
            path.write_text(header + text)
        stored = "".join(line for line in path.read_text().splitlines(keepends=True) if not line.startswith(GOLDEN_HEADER))
        assert text == stored, f"{path.name} differs: NETLAB_UPDATE_GOLDEN=1 rewrites it after a deliberate change"


@pytest.mark.skipif(shutil.which("bird", path="/usr/sbin:/usr/bin:/sbin:/bin") is None, reason="bird2 is not installed")
@pytest.mark.parametrize("mode", ["Never", "Always", "CrossSubnet", "VXLANCrossSubnet"])
def test_bird_parses_every_rendered_config(mode: str, tmp_path: Path) -> None:
    t = golden_topology(mode)
    exe = shutil.which("bird", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert exe is not None
    for node in t.nodes:
        conf = tmp_path / f"{node.name}.conf"
        conf.write_text(bird.render(t, node))
        done = subprocess.run([exe, "-p", "-c", str(conf)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_mesh_is_one_session_per_other_node_and_unidirectional() -> None:
    t = topo("CrossSubnet", subnets=2)
    text = bird.render(t, t.nodes[0])  # 192.168.1.11: the other two compare greater as strings
    assert text.count("protocol bgp Mesh_") == 2
    assert "protocol bgp Mesh_192_168_1_12 from bgp_template {\n  neighbor 192.168.1.12 as 64512;\n  source address 192.168.1.11;\n  passive on;" in text
    assert "# Skipping ourselves (192.168.1.11)" in text
    node3 = bird.render(t, t.nodes[2])  # 192.168.2.11 is the greatest: it connects, never passive
    assert "passive on" not in node3


def test_expected_routes_follow_the_mode() -> None:
    t = topo("CrossSubnet", subnets=2)
    assert bird.expected_routes(t, t.nodes[0]) == [
        "blackhole 10.244.0.0/26 proto bird",
        "10.244.0.64/26 via 192.168.1.12 dev eth0 proto bird",
        "10.244.0.128/26 via 192.168.2.11 dev tunl0 proto bird onlink",
    ]
    t = topo("Never")
    assert bird.expected_routes(t, t.nodes[1]) == ["blackhole 10.244.0.64/26 proto bird", "10.244.0.0/26 via 192.168.1.11 dev eth0 proto bird"]


def test_plan_prints_bird_config_and_expected_routes() -> None:
    text = bird.plan_text(topo("Never"))
    assert "ip netns exec pcb-u-node1 bird -f -c <state dir>/pcb-u.bird/node1.conf -s <state dir>/pcb-u.bird/node1.ctl" in text
    assert "#   10.244.0.64/26 via 192.168.1.12 dev eth0 proto bird" in text
    assert text.count("router id ") == 2


def test_parse_show_protocols() -> None:
    text = (
        "BIRD 2.0.12 ready.\n"
        "Name       Proto      Table      State  Since         Info\n"
        "static1    Static     master4    up     06:51:47.761  \n"
        "Mesh_192_168_1_12 BGP        ---        up     06:51:48.617  Established   \n"
        "Mesh_192_168_2_11 BGP        ---        start  06:51:47.761  Active        Socket: Connection refused\n"
    )
    peers = parse_protocols("node1", text)
    assert [(p.address, p.kind, p.state, p.info) for p in peers] == [
        ("192.168.1.12", "node-to-node mesh", "up", "Established"),
        ("192.168.2.11", "node-to-node mesh", "start", "Active Socket: Connection refused"),
    ]


def test_calico_bgp_topology_file_is_bgp_only() -> None:
    data = yaml.safe_load((ROOT / "topologies/calico-bgp.yaml").read_text())
    assert data["network"]["calico"]["ipipMode"] == "Never"


# ----------------------------------------------------------------------------- VXLAN
def test_vxlan_is_felixs_device_and_routes() -> None:
    t = topo("Never", subnets=2, vxlan="CrossSubnet")
    plan = make_plan(t)
    assert plan.requires == ("vxlan", "ipset")
    node1 = [op for op in plan.operations if getattr(op, "ns", "") == "pcb-u-node1"]
    vx = [op for op in node1 if isinstance(op, AddVxlan)]
    assert [(op.name, op.vni, op.port, op.mtu, op.learning, str(op.local)) for op in vx] == [
        ("vxlan.calico", 4096, 4789, 1450, False, "192.168.1.11")
    ]
    routes = {str(op.dst): (str(op.gateway), op.dev, op.onlink) for op in node1 if isinstance(op, AddRoute) and op.dst and op.dst.prefixlen == 26}
    # node2 shares subnet a: plain; node3 is on b: via its VTEP address on vxlan.calico
    assert routes == {"10.244.0.64/26": ("192.168.1.12", "eth0", False), "10.244.0.128/26": ("10.244.0.128", "vxlan.calico", True)}
    neigh = [op for op in node1 if isinstance(op, AddNeighbour)]
    fdb = [op for op in node1 if isinstance(op, AddFdb)]
    assert [str(op.address) for op in neigh] == ["10.244.0.128"] and [str(op.dst) for op in fdb] == ["192.168.2.11"]
    assert neigh[0].lladdr == fdb[0].lladdr
    assert bird.expected_routes(t, t.nodes[0]) == ["blackhole 10.244.0.0/26 proto bird"]
    assert "reject;  # Don't program VXLAN routes into the kernel" in bird.render(t, t.nodes[0])


def test_ipip_and_vxlan_together_are_refused() -> None:
    with pytest.raises(TopologyError, match=r"network\.calico\.vxlanMode.*both"):
        topo("Always", vxlan="Always")


@pytest.mark.parametrize(("ipip", "vxlan", "device"), [("Always", "Never", "tunl0"), ("Never", "Always", "vxlan.calico"), ("Never", "Never", None)])
def test_felix_masquerades_the_nodes_own_traffic_into_the_tunnel(ipip: str, vxlan: str, device: str | None) -> None:
    from netlab.datapaths.calico import nat_rules

    rules = nat_rules(topo(ipip, vxlan=vxlan))
    rule = f"-A cali-POSTROUTING -o {device} -m addrtype ! --src-type LOCAL --limit-iface-out -m addrtype --src-type LOCAL"
    assert (rule in rules) == (device is not None)
    felix = "-m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully"
    assert felix in rules and rules.endswith("COMMIT\n")


def test_nat_outgoing_ipsets_hold_the_pool_and_exist_before_the_rule() -> None:
    """felix rules/nat.go: -A cali-nat-outgoing -m set --match-set cali40masq-ipam-pools src
    -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE; both sets hash:net."""
    from netlab.plan import AddIpset, LoadIptables

    ops = list(make_plan(topo("Always")).operations)
    ns = "pcb-u-node1"
    sets = [op for op in ops if isinstance(op, AddIpset) and op.ns == ns]
    assert [(op.name, op.entries) for op in sets] == [("cali40masq-ipam-pools", ("10.244.0.0/16",)), ("cali40all-ipam-pools", ("10.244.0.0/16",))]
    load = next(i for i, op in enumerate(ops) if isinstance(op, LoadIptables) and op.ns == ns)
    assert all(ops.index(op) < load for op in sets)
    assert sets[0].render() == [f"ip netns exec {ns} ipset create cali40masq-ipam-pools hash:net family inet",
                                f"ip netns exec {ns} ipset add cali40masq-ipam-pools 10.244.0.0/16"]
