"""``netlab check``'s matrix: who reaches whom, a summary per kind of path, what went wrong.

The matrix is drawn up to :data:`MATRIX_TARGETS` columns (a representative check of a lab of
up to ~12 nodes, or the full matrix of a small lab); past that the summary, the failures and
``--json`` say everything it would."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from netlab.observe.check import Reachability
    from netlab.plan import Host

_KINDS = ("pod", "hostNetwork pod", "node", "internet")
MATRIX_TARGETS = 40  # columns; a wider matrix is left out
FAILURES_SHOWN = 30  # failures listed one per line; --json has the rest


def _display_order(endpoints: list[Host]) -> list[Host]:
    """Pods grouped under their node (ordinary, then hostNetwork), then the node; the internet last."""
    pods: dict[str | None, list[Host]] = {}
    for e in endpoints:
        if e.kind == "pod":
            pods.setdefault(e.node, []).append(e)
    out = []
    for node in (e for e in endpoints if e.kind == "node"):
        on = pods.get(node.name, [])
        out += [e for e in on if not e.host_network] + [e for e in on if e.host_network] + [node]
    placed = {e.name for e in out}
    return out + [e for e in endpoints if e.name not in placed]


def _rank(category: str) -> tuple[int, int, int]:
    """Summary rows: by source kind, then target kind, same node before cross node."""
    src, _, rest = category.partition(" → ")
    dst, _, where = rest.partition(", ")
    return (_KINDS.index(src) if src in _KINDS else 9, _KINDS.index(dst) if dst in _KINDS else 9, where == "cross node")


def _targets(report: Reachability) -> set[str]:
    return {r.pair.dst for r in report.results}


def matrix(report: Reachability) -> Table:
    """One row per source, one column per target: ✓ reached, ✗ no reply, ⊘ blocked as it must be, LEAK."""
    cells = {(r.pair.src, r.pair.dst): r for r in report.results}
    ordered = _display_order(report.hosts)
    from_names, to_names = {r.pair.src for r in report.results}, _targets(report)
    sources = [e for e in ordered if e.name in from_names]
    targets = [e for e in ordered if e.name in to_names]
    table = Table(title=f"netlab check {escape(report.lab)} (cni {escape(report.cni)}): ✓ reached · ✗ no reply · ⊘ blocked as it must be", title_justify="left")
    table.add_column("from \\ to", no_wrap=True)
    for ep in targets:
        table.add_column(escape(ep.name), justify="center", overflow="fold")
    for ep in sources:
        src = ep.name
        where = "hostNetwork" if ep.host_network else str(ep.ip)
        row: list[Any] = [f"{escape(src)} [dim]{escape(where)}[/]"]
        for ep in targets:
            r = cells.get((src, ep.name))
            if r is None:
                row.append("")
            elif r.pair.expect:
                row.append(Text("✓", "green") if r.reached else Text("✗", "bold red"))
            else:
                row.append(Text("⊘", "green") if not r.reached else Text("LEAK", "bold red"))
        table.add_row(*row)
    return table


def summary(report: Reachability) -> Table:
    """As expected / total per category of path."""
    table = Table("path", "as expected", "", title_justify="left")
    for category, good, total, must in sorted(report.summary(), key=lambda row: _rank(row[0])):
        what = "" if must else " (must fail)"
        mark = Text("ok", "green") if good == total else Text("FAIL", "bold red")
        table.add_row(escape(category + what), f"{good}/{total}", mark)
    return table


def reachability(report: Reachability) -> Group:
    """The whole ``netlab check`` output: which pairs, matrix, summary, each failure, the verdict."""
    parts: list[Any] = []
    if report.selection:
        parts.append(Text(f"pairs: {report.selection}", "dim"))
    columns = len(_targets(report))
    if columns <= MATRIX_TARGETS:
        parts.append(matrix(report))
    else:
        parts.append(Text(f"matrix left out: {columns} targets (at most {MATRIX_TARGETS} are drawn); --json has every pair", "dim"))
    parts.append(summary(report))
    failures = report.failures
    for r in failures[:FAILURES_SHOWN]:
        want = "should reach" if r.pair.expect else "must NOT reach"
        parts.append(Text(f"✗ {r.pair.src} → {r.pair.dst} ({r.pair.ip}) {want} it: {r.detail}", "red"))
    if len(failures) > FAILURES_SHOWN:
        parts.append(Text(f"… and {len(failures) - FAILURES_SHOWN} more not as expected (--json lists every one)", "red"))
    for warning in report.warnings:
        parts.append(Text(f"warning: {warning}", "yellow"))
    total = len(report.results)
    if report.ok:
        parts.append(Text(f"all {total:,} paths as expected", "bold green"))
    else:
        parts.append(Text(f"{len(failures):,} of {total:,} paths not as expected", "bold red"))
    return Group(*parts)
