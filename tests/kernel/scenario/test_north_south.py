"""scenarios/north-south.yaml on a real kernel, with fewer requests: every path's client address
as the pods reported it (the table's column and report.json), the files written, nothing left."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from netlab import cli
from tests.conftest import ROOT, assert_host_unchanged, host_snapshot, lab_leftovers

NODES = {"192.168.1.11", "192.168.1.12"}
INTERNET = "203.0.113.1"


def test_north_south_scenario_reports_each_paths_client_address(root: None, tmp_path: Path) -> None:
    before = host_snapshot()
    text = (ROOT / "scenarios" / "north-south.yaml").read_text()
    path = tmp_path / "ns.yaml"
    path.write_text(text.replace("../topologies/", f"{ROOT}/topologies/").replace("name: ns\n", "name: nss-kt\n"))
    out = tmp_path / "out"
    buf = io.StringIO()
    code = cli.main(["run", str(path), "--samples", "50", "-o", str(out)], console=Console(file=buf, width=400))
    printed = buf.getvalue()
    assert code == 0, printed
    assert "PASSED" in printed

    report = json.loads((out / "report.json").read_text())
    steps = {s["lab"]: s for s in report["steps"] if s["kind"] == "http"}
    assert list(steps) == ["NodePort", "NLB instance Cluster", "NLB instance Local", "NLB ip", "NLB ip preserve", "Ingress", "Gateway"]
    clients = {name: set(s["data"]["clients"]) for name, s in steps.items()}
    # kube-proxy's masquerade (externalTrafficPolicy Cluster): a node's address
    assert clients["NodePort"] <= NODES and clients["NLB instance Cluster"] <= NODES
    # instance targets with Local, and ip targets with preserve_client_ip.enabled=true: the client itself
    assert clients["NLB instance Local"] == {INTERNET} and clients["NLB ip preserve"] == {INTERNET}
    # ip targets, AWS's default for TCP: the NLB's own address, the one the client connected to
    nlb_ip = steps["NLB ip"]["data"]["connect"].split(":")[0]
    assert clients["NLB ip"] == {nlb_ip} and nlb_ip.startswith("192.168.1.")
    # behind nginx: the proxy pod is the client, X-Forwarded-For is the internet host
    for name in ("Ingress", "Gateway"):
        (proxy,) = clients[name]
        assert proxy not in NODES | {INTERNET}
        assert steps[name]["data"]["x_forwarded_for"] == {INTERNET: 50}
    for name, step in steps.items():
        assert step["status"] == "pass", step
        assert step["data"]["stats"]["n"] == 50 and sum(step["data"]["answers"].values()) == 50, name
        assert set(step["data"]["answers"]) == {"web-1", "web-2"}, (name, step["data"]["answers"])

    # hops come from netlab trace, which follows every path: the NLB, kube-proxy, nginx's new connection
    hops = {name: s["data"]["hops"] for name, s in steps.items()}
    assert all(isinstance(h, int) for h in hops.values()), {n: s["data"].get("hops_note") for n, s in steps.items()}
    # gateway, underlay, node1, the pod; with Cluster kube-proxy may pick web-2 on node2: one more
    assert hops["NodePort"] in (4, 5), hops
    assert hops["NLB ip"] == 5, hops  # gateway, underlay, the NLB, the pod's node, the pod
    assert hops["Ingress"] >= 5 and hops["Gateway"] >= 5, hops  # the nginx pod is one namespace more than a NodePort's least

    table = (out / "http-step1.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table.splitlines() if line.startswith("| ") and " --- " not in line}
    column = rows["path"].index("pod saw (client)")
    assert rows["NLB instance Local"][column] == f"{INTERNET} = internet ✓"
    assert rows["NLB ip"][column] == f"{nlb_ip} = load-balancer ✓"
    assert rows["NodePort"][column].endswith("= node ✓") and rows["Ingress"][column].endswith("= pod of ingress-nginx-controller ✓")
    assert (out / "http-step1.png").stat().st_size > 0
    assert lab_leftovers("nss-kt") == []
    assert_host_unchanged(before)
