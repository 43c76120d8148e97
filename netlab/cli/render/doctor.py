"""``netlab doctor``: what this machine's kernel and tools can do, and how to get what is missing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from netlab.doctor import Check


def checks_table(checks: Sequence[Check]) -> Table:
    """One row per check: ok, MISSING (essential) or missing, and for a missing one what it disables."""
    table = Table("check", "result", "detail", "without it", "how to get it", title="netlab doctor")
    for c in checks:
        mark = "[green]ok[/]" if c.ok else ("[red]MISSING[/]" if c.essential else "[yellow]missing[/]")
        table.add_row(escape(c.name), mark, escape(c.detail), "" if c.ok else escape(c.disables), "" if c.ok else escape(c.how))
    return table
