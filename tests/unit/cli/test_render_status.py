"""``netlab status`` on the terminal: a table per namespace for a small lab; for a big one, veth
ports grouped in the node tables and a line per pod. No kernel: views are built by hand."""

from __future__ import annotations

import io

from rich.console import Console

from netlab.cli.render import status as render_status
from netlab.kernel.inspect import Interface, Route
from netlab.observe.status import NamespaceView
from netlab.state import LabState


def node(name: str, pods: int) -> NamespaceView:
    interfaces = [Interface("lo", "loopback", "UNKNOWN", 65536, "", None, ["127.0.0.1/8"]),
                  Interface("eth0", "veth", "UP", 1500, "", None, ["192.168.1.11/24"]),
                  Interface("cni0", "bridge", "UP", 1500, "", None, ["10.244.1.1/24"])]
    interfaces += [Interface(f"veth{i:04x}", "veth", "UP", 1500, "", "cni0") for i in range(pods)]
    return NamespaceView(name, f"l-{name}", "node", True, None, interfaces, [Route("default", "192.168.1.1", "eth0", "global", 254)])


def pod(name: str, on: str, ip: str, state: str = "UP") -> NamespaceView:
    return NamespaceView(name, f"l-{name}", "pod", True, on,
                         [Interface("lo", "loopback", "UNKNOWN", 65536, "", None), Interface("eth0", "veth", state, 1500, "", None, [f"{ip}/24"])],
                         [Route("default", "10.244.1.1", "eth0", "global", 254), Route("10.244.1.0/24", None, "eth0", "link", 254)])


def render(views: list[NamespaceView]) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    render_status.print_lab(console, LabState(lab="l", cni="host-gw", source="x.yaml", status="up"), views)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_a_small_lab_gets_a_table_per_namespace() -> None:
    text = render([node("node1", 2), pod("web", "node1", "10.244.1.2")])
    assert "node node1  (netns l-node1)" in text and "pod web  (netns l-web)" in text
    assert "veth0000" in text and "veth0001" in text  # every port listed
    assert "routes: default via 10.244.1.1 dev eth0" in text


def test_a_big_lab_groups_ports_and_gives_each_pod_a_line() -> None:
    pods = [pod(f"p{i}", "node1", f"10.244.1.{i + 2}") for i in range(60)]
    pods.append(pod("sick", "node1", "10.244.1.100", state="DOWN"))
    pods.append(NamespaceView("gone", "l-gone", "pod", False, "node1"))
    text = render([node("node1", 62), *pods])
    assert "62 veths (veth0000, …)" in text and "veth0001" not in text
    assert "node node1  (netns l-node1)" in text and "pod p0  (netns" not in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("pod "))
    assert header.split() == ["pod", "node", "interface", "state", "mtu", "addresses", "routes"]
    assert next(line for line in lines if line.startswith("p7 ")).split() == [
        "p7", "node1", "eth0", "UP", "1500", "10.244.1.9/24", "default", "via", "10.244.1.1", "+1"]
    assert next(line for line in lines if line.startswith("sick ")).split()[3] == "DOWN"
    assert "(namespace missing)" in next(line for line in lines if line.startswith("gone "))
    assert "netlab status l --json" in " ".join(text.split())
