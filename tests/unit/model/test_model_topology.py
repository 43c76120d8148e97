"""Topology validation: every invalid file is refused with a message naming file and field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from netlab import datapaths
from netlab.datapaths import make_plan
from netlab.errors import TopologyError
from netlab.model import DOCKER_BRIDGE_CIDR, KNOWN_CNIS, Topology, load_topology, parse_topology

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"
VALID: dict[str, Any] = yaml.safe_load((TOPOLOGIES / "docker0.yaml").read_text())


def doc(**changes: Any) -> dict[str, Any]:
    """The docker0 topology with top-level keys replaced."""
    data = copy.deepcopy(VALID)
    data.update(changes)
    return data


def refused(tmp_path: Path, data: Any, field: str, *words: str) -> TopologyError:
    """Write ``data`` to a file, load it, and check the error names the file, the field and ``words``."""
    path = tmp_path / "bad.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    error = caught.value
    assert error.source == str(path)
    assert error.field == field, str(error)
    text = str(error)
    assert text.startswith(f"{path}: {field}: " if field else f"{path}: "), text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    assert error.exit_code == 2
    return error


# ----------------------------------------------------------------------------- valid files
def test_shipped_docker_topologies_load() -> None:
    one = load_topology(TOPOLOGIES / "docker0.yaml")
    assert one.name == "docker0" and one.network.cni == "docker0"
    assert [p.name for _n, p in one.pods()] == ["web", "client"]
    web = one.node("host1").pods[0]
    assert [str(p) for p in web.ports] == ["8080:80/tcp"]
    assert str(one.network.internet) == "203.0.113.0/24" and str(one.network.internet_host) == "203.0.113.1"
    assert str(one.node_ip(one.node("host1"))) == "192.168.1.11"

    two = load_topology(TOPOLOGIES / "docker-2hosts.yaml")
    assert [n.name for n in two.nodes] == ["host1", "host2"]
    assert [str(two.node_ip(n)) for n in two.nodes] == ["192.168.1.11", "192.168.1.12"]


def test_defaults_fill_in() -> None:
    topo = parse_topology({"name": "mini", "nodes": [{"name": "host1"}]})
    assert topo.network.cni == "docker0" and topo.network.mtu == 1500
    assert [(s.name, str(s.cidr)) for s in topo.network.subnets] == [("lan", "192.168.1.0/24")]
    assert topo.network.internet is None and not topo.needs_gateway


def test_model_is_immutable() -> None:
    topo = parse_topology(VALID)
    with pytest.raises(ValidationError, match="frozen"):
        topo.name = "other"  # type: ignore[misc]


# ----------------------------------------------------------------------------- unknown keys
@pytest.mark.parametrize(
    ("change", "field", "valid"),
    [
        (lambda d: d.update(nmae="x"), "nmae", "name, network, nodes"),
        (lambda d: d["network"].update(cnii="docker0"), "network.cnii", "cni"),
        (lambda d: d["nodes"][0].update(pod=[]), "nodes[0].pod", "pods"),
        (lambda d: d["nodes"][0]["pods"][1].update(port=["80:80"]), "nodes[0].pods[1].port", "ports"),
        (lambda d: d["network"]["subnets"][0].update(mask=24), "network.subnets[0].mask", "cidr"),
    ],
)
def test_unknown_keys_name_the_field_and_the_valid_keys(tmp_path: Path, change: Any, field: str, valid: str) -> None:
    data = doc()
    change(data)
    refused(tmp_path, data, field, "unknown key", "valid keys", valid)


def test_missing_required_key(tmp_path: Path) -> None:
    data = doc()
    del data["nodes"]
    refused(tmp_path, data, "nodes", "required")


# ----------------------------------------------------------------------------- names
def test_duplicate_pod_name_across_nodes(tmp_path: Path) -> None:
    data = doc(nodes=[{"name": "host1", "pods": [{"name": "web"}]}, {"name": "host2", "pods": [{"name": "web"}]}])
    error = refused(tmp_path, data, "nodes[1].pods[0].name", "duplicate name 'web'", "nodes[0].pods[0].name")
    assert str(error).endswith(")")


def test_duplicate_node_name(tmp_path: Path) -> None:
    refused(tmp_path, doc(nodes=[{"name": "host1"}, {"name": "host1"}]), "nodes[1].name", "duplicate name 'host1'")


def test_node_and_pod_share_one_name_space(tmp_path: Path) -> None:
    data = doc(nodes=[{"name": "host1", "pods": [{"name": "host1"}]}])
    refused(tmp_path, data, "nodes[0].pods[0].name", "duplicate name 'host1'", "share one space")


@pytest.mark.parametrize(
    ("nodes", "field"),
    [
        ([{"name": "internet"}], "nodes[0].name"),
        ([{"name": "host1", "pods": [{"name": "internet"}]}], "nodes[0].pods[0].name"),
        ([{"name": "host1", "pods": [{"name": "gateway"}]}], "nodes[0].pods[0].name"),
    ],
)
def test_reserved_names(tmp_path: Path, nodes: list[dict[str, Any]], field: str) -> None:
    refused(tmp_path, doc(nodes=nodes), field, "is reserved", "internet")


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (doc(name="Docker0"), "name", ("invalid lab name 'Docker0'", "lowercase")),
        (doc(name="a-very-long-lab-name"), "name", ("at most 16",)),
        (doc(name="lab-"), "name", ("not ending with '-'",)),
        (doc(nodes=[{"name": "host_1"}]), "nodes[0].name", ("invalid node name",)),
        (doc(nodes=[{"name": "averylonghost"}]), "nodes[0].name", ("at most 10", "interface names")),
    ],
)
def test_bad_names(tmp_path: Path, data: dict[str, Any], field: str, words: tuple[str, ...]) -> None:
    refused(tmp_path, data, field, *words)


# ----------------------------------------------------------------------------- CIDRs
@pytest.mark.parametrize("cidr", ["192.168.1.0/33", "not-a-cidr", "192.168.1.1/24", "300.1.1.0/24"])
def test_malformed_cidrs(tmp_path: Path, cidr: str) -> None:
    data = doc(network={"subnets": [{"name": "lan", "cidr": cidr}]})
    refused(tmp_path, data, "network.subnets[0].cidr", "not a valid IPv4 CIDR", "host bits zero")


def test_overlapping_subnets(tmp_path: Path) -> None:
    data = doc(network={"subnets": [{"name": "a", "cidr": "10.0.0.0/16"}, {"name": "b", "cidr": "10.0.5.0/24"}]})
    refused(tmp_path, data, "network.subnets[1].cidr", "10.0.5.0/24 overlaps network.subnets[0] 10.0.0.0/16", "do not overlap")


def test_internet_overlapping_a_subnet(tmp_path: Path) -> None:
    data = doc(network={"subnets": [{"name": "lan", "cidr": "192.168.1.0/24"}], "internet": "192.168.0.0/16"})
    refused(tmp_path, data, "network.internet", "overlaps network.subnets[0] 192.168.1.0/24")


def test_subnet_overlapping_dockers_bridge_network(tmp_path: Path) -> None:
    data = doc(network={"cni": "docker0", "subnets": [{"name": "lan", "cidr": "172.17.5.0/24"}]})
    refused(tmp_path, data, "network.subnets[0].cidr", "172.17.5.0/24 overlaps docker0's bridge network 172.17.0.0/16")


def test_internet_overlapping_dockers_bridge_network(tmp_path: Path) -> None:
    data = doc(network={"cni": "docker0", "internet": "172.16.0.0/12"})
    refused(tmp_path, data, "network.internet", "172.16.0.0/12 overlaps docker0's bridge network 172.17.0.0/16")


def test_pod_cidr_overlapping_the_underlay(tmp_path: Path) -> None:
    data = doc(network={"cni": "vxlan", "subnets": [{"name": "lan", "cidr": "10.244.3.0/24"}]}, nodes=[{"name": "node1"}])
    refused(tmp_path, data, "network.podCIDR", "10.244.0.0/16 overlaps network.subnets[0] 10.244.3.0/24")


def test_tiny_internet(tmp_path: Path) -> None:
    refused(tmp_path, doc(network={"internet": "203.0.113.0/31"}), "network.internet", "too small", "/30")


def test_subnet_too_small_for_its_nodes(tmp_path: Path) -> None:
    # a /28 has 16 addresses; nodes take .11 upwards and .15 is broadcast: room for 4
    nodes = [{"name": f"host{i}"} for i in range(1, 6)]
    data = doc(network={"subnets": [{"name": "lan", "cidr": "10.1.1.0/28"}]}, nodes=nodes)
    refused(tmp_path, data, "network.subnets[0].cidr", "10.1.1.0/28 is too small for its 5 nodes", "room for 4", "larger prefix")
    data["nodes"] = nodes[:4]
    assert [str(t) for t in map(parse_topology(data).node_ip, parse_topology(data).nodes)][-1] == "10.1.1.14"


def test_node_on_an_unknown_subnet(tmp_path: Path) -> None:
    refused(tmp_path, doc(nodes=[{"name": "host1", "subnet": "dmz"}]), "nodes[0].subnet", "unknown subnet 'dmz'", "defined: lan")


# ----------------------------------------------------------------------------- cni
def test_unknown_cni_lists_the_valid_ones(tmp_path: Path) -> None:
    refused(tmp_path, doc(network={"cni": "weave"}), "network.cni", "unknown cni 'weave'", "valid:", *KNOWN_CNIS)


def test_known_but_unregistered_cni_is_not_implemented_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cni a later issue implements is refused with a clear message (tested by unregistering one)."""
    monkeypatch.setattr(datapaths, "DATAPATHS", {"docker0": datapaths.DATAPATHS["docker0"]})
    path = tmp_path / "later.yaml"
    path.write_text(yaml.safe_dump(doc(network={"cni": "vxlan"}, nodes=[{"name": "node1"}])))
    topology = load_topology(path)  # the model accepts every known cni ...
    with pytest.raises(TopologyError) as caught:
        make_plan(topology, str(path))  # ... and planning refuses the unregistered one
    assert str(caught.value) == f"{path}: network.cni: cni 'vxlan' is not implemented yet; implemented: docker0"
    assert caught.value.exit_code == 2


def test_every_known_cni_is_registered_today() -> None:
    assert set(datapaths.DATAPATHS) <= set(KNOWN_CNIS)
    assert "docker0" in datapaths.DATAPATHS


# ----------------------------------------------------------------------------- ports
@pytest.mark.parametrize("port", ["80", "8080:80/sctp", "a:b", "8080-80", ":80", "8080:80:1"])
def test_malformed_ports(tmp_path: Path, port: str) -> None:
    data = doc()
    data["nodes"][0]["pods"][0]["ports"] = [port]
    refused(tmp_path, data, "nodes[0].pods[0].ports", f"malformed port {port!r}", "expected 'HOST:CONTAINER'", "e.g. '8080:80'")


@pytest.mark.parametrize("port", ["70000:80", "0:80", "8080:65536/udp"])
def test_ports_out_of_range(tmp_path: Path, port: str) -> None:
    data = doc()
    data["nodes"][0]["pods"][0]["ports"] = ["9090:90", port]
    refused(tmp_path, data, "nodes[0].pods[0].ports", f"malformed port {port!r}", "outside 1-65535")


def test_ports_must_be_a_list(tmp_path: Path) -> None:
    data = doc()
    data["nodes"][0]["pods"][0]["ports"] = "8080:80"
    refused(tmp_path, data, "nodes[0].pods[0].ports", "must be a list")


def test_a_host_port_published_twice(tmp_path: Path) -> None:
    data = doc()
    data["nodes"][0]["pods"][1]["ports"] = ["8080:81"]
    refused(tmp_path, data, "nodes[0].pods[1].ports[0]", "8080/tcp is already published by 'web' on host1")


def test_same_port_number_for_tcp_and_udp_is_fine() -> None:
    data = doc()
    data["nodes"][0]["pods"][1]["ports"] = ["8080:80/udp"]
    assert str(parse_topology(data).nodes[0].pods[1].ports[0]) == "8080:80/udp"


def test_published_ports_only_with_docker0(tmp_path: Path) -> None:
    data = doc(network={"cni": "vxlan"}, nodes=[{"name": "node1", "pods": [{"name": "web", "ports": ["8080:80"]}]}])
    refused(tmp_path, data, "nodes[0].pods[0].ports", "only with cni docker0")


# ----------------------------------------------------------------------------- the file itself
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert str(caught.value).startswith(f"{path}: cannot read the file")


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    refused(tmp_path, "name: x\nnodes: [\n  {name: a\n", "line 4, column 1", "not valid YAML")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    refused(tmp_path, text, "", "expected a mapping")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (doc(nodes=[]), "nodes"),
        (doc(network={"subnets": []}), "network.subnets"),
        (doc(network={"mtu": 100}), "network.mtu"),
        (doc(nodes="host1"), "nodes"),
        (doc(nodes=[{"name": "host1", "pods": [{"name": "web", "labels": {"app": ["x"]}}]}]), "nodes[0].pods[0].labels.app"),
    ],
)
def test_wrong_shapes(tmp_path: Path, data: dict[str, Any], field: str) -> None:
    refused(tmp_path, data, field)


def test_dockers_bridge_network_is_what_the_checks_guard() -> None:
    assert str(DOCKER_BRIDGE_CIDR) == "172.17.0.0/16"
    assert isinstance(parse_topology(VALID), Topology)
