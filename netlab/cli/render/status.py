"""``netlab status``: the labs that are up, or one lab's namespaces, interfaces and routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from netlab.observe.status import NamespaceView
    from netlab.state import LabState


def labs_table(states: Sequence[LabState]) -> Table:
    """One row per lab netlab knows of."""
    table = Table("lab", "cni", "status", "namespaces", "source", title="netlab labs")
    for s in states:
        table.add_row(*(escape(text) for text in (s.lab, s.cni, s.status, str(len(s.namespaces)), s.source)))
    return table


def namespace_table(view: NamespaceView) -> Table:
    """A node's, pod's or host's interfaces (loopback left out)."""
    table = Table("interface", "kind", "state", "mtu", "addresses", "master", title=escape(f"{view.kind} {view.name}  (netns {view.ns})"), title_justify="left", min_width=60)
    for iface in view.interfaces:
        if iface.name == "lo":
            continue
        table.add_row(*(escape(text) for text in (iface.name, iface.kind, iface.state, str(iface.mtu), " ".join(iface.addresses), iface.master or "")))
    return table


def print_lab(out: Console, state: LabState, views: Sequence[NamespaceView]) -> None:
    """The lab's header and notes, then each namespace (the underlay left out) with its routes."""
    out.print(f"[bold]lab {escape(state.lab)}[/] · cni {escape(state.cni)} · from {escape(state.source)}")
    for note in state.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    for view in views:
        if view.kind == "underlay":
            continue
        out.print(namespace_table(view))
        if view.routes:
            out.print("  routes: " + "\n          ".join(str(r) for r in view.routes), highlight=False, markup=False)
