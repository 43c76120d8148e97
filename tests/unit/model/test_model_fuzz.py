"""Fuzzing the loader: any input gives a Topology or a TopologyError, never a traceback.

Four kinds of input: arbitrary JSON-like structures, arbitrary text as YAML, valid
topologies with structural mutations (values replaced, keys dropped or invented, list
items duplicated, plausible-but-wrong CIDRs, ports, names), and the shipped YAML text
with random character edits. Whatever the loader accepts must also plan: make_plan gives
a Plan or a TopologyError.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlab.datapaths import make_plan
from netlab.errors import TopologyError
from netlab.model import Topology, parse_topology
from netlab.plan import Plan

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"
SOURCES = {name: (TOPOLOGIES / name).read_text() for name in ("docker0.yaml", "docker-2hosts.yaml", "flannel-vxlan.yaml")}
DOCS = {name: yaml.safe_load(text) for name, text in SOURCES.items()}
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

KEYS = ["name", "network", "nodes", "pods", "cni", "mtu", "subnets", "cidr", "internet", "subnet", "ports",
        "labels", "podCIDR", "mode", "hostNetwork", "instanceType", "externalSNAT", "services", "bogus"]
scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=20) | st.sampled_from(KEYS)
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
plausible = st.one_of(
    st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}\Z"),  # CIDR-ish, often invalid or overlapping
    st.sampled_from(["172.17.0.0/16", "172.17.1.0/24", "192.168.1.0/24", "192.168.1.0/28", "203.0.113.0/24",
                     "10.244.0.0/16", "10.244.1.0/24", "0.0.0.0/0", "192.168.1.5/24", "203.0.113.0/30"]),
    st.from_regex(r"\A[0-9]{0,6}:[0-9]{0,6}(/(tcp|udp|sctp))?\Z"),  # port-ish
    st.from_regex(r"\A[a-zA-Z_-][a-z0-9_-]{0,20}\Z"),  # name-ish
    st.sampled_from(["internet", "gateway", "underlay", "web", "client", "host1", "host2", "lan",
                     "docker0", "vxlan", "ipip", "host-gw", "vpc-native", "weave", "Always", "CrossSubnet"]),
    st.integers(-1, 70000),
)


def outcome(data: Any) -> Topology | TopologyError:
    """What the loader does with ``data``; any exception but TopologyError fails the test."""
    try:
        topology = parse_topology(data, "fuzz.yaml")
    except TopologyError as error:
        assert str(error).startswith("fuzz.yaml"), str(error)
        assert error.exit_code == 2
        return error
    assert isinstance(topology, Topology)
    try:
        plan = make_plan(topology, "fuzz.yaml")
    except TopologyError as error:
        return error
    assert isinstance(plan, Plan) and plan.render().startswith("# netlab plan")
    return topology


@FUZZ
@given(json_like)
def test_any_structure(data: Any) -> None:
    outcome(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(["name", "network", "nodes", "extra"]), json_like, max_size=3))
def test_any_top_level_mapping(data: dict[str, Any]) -> None:
    outcome(data)


@FUZZ
@given(st.text(max_size=200) | st.from_regex(r"\A[\[\]{}:,\-\n !&*|>'\"#%@`a-z0-9]{0,80}\Z"))
def test_any_text(text: str) -> None:
    outcome(text)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += paths(value, (*prefix, index))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(DOCS[draw(st.sampled_from(sorted(DOCS)))])
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(paths(data)))
        if not where:
            continue
        parent = data
        for part in where[:-1]:
            parent = parent[part]
        last = where[-1]
        action = draw(st.sampled_from(["replace", "plausible", "delete", "add-key", "duplicate"]))
        if action == "replace":
            parent[last] = draw(json_like)
        elif action == "plausible":
            parent[last] = draw(plausible)
        elif action == "delete":
            del parent[last]
        elif action == "add-key" and isinstance(parent[last], dict):
            parent[last][draw(st.sampled_from(KEYS))] = draw(plausible | json_like)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    return data


@FUZZ
@given(mutated())
def test_mutated_valid_documents(data: dict[str, Any]) -> None:
    outcome(data)


@st.composite
def edited_text(draw: st.DrawFn) -> str:
    text = SOURCES[draw(st.sampled_from(sorted(SOURCES)))]
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from([" ", "  ", "\n", ":", "-", "[", "]", "{", "}", ",", "'", "#", "*", "&a", "!!", "1", "x"]))
        if edit == "insert":
            text = text[:at] + piece + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 10)) :]
        else:
            text = text[:at] + piece + text[at + 1 :]
    return text


@FUZZ
@given(edited_text())
def test_edited_yaml_text(text: str) -> None:
    outcome(text)


def test_pathological_inputs() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    for data in (
        {"name": "a", "nodes": deep},
        "[" * 5000 + "]" * 5000,
        "a: &a [*a]",
        "!!python/object:os.system {}",
        "name: a\nnodes: !!set {x}\n",
        "name: a\nnodes: !!binary aGVsbG8=\n",
        {"name": "a", "nodes": [{"name": "h", "pods": [{"name": f"p{i}"} for i in range(70000)]}]},
        {"name": 1, "nodes": [{"name": None}]},
        {("tuple",): 1},
    ):
        outcome(data)
