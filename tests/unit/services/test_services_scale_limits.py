"""``scale`` and added pods: the whole request is checked against the nodes' room before the
first pod is built, built in one journaled apply, and removed again if anything fails after.

Issue 11: ``netlab scale services web 100000`` built 754 pods one apply at a time, then the
755th was refused by the topology validation ("topologies/services.yaml: nodes[0].pods: more
than 253 pods"), blaming the file and keeping the 754. Here on the fake kernel, no root.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netlab import lab
from netlab.datapaths import make_plan
from netlab.errors import UsageError
from netlab.kernel.fake import RecordingBackend
from netlab.model import parse_topology
from netlab.plan import CreateNamespace
from netlab.services import cluster, pods
from netlab.state import LabState

SOURCE = "topologies/limits.yaml"


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NETLAB_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path / "state"


class Kernel:
    """Stands in for the real kernel in pods and cluster: records every backend and removal."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.backends: list[RecordingBackend] = []
        self.removed: list[str] = []
        self.syncs = 0
        self.fail_sync = 0  # how many syncs fail
        monkeypatch.setattr(pods, "NetlinkBackend", self._backend)
        monkeypatch.setattr(pods.netns, "remove", self.removed.append)
        monkeypatch.setattr(pods.processes, "stop_in", lambda namespaces: [])
        monkeypatch.setattr(pods, "remove_resolv_conf", lambda ns: None)
        monkeypatch.setattr(pods.limits, "check_namespaces", lambda count, what: None)
        monkeypatch.setattr(cluster, "sync", self._sync)

    def _backend(self) -> RecordingBackend:
        self.backends.append(RecordingBackend())
        return self.backends[-1]

    def _sync(self, state: LabState) -> None:
        self.syncs += 1
        if self.fail_sync:
            self.fail_sync -= 1
            raise RuntimeError("kube-proxy rules failed")

    def created(self) -> list[str]:
        return [op.ns for b in self.backends for op in b.applied if isinstance(op, CreateNamespace)]


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Kernel:
    return Kernel(monkeypatch)


def running(data: dict[str, Any]) -> LabState:
    topology = parse_topology(data, SOURCE)
    return lab.up(topology, make_plan(topology, SOURCE), SOURCE, backend=RecordingBackend())


def two_nodes(cni: str = "host-gw") -> dict[str, Any]:
    """n0 with web-1..web-250, n1 with 252 other pods: room for 3 + 1 more (253 per /24 block)."""
    return {
        "name": "l",
        "network": {"cni": cni},
        "nodes": [
            {"name": "n0", "pods": [{"name": f"web-{i}", "labels": {"app": "web"}} for i in range(1, 251)]},
            {"name": "n1", "pods": [{"name": f"x-{i}"} for i in range(252)]},
        ],
    }


def test_scale_beyond_the_nodes_room_is_refused_before_anything_is_built(kernel: Kernel) -> None:
    state = running(two_nodes())
    before = list(state.namespaces)
    with pytest.raises(UsageError) as caught:
        cluster.scale(state, "web", 100000)
    text = str(caught.value)
    for words in (
        "cannot scale deployment web to 100000 replicas (250 now)", "99750 more pod(s)", "room for 4 (n0 3, n1 1)",
        "its pod block 10.244.", "holds 253 pods", "Nothing was built", "scale to at most 254", "add nodes",
    ):
        assert words in text, (words, text)
    assert SOURCE not in text and caught.value.exit_code == 2
    assert kernel.backends == [] and kernel.syncs == 0
    assert LabState.load("l").namespaces == before  # type: ignore[union-attr]
    with pytest.raises(UsageError, match="room for 4"):
        cluster.scale(state, "web", 255)  # one too many: the exact boundary


def test_scale_to_the_nodes_room_builds_every_pod_in_one_apply(kernel: Kernel) -> None:
    state = running(two_nodes())
    deploy = cluster.scale(state, "web", 254)
    assert len(kernel.backends) == 1  # one journaled apply for the whole request
    assert kernel.created() == ["l-web-251", "l-web-252", "l-web-253", "l-web-254"]
    nodes = {h.name: h.node for h in state.host_objects() if h.name.startswith("web-")}
    assert [nodes[f"web-{i}"] for i in range(251, 255)] == ["n0", "n0", "n0", "n1"]  # least loaded with room
    assert len(deploy.pods) == 254 and kernel.syncs == 1
    assert [r.free for r in pods.room(state)] == [0, 0]
    with pytest.raises(UsageError, match="cannot add a pod to lab 'l'.*room for 0"):
        pods.least_loaded_node(state)


def test_deleted_pods_names_come_back_on_their_nodes_within_the_room(kernel: Kernel) -> None:
    state = running(two_nodes())
    cluster.scale(state, "web", 254)  # web-251..253 on n0, web-254 on n1: both full
    cluster.scale(state, "web", 252)  # web-254 and web-253 removed: their slots are free again
    assert [r.free for r in pods.room(state)] == [1, 1]
    cluster.scale(state, "web", 254)
    nodes = {h.name: h.node for h in state.host_objects()}
    assert (nodes["web-253"], nodes["web-254"]) == ("n0", "n1")
    assert kernel.created()[-2:] == ["l-web-253", "l-web-254"]
    with pytest.raises(UsageError, match="room for 0"):
        cluster.scale(state, "web", 255)


def test_a_failure_after_the_pods_are_built_removes_them(kernel: Kernel) -> None:
    state = running(two_nodes())
    kernel.fail_sync = 1
    with pytest.raises(RuntimeError, match="kube-proxy"):
        cluster.scale(state, "web", 252)
    assert kernel.created() == ["l-web-251", "l-web-252"]
    assert kernel.removed == ["l-web-251", "l-web-252"]
    assert "l-web-251" not in LabState.load("l").namespaces  # type: ignore[union-attr]
    assert len(pods.deployments(state)["web"].pods) == 250
    assert kernel.syncs == 2  # rules and DNS brought back to the lab without them


def test_adding_a_pod_to_a_full_node_names_the_limit_not_the_file(kernel: Kernel) -> None:
    state = running(two_nodes())
    with pytest.raises(UsageError) as caught:
        pods.add(state, [("n1", {"name": "extra"}), ("n1", {"name": "extra2"})])
    text = str(caught.value)
    assert "cannot add 2 pod(s) to lab 'l'" in text and "nodes[1].pods: n1 has 254 pods" in text and "holds 253 pods" in text
    assert SOURCE not in text and "nothing was built" in text and kernel.backends == []


def test_a_vpc_pod_that_would_be_pending_is_refused(kernel: Kernel) -> None:
    data = {
        "name": "v",
        "network": {"cni": "vpc-native", "subnets": [{"name": "lan", "cidr": "10.0.0.0/28"}]},  # .12-.14 for pods
        "nodes": [{"name": "n0", "pods": [{"name": f"web-{i}", "labels": {"app": "web"}} for i in range(1, 4)]}],
    }
    state = running(data)
    assert [r.free for r in pods.room(state)] == [12]  # a t3.medium: 15 secondary IPs, 3 in use ...
    with pytest.raises(UsageError) as caught:  # ... but the subnet has no address left
        cluster.scale(state, "web", 4)
    text = str(caught.value)
    assert "web-4 would not run (no free IP: subnet lan (10.0.0.0/28) has no address left" in text
    assert "Kubernetes would leave it Pending" in text and kernel.backends == []


def test_vpc_max_pods_bounds_scale(kernel: Kernel) -> None:
    data = {"name": "v", "network": {"cni": "vpc-native"}, "nodes": [{"name": "n0", "instanceType": "t3.micro", "pods": [{"name": "web-1", "labels": {"app": "web"}}, {"name": "agent", "hostNetwork": True}]}]}
    state = running(data)
    with pytest.raises(UsageError) as caught:  # max pods 4 counts agent; 2 secondary IPs, web-1 has one
        cluster.scale(state, "web", 3)
    text = str(caught.value)
    assert "room for 1 (n0 1)" in text and "t3.micro allows max pods 2 ENIs × (2 − 1) + 2 = 4" in text and "2 × 1 = 2 of them get a secondary IP" in text
    cluster.scale(state, "web", 2)
    assert kernel.created() == ["v-web-2"]


def test_services_need_room_for_the_dns_pod_on_the_first_node() -> None:
    data = two_nodes()
    data["nodes"][0]["pods"] += [{"name": f"y-{i}"} for i in range(3)]  # n0 full: 253
    data["services"] = [{"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80}]}]
    with pytest.raises(UsageError, match="n0 has no room for the cluster DNS pod.*holds 253 pods"):
        cluster.ServicesPhase().preflight(parse_topology(data))
    data["nodes"][0]["pods"].pop()
    cluster.ServicesPhase().preflight(parse_topology(data))
