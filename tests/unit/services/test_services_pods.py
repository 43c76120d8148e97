"""Adding pods to a running lab: the datapath's own operations for just the new pods."""

from __future__ import annotations

from typing import Any

from netlab.datapaths import make_plan
from netlab.model import parse_topology
from netlab.model.service import Service
from netlab.plan import AddAddress, CreateNamespace, LoadIptables
from netlab.services.endpoints import PodInfo, workload_ports
from netlab.services.pods import incremental_ops, pod_name


def topo(node1: list[str], cni: str = "host-gw") -> Any:
    return parse_topology(
        {
            "name": "l",
            "network": {"cni": cni},
            "nodes": [{"name": "node1", "pods": [{"name": p} for p in node1]}, {"name": "node2", "pods": [{"name": "c"}]}],
        }
    )


def test_adding_a_pod_builds_only_that_pod() -> None:
    for cni in ("host-gw", "vxlan", "vpc-native"):
        old, new = make_plan(topo(["a", "b"], cni)), make_plan(topo(["a", "b", "d"], cni))
        ops = incremental_ops(old, new, set())
        assert [op.ns for op in ops if isinstance(op, CreateNamespace)] == ["l-d"], cni
        pod_ip = next(op.address.ip for op in ops if isinstance(op, AddAddress) and op.ns == "l-d")
        for op in ops:
            if op.ns not in ("l-d", "l-node1"):  # the VPC fabric learns the new secondary IP, nothing else
                assert cni == "vpc-native" and str(pod_ip) in op.render()[0], (cni, op)
        assert not any(isinstance(op, LoadIptables) for op in ops)
        addresses = [op for op in ops if isinstance(op, AddAddress) and op.ns == "l-d"]
        assert len(addresses) == 1, (cni, ops)


def test_a_new_pod_in_a_deleted_pods_slot_gets_its_address() -> None:
    old, new = make_plan(topo(["a", "b", "x"])), make_plan(topo(["a", "e", "x"]))
    ops = incremental_ops(old, new, {"l-b"})
    assert [op.ns for op in ops if isinstance(op, CreateNamespace)] == ["l-e"]
    address = next(op for op in ops if isinstance(op, AddAddress) and op.ns == "l-e")
    assert str(address.address) == "10.244.1.3/24"  # b's address, handed out again
    assert not any(getattr(op, "ns", None) == "l-x" for op in ops)
    # the same name coming back: everything of it again, nothing of its neighbours
    again = incremental_ops(old, old, {"l-b"})
    assert [op.ns for op in again if isinstance(op, CreateNamespace)] == ["l-b"]
    assert not any(getattr(op, "ns", None) in ("l-a", "l-x") for op in again)


def test_pod_names_look_like_a_replicasets() -> None:
    name = pod_name("web", {"labels": {"app": "web"}}, set())
    deployment, template_hash, suffix = name.rsplit("-", 2)
    assert deployment == "web" and len(template_hash) == 10 and len(suffix) == 5
    assert pod_name("web", {"labels": {"app": "web"}}, {name}) != name


def test_workload_listens_on_target_ports_of_selecting_services() -> None:
    services = [
        Service.model_validate({"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}),
        Service.model_validate({"name": "dns", "selector": {"app": "web"}, "ports": [{"port": 53, "protocol": "UDP"}]}),
        Service.model_validate({"name": "other", "selector": {"app": "db"}, "ports": [{"port": 5432}]}),
    ]
    pod = PodInfo("web-1", "default", {"app": "web"}, "10.244.1.2", "node1", "l-web-1", ports=((9000, "TCP"),))
    assert workload_ports(services, pod) == [(53, "UDP"), (8080, "TCP"), (9000, "TCP")]


def test_a_record_with_a_service_netlab_now_refuses_is_an_error_not_a_traceback() -> None:
    """An older netlab stored a hostile port name in the lab record; every apply/scale then failed with a traceback."""
    import pytest

    from netlab.errors import NetlabError
    from netlab.services.records import ClusterRecord
    from netlab.state import LabState

    hostile = {"name": "web", "namespace": "default", "ports": [{"name": 'x"\n-A PREROUTING', "port": 80}]}
    state = LabState(lab="t11-old", extra={"services": [hostile]})
    with pytest.raises(NetlabError, match="its record holds a Service netlab refuses .*ports\\[0\\].name.*netlab down t11-old"):
        ClusterRecord.load(state)
