"""``netlab status``: the labs that are up, or one lab's namespaces, interfaces and routes.

A small lab gets a table per namespace. A big one (more than :data:`COMPACT_AFTER` namespaces)
gets a table per node and host, with the address-less veth ports grouped into one row, and one
plain line per pod: a rich table per pod costs ~3 ms to draw, a rich table of 5,000 rows 3 s
(measured), a line of text microseconds. ``--json`` has every interface and route either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from netlab.kernel.inspect import Interface
    from netlab.observe.status import EniView, NamespaceView
    from netlab.services.bird import Peer
    from netlab.state import LabState

COMPACT_AFTER = 40  # namespaces shown; past this, pods are one line each


def labs_table(states: Sequence[LabState]) -> Table:
    """One row per lab netlab knows of."""
    table = Table("lab", "cni", "status", "namespaces", "source", title="netlab labs")
    for s in states:
        table.add_row(*(escape(text) for text in (s.lab, s.cni, s.status, str(len(s.namespaces)), s.source)))
    return table


def _grouped(interfaces: Sequence[Interface]) -> list[tuple[str, Interface]]:
    """(label, interface) rows: veths without addresses that share master, state and MTU become one row."""
    rows: list[tuple[list[Interface], Interface]] = []
    groups: dict[tuple[str | None, str, int], list[Interface]] = {}
    for iface in interfaces:
        if iface.kind == "veth" and not iface.addresses:
            key = (iface.master, iface.state, iface.mtu)
            if key in groups:
                groups[key].append(iface)
                continue
            groups[key] = [iface]
            rows.append((groups[key], iface))  # the group's row, where its first member is
        else:
            rows.append(([iface], iface))
    return [(iface.name if len(members) == 1 else f"{len(members)} veths ({iface.name}, …)", iface) for members, iface in rows]


def namespace_table(view: NamespaceView, group_ports: bool = False) -> Table:
    """A node's, pod's or host's interfaces (loopback left out); ``group_ports``: veth ports grouped."""
    table = Table("interface", "kind", "state", "mtu", "addresses", "master", title=escape(f"{view.kind} {view.name}  (netns {view.ns})"), title_justify="left", min_width=60)
    interfaces = [iface for iface in view.interfaces if iface.name != "lo"]
    rows = _grouped(interfaces) if group_ports else [(iface.name, iface) for iface in interfaces]
    for label, iface in rows:
        table.add_row(*(escape(text) for text in (label, iface.kind, iface.state, str(iface.mtu), " ".join(iface.addresses), iface.master or "")))
    if not view.present:
        table.add_row("[red](namespace missing)[/]", "", "", "", "", "")
    return table


def _routes(out: Console, view: NamespaceView) -> None:
    if view.routes:
        out.print("  routes: " + "\n          ".join(str(r) for r in view.routes), highlight=False, markup=False, soft_wrap=True)


def pod_lines(views: Sequence[NamespaceView]) -> str:
    """One line per pod interface (loopback left out), columns aligned: pod, node, interface, state,
    mtu, addresses, the default route and how many other routes the pod has."""
    rows = [("pod", "node", "interface", "state", "mtu", "addresses", "routes")]
    for view in views:
        if not view.present:
            rows.append((view.name, view.node or "", "(namespace missing)", "", "", "", ""))
            continue
        default = next((r for r in view.routes if r.dst == "default"), None)
        more = len(view.routes) - (default is not None)
        routes = (f"default via {default.via}" if default and default.via else str(default or "no default route")) + (f" +{more}" if more else "")
        interfaces = [iface for iface in view.interfaces if iface.name != "lo"]
        if not interfaces:
            rows.append((view.name, view.node or "", "(no interface)", "", "", "", routes))
        for i, iface in enumerate(interfaces):
            first = i == 0
            rows.append((view.name if first else "", (view.node or "") if first else "", iface.name, iface.state, str(iface.mtu),
                         " ".join(iface.addresses), routes if first else ""))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows)


def print_lab(out: Console, state: LabState, views: Sequence[NamespaceView]) -> None:
    """The lab's header and notes, then each namespace (the underlay left out) with its routes."""
    out.print(f"[bold]lab {escape(state.lab)}[/] · cni {escape(state.cni)} · from {escape(state.source)}")
    for note in state.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    shown = [view for view in views if view.kind != "underlay"]
    if len(shown) <= COMPACT_AFTER:
        for view in shown:
            out.print(namespace_table(view))
            _routes(out, view)
        return
    pods = [view for view in shown if view.kind == "pod"]
    others = [view for view in shown if view.kind != "pod"]
    out.print(f"{len(shown)} namespaces: {len(others)} nodes and hosts (veth ports grouped), {len(pods)} pods (a line each); "
              f"every interface and route: netlab status {escape(state.lab)} --json", style="dim", highlight=False)
    for view in others:
        out.print(namespace_table(view, group_ports=True))
        _routes(out, view)
    if pods:
        lines = pod_lines(pods).split("\n", 1)
        out.print(lines[0], style="bold", highlight=False, markup=False, soft_wrap=True)
        if len(lines) > 1:
            out.print(lines[1], highlight=False, markup=False, soft_wrap=True)


def bgp_table(peers: Sequence[Peer]) -> Table:
    """The BGP sessions of a Calico lab, per node, in ``calicoctl node status``'s columns."""
    table = Table("NODE", "PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO", title="IPv4 BGP status (BIRD in each node)")
    for p in peers:
        table.add_row(*(escape(text) for text in (p.node, p.address, p.kind, p.state, p.since, p.info)))
    return table


def eni_table(enis: Sequence[EniView]) -> Table:
    """A vpc-native lab's ENIs per node: primary address, the secondary IPs or /28 prefixes
    ipamd holds on each, which pod has which address, and how many are free (the warm pool)."""
    table = Table("NODE", "ENI", "PRIMARY", "SECONDARY IPs / PREFIXES", "ASSIGNED", "FREE", title="ENIs (ipamd's warm pool)")
    for e in enis:
        cidrs = [c.removesuffix("/32") for c in e.cidrs]
        assigned = ", ".join(f"{ip} {pod}" for ip, pod in e.assigned.items())
        table.add_row(*(escape(text) for text in (e.node, e.device, e.primary, " ".join(cidrs) or "-", assigned or "-", str(len(e.free)))))
    return table
