"""Hostile manifests against a running Services lab, through the CLI: exit 2, nothing changed.

Issue 11's reproductions, end to end: a Service port name carrying a quote and newlines added a
DNAT rule to PREROUTING on every node (and one iptables-restore could not parse stayed in the
lab record, breaking every later apply and scale); a Pod namespace with a newline wrote
``nameserver 192.0.2.1`` into the pod's resolv.conf. Each is refused with exit 2 naming the
file and field, and the nodes' rules, the lab's namespaces, its record and /etc/netns are as
they were; the lab still scales afterwards. The lab is built by ``lab_up`` (nothing left behind).
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from rich.console import Console

from netlab.cli import main
from netlab.kernel import netns
from netlab.model import parse_topology
from netlab.state import LabState

LAB = "t11-inject"
TOPOLOGY = {
    "name": LAB,
    "network": {"cni": "host-gw"},
    "nodes": [
        {"name": "node1", "pods": [{"name": "web-1", "labels": {"app": "web"}}, {"name": "client"}]},
        {"name": "node2", "pods": [{"name": "web-2", "labels": {"app": "web"}}]},
    ],
    "services": [{"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}],
}
PORT_NAME = (
    "apiVersion: v1\nkind: Service\nmetadata: {name: evil}\nspec:\n  selector: {app: web}\n"
    "  ports:\n    - name: \"x\\\" -j ACCEPT\\n-A PREROUTING -p tcp -j DNAT --to-destination 192.0.2.1:80\\n#\"\n      port: 80\n"
)
UNPARSABLE_PORT_NAME = (  # what iptables-restore cannot parse: it used to stay in the record
    "apiVersion: v1\nkind: Service\nmetadata: {name: evil}\nspec:\n  ports: [{name: \"x\\\"\\n-A\", port: 81}]\n"
)
NAMESPACE = (
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: evil\n  namespace: \"default\\nnameserver 192.0.2.1\"\n"
    "spec:\n  containers: [{name: c, image: x}]\n"
)
DEPLOYMENT_THEN_BAD_SERVICE = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: hello}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: hello}}\n"
    "  template: {metadata: {labels: {app: hello}}, spec: {containers: [{name: hello, ports: [{containerPort: 8080}]}]}}\n---\n"
    + PORT_NAME
)


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), Console(file=out, width=300))
    return code, out.getvalue()


def snapshot(state: LabState) -> dict[str, object]:
    """What a refused apply must not change: rules in every node, namespaces, the record, /etc/netns."""
    rules = {}
    for node in ("node1", "node2"):
        ns = f"{state.lab}-{node}"
        saved = subprocess.run(netns.exec_argv(ns, ["iptables-save"]), capture_output=True, text=True, timeout=30, check=True).stdout
        rules[node] = [line.split(" [")[0] for line in saved.splitlines() if not line.startswith("#")]
    record = LabState.load(state.lab)
    assert record is not None
    etc = sorted(p.name for p in Path("/etc/netns").iterdir() if p.name.startswith(f"{state.lab}-")) if Path("/etc/netns").exists() else []
    return {"rules": rules, "namespaces": sorted(n for n in netns.list_names() if n.startswith(f"{state.lab}-")),
            "record": (record.hosts, record.topology, record.extra.get("services"), record.extra.get("deployments")), "etc": etc}


def test_hostile_manifests_exit_2_and_change_nothing(lab_up, tmp_path: Path) -> None:
    state = lab_up(parse_topology(TOPOLOGY, "<test>"))
    before = snapshot(state)
    for name, text, field in (
        ("port-name.yaml", PORT_NAME, "documents[0] (Service evil).spec.ports[0].name"),
        ("unparsable.yaml", UNPARSABLE_PORT_NAME, "documents[0] (Service evil).spec.ports[0].name"),
        ("namespace.yaml", NAMESPACE, "documents[0] (Pod evil).metadata.namespace"),
        ("deployment-then-bad-service.yaml", DEPLOYMENT_THEN_BAD_SERVICE, "documents[1] (Service evil).spec.ports[0].name"),
    ):
        path = tmp_path / name
        path.write_text(text)
        code, out = cli("apply", LAB, "-f", str(path))
        assert code == 2, out
        assert f"error: {path}: {field}: invalid" in out.replace("\n", ""), out
        assert snapshot(state) == before, f"{name} changed the lab"
    for rules in before["rules"].values():  # type: ignore[attr-defined]
        assert not any("192.0.2.1" in line for line in rules)
    # the record is intact: the lab still scales and still applies
    code, out = cli("scale", LAB, "web", "1")
    assert code == 0, out
    good = tmp_path / "good.yaml"
    good.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web2}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n")
    code, out = cli("apply", LAB, "-f", str(good))
    assert code == 0 and "service/web2 created" in out, out
