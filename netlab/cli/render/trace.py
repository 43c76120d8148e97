"""``netlab trace``: the probe at every hop, what changed where, and the verdict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from netlab.observe.trace import Trace


def hops_table(result: Trace, src: str, dst: str) -> Table:
    """One row per hop, requests then replies: outer and inner addresses, encapsulation, TTL, length, changes."""
    probe = result.probe
    table = Table(title=escape(f"trace {probe.proto} {src} ({probe.src_ip}) -> {dst} ({probe.dst_ip})"), title_justify="left")
    for header in ("#", "at", "dir", "outer src -> dst", "encap", "inner src -> dst", "ttl", "len"):
        table.add_column(header, no_wrap=True)
    table.add_column("changed here")
    for direction in ("request", "reply"):
        rows = [r for r in result.rows if r.direction == direction]
        if direction == "reply" and rows:
            table.add_section()
        for i, row in enumerate(rows, 1):
            f = row.frame
            label = f"{direction[:3]} {i}"
            if f is None:
                table.add_row(label, escape(str(row.hop.point)), "", "[dim]not seen[/]", "", "", "", "", "")
                continue
            inner = escape(f"{f.inner_src} -> {f.inner_dst}") if f.encapsulated else "[dim]same[/]"
            changed = escape(", ".join(row.changes)) + (f" [dim]@{escape(str(row.where))}[/]" if row.changes else "")
            table.add_row(label, escape(str(row.hop.point)), "out" if row.outgoing else "in", escape(f"{f.src} -> {f.dst}"), escape(f.encap_text()) if f.encapsulated else "none",
                          inner, str(f.inner_ttl), str(f.length), changed)
    return table


def print_trace(out: Console, result: Trace, src: str, dst: str, written: Sequence[Path]) -> None:
    """The hop table, the notes, the pcaps written and the verdict."""
    table = hops_table(result, src, dst)
    if not out.is_terminal and out.width < 170:
        out.width = 170  # piped or logged: keep one line per hop
    out.print(table)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    for path in written:
        out.print(f"wrote {path}", style="dim", highlight=False, markup=False)
    out.print(f"[bold]verdict:[/] {escape(result.verdict)}", highlight=False)
