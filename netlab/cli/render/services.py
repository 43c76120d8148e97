"""A lab's Services (``netlab status``) and the tally of ``netlab requests``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table


def services_table(mode: str, rows: Sequence[dict[str, Any]]) -> Table:
    """One row per Service, as :func:`netlab.services.cluster.describe_services` describes it."""
    table = Table("service", "type", "cluster-ip", "ports", "affinity", "endpoints", title=f"services (kube-proxy {mode})", title_justify="left")
    for row in rows:
        kind = row["type"] + (f" ({row['externalTrafficPolicy']})" if row["externalTrafficPolicy"] == "Local" else "")
        cells = (row["service"], kind, row["clusterIP"] or "", " ".join(row["ports"]), row["affinity"], "\n".join(row["endpoints"]) or "<none>")
        table.add_row(*(escape(text) for text in cells))
    return table


def requests_table(result: dict[str, Any], count: int, source: str, url: str) -> Table:
    """Which pod answered how many of ``count`` requests, and the errors (the request client's JSON)."""
    table = Table("answered by", "requests", "share", title=escape(f"{count} requests {source} -> {url}"), title_justify="left")
    for who, answered in result["answers"].items():
        table.add_row(escape(str(who)), str(answered), f"{100 * answered / count:.1f}%")
    if result["errors"]:
        table.add_row("[red]errors[/]", str(result["errors"]), escape(", ".join(map(str, result["error_kinds"]))))
    return table
