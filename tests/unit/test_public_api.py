"""The public Python API (netlab.api, re-exported by ``import netlab``) without a kernel:
loading and overriding topologies, refusing bad input before anything is built, and the
reachability report's raise_for_failures."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

import netlab
from netlab import api
from netlab.errors import EnvironmentProblem, ExpectationFailed, LabNotFound, TopologyError
from netlab.model import load_topology
from netlab.observe.check import PingPair, Reachability, Result

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def test_the_package_exports_the_documented_api_lazily_and_typed() -> None:
    for name in ("up", "attach", "run_scenario", "Lab", "ExpectationFailed"):
        assert name in netlab.__all__ and name in dir(netlab)
    assert netlab.up is api.up and netlab.Lab is api.Lab and netlab.run_scenario is api.run_scenario
    for fn in (api.up, api.attach, api.run_scenario, api.Lab.exec, api.Lab.trace, api.Lab.capture, api.Lab.check,
               api.Lab.status, api.Lab.apply, api.Lab.down):
        assert fn.__doc__, fn
        hints = inspect.signature(fn)
        assert hints.return_annotation is not inspect.Signature.empty, fn


def test_load_overrides_name_and_cni_of_a_file() -> None:
    model, source = api.load(TOPOLOGIES / "flannel-vxlan.yaml", name="apl-t1", cni="ipip")  # the older spelling of cni: calico (ipipMode Always)
    assert (model.name, model.network.cni, source) == ("apl-t1", "calico", str(TOPOLOGIES / "flannel-vxlan.yaml"))
    plain, _ = api.load(str(TOPOLOGIES / "flannel-vxlan.yaml"))
    assert (plain.name, plain.network.cni) == ("flannel-vxlan", "vxlan")


@pytest.mark.parametrize("path", sorted(TOPOLOGIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_a_model_round_trips_through_load_unchanged(path: Path) -> None:
    model = load_topology(path)
    again, source = api.load(model)
    assert again == model and source == "<python>"
    renamed, _ = api.load(model, name="apl-x")
    assert renamed.name == "apl-x" and renamed.nodes == model.nodes


def test_load_takes_a_mapping() -> None:
    model, _ = api.load({"name": "apl-d", "network": {"cni": "docker0"}, "nodes": [{"name": "host1", "pods": [{"name": "web"}]}]})
    assert model.name == "apl-d" and [p.name for _n, p in model.pods()] == ["web"]


@pytest.mark.parametrize(("kwargs", "field"), [({"name": "Bad_Name"}, "name"), ({"cni": "weave"}, "network.cni")])
def test_bad_overrides_name_the_source_and_field(kwargs: dict[str, str], field: str) -> None:
    with pytest.raises(TopologyError) as info:
        api.load(TOPOLOGIES / "docker0.yaml", **kwargs)
    assert str(TOPOLOGIES / "docker0.yaml") in str(info.value) and field in str(info.value)


def test_a_missing_file_is_a_topology_error() -> None:
    with pytest.raises(TopologyError, match="cannot read the file"):
        api.up("/nonexistent/apl.yaml", name="apl-missing")


def test_up_without_root_says_so_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem, match="needs root"):
        api.up(TOPOLOGIES / "docker0.yaml", name="apl-noroot")


def test_attach_and_down_of_a_lab_that_is_not_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETLAB_STATE_DIR", str(tmp_path))
    with pytest.raises(LabNotFound, match="apl-none"):
        api.attach("apl-none")
    lab = api.Lab("apl-none")
    assert lab.down() is None and not lab.is_up
    with lab:  # leaving the block tears down by record: nothing to do here, and no error
        pass


def _result(src: str, dst: str, expect: bool, reached: bool) -> Result:
    return Result(PingPair(src, dst, f"x-{src}", f"x-{dst}", "10.0.0.9", "pod -> pod (other node)", expect), reached, None,
                  "" if reached else "no reply")


def test_raise_for_failures_lists_every_misbehaving_path() -> None:
    good = Reachability("apl-c", "vxlan", [_result("a", "b", True, True), _result("a", "c", False, False)])
    assert good.raise_for_failures() is good
    bad = Reachability("apl-c", "vxlan", [_result("a", "b", True, False), _result("a", "c", False, True), _result("b", "a", True, True)])
    with pytest.raises(ExpectationFailed) as info:
        bad.raise_for_failures()
    text = str(info.value)
    assert "2 of 3 path(s)" in text and "a -> b" in text and "must reach, no reply" in text and "a -> c" in text
    assert "must not reach" in text and "netlab check apl-c" in text
