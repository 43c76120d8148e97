"""The iptables rules each pod network writes on a node, against golden files naming their
upstream source (the releases in netlab/versions.py). ``NETLAB_UPDATE_GOLDEN=1`` rewrites them
after a deliberate change; read the diff against the upstream file before committing it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from netlab import versions
from netlab.datapaths import calico, k8s, vpc
from netlab.model import Topology
from netlab.model.load import load_topology

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).with_name("golden")


def topology(name: str, **calico_fields: str) -> Topology:
    if not calico_fields:
        return load_topology(ROOT / "topologies" / name)
    data: dict[str, Any] = yaml.safe_load((ROOT / "topologies" / name).read_text())
    data["network"]["calico"].update(calico_fields)
    return Topology.model_validate(data)


def flannel() -> str:
    topo = topology("flannel-vxlan.yaml")
    return k8s.flannel_rules(topo, topo.nodes[0])


def calico_ipip() -> str:
    return calico.nat_rules(topology("calico-bgp.yaml", ipipMode="Always"))


def vpc_native() -> str:
    topo = topology("vpc-native.yaml")
    return vpc.snat_rules(topo, topo.nodes[0])


CASES = {
    "flannel-vxlan-node1.rules": (
        flannel,
        f"flanneld {versions.component('Flannel').version} on node1 of topologies/flannel-vxlan.yaml (iptables-restore input).\n"
        f"Upstream: flannel-io/flannel {versions.component('Flannel').version} pkg/trafficmngr/iptables/iptables.go\n"
        "(masqRules, forwardRules), --random-fully where iptables has it.",
    ),
    "calico-ipip-nat.rules": (
        calico_ipip,
        f"Calico {versions.component('Calico').version} felix nat rules for an IPPool with natOutgoing and ipipMode Always\n"
        "(topologies/calico-bgp.yaml with ipipMode: Always). Upstream: projectcalico/calico felix/rules/nat.go\n"
        "(StaticNATPostroutingChains, cali-nat-outgoing), with its ipsets cali40masq-ipam-pools and\n"
        "cali40all-ipam-pools (netlab fills them over netlink, as felix's ipsets manager does).",
    ),
    "vpc-native-node1.rules": (
        vpc_native,
        f"aws-node (AWS VPC CNI {versions.component('AWS VPC CNI').version}) on node1 of topologies/vpc-native.yaml, externalSNAT false.\n"
        f"Upstream: aws/amazon-vpc-cni-k8s {versions.component('AWS VPC CNI').version} pkg/networkutils/network.go\n"
        "(buildIptablesSNATRules) and iptables_connmark.go.",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pod_network_rules_match_the_golden_file(name: str) -> None:
    render, header = CASES[name]
    text = "".join(f"# {line}\n" for line in header.splitlines()) + render()
    path = GOLDEN / name
    if os.environ.get("NETLAB_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs: NETLAB_UPDATE_GOLDEN=1 rewrites it after a deliberate change"
