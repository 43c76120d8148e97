"""Scenario files: validation names the file and the field; nothing is built for a typo."""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab.errors import TopologyError
from netlab.scenario.spec import ImpairStep, load_scenario

ROOT = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text.replace("TOPO", str(ROOT / "topologies" / "docker-2hosts.yaml")))
    return path


def load_error(tmp_path: Path, text: str) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        load_scenario(write(tmp_path, text))
    return info.value


def test_shipped_scenarios_load() -> None:
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        scenario, labs = load_scenario(path)
        assert scenario.steps and labs, path


def test_docker_multihost_resolves_its_lab(tmp_path: Path) -> None:
    scenario, labs = load_scenario(ROOT / "scenarios" / "docker-multihost.yaml")
    assert [lab.name for lab in labs] == ["docker-2hosts"]
    assert [s.kind for s in scenario.steps][:2] == ["ping", "ping"]


def test_lab_rename_and_cni_override(tmp_path: Path) -> None:
    _s, labs = load_scenario(write(tmp_path, "name: x\nlabs: [{file: TOPO, name: renamed}]\nsteps: []\n"))
    assert labs[0].name == "renamed"


def test_unknown_step_kind_lists_the_valid_ones(tmp_path: Path) -> None:
    err = load_error(tmp_path, "name: x\nlabs: [{file: TOPO}]\nsteps: [{pingg: {from: web1, to: host1}}]\n")
    assert err.source.endswith("s.yaml") and err.field.startswith("steps[0]")
    assert "pingg" in str(err) and "ping" in str(err)


def test_two_kinds_in_one_step_is_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path, "name: x\nlabs: [{file: TOPO}]\nsteps: [{ping: {from: web1, to: host1}, rtt: {from: web1, to: host1}}]\n")
    assert "exactly one" in str(err)


def test_unknown_pod_names_the_step_field(tmp_path: Path) -> None:
    err = load_error(tmp_path, "name: x\nlabs: [{file: TOPO}]\nsteps: [{rtt: {from: web1, to: nosuch}}]\n")
    assert err.field == "steps[0].rtt.to" and "nosuch" in err.message


def test_bad_field_value_names_the_field(tmp_path: Path) -> None:
    err = load_error(tmp_path, "name: x\nlabs: [{file: TOPO}]\nsteps: [{rtt: {from: web1, to: host1, samples: 1}}]\n")
    assert err.field == "steps[0].rtt.samples"


def test_missing_topology_file(tmp_path: Path) -> None:
    err = load_error(tmp_path, "name: x\nlabs: [{file: nope.yaml}]\n")
    assert err.field == "labs[0].file" and "relative to the scenario" in err.message


def test_duplicate_lab_names(tmp_path: Path) -> None:
    err = load_error(tmp_path, "name: x\nlabs: [{file: TOPO}, {file: TOPO}]\n")
    assert err.field == "labs[1].name"


def test_bad_expectation_names_its_field(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        "name: x\nlabs: [{file: TOPO}]\nsteps:\n  - capture: {probe: {from: web1, to: host2}, expect: [{at: host1, packet: {src: web1}}]}\n",
    )
    assert "steps[0].capture.expect" in str(err)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"at": "node1", "rate": "1mbit"}, "TARGET:IFACE"),
        ({"at": "node1:eth0", "rate": "fast"}, "bad rate"),
        ({"at": "node1:eth0", "delay": "5 minutes"}, "bad duration"),
        ({"at": "node1:eth0", "loss": "1"}, "bad loss"),
        ({"at": "node1:eth0"}, "rate, delay"),
    ],
)
def test_impair_validation(spec: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImpairStep.model_validate(spec)


def test_impair_knows_when_it_needs_netem() -> None:
    assert ImpairStep.model_validate({"at": "n:eth0", "delay": "5ms"}).needs_netem
    assert not ImpairStep.model_validate({"at": "n:eth0", "rate": "100mbit"}).needs_netem
