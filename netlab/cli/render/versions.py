"""``netlab versions``: what netlab emulates, one row per upstream component (netlab/versions.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from netlab.versions import Component


def components_table(components: Sequence[Component], kubernetes: str) -> Table:
    """Component, pinned release, the upstream source read, what is modelled and what is not."""
    table = Table("component", "version", "upstream source", "modelled", "not modelled",
                  title=f"What netlab emulates (one Kubernetes release: {kubernetes})")
    for c in components:
        table.add_row(escape(c.name), escape(c.version), escape(c.source), escape(c.modelled), escape(c.not_modelled))
    return table
