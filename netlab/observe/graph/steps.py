"""A traced path as numbered :class:`~netlab.observe.graph.model.Step` s.

- :func:`from_trace`: one step per row of a :class:`~netlab.observe.trace.Trace`, in its
  order (the request's rows in path order, then the reply's), with what changed at that row
  and where (the rows' ``changes`` and ``where``: encapsulated, decapsulated, SNAT, DNAT, a
  proxy's new connection);
- :func:`from_captures`: a scenario's capture step, which sends traffic without walking a
  path: its capture points, numbered in the order the first captured packet reached them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from netlab.observe.graph.model import Step
from netlab.observe.trace.rows import Row

SHORT = {"request": "req", "reply": "rep"}  # as the trace's table numbers its rows


def from_rows(rows: Sequence[Row]) -> list[Step]:
    """One numbered step per row, request then reply, named as the trace's table names them (``req 3``)."""
    counts = {"request": 0, "reply": 0}
    labels = []
    for row in rows:
        counts[row.direction] = counts.get(row.direction, 0) + 1
        labels.append(f"{SHORT.get(row.direction, row.direction)} {counts[row.direction]}")
    return [
        Step(
            label=labels[i - 1],
            number=i,
            at=(row.hop.point.ns, row.hop.point.iface),
            direction=row.direction,
            seen=row.frame is not None,
            changes=tuple(row.changes),
            where=row.where,
            proxy=row.direction == "request" and row.hop.role == "proxy",
        )
        for i, row in enumerate(rows, 1)
    ]


def from_captures(points: Iterable[tuple[str, str, float | None]]) -> list[Step]:
    """``(ns, iface, first packet's time or None)`` per capture point: numbered by that time;
    points that saw nothing come last, not seen."""
    ordered = sorted(points, key=lambda p: (p[2] is None, p[2] or 0.0))
    return [Step(i, (ns, iface), "capture", seen=when is not None) for i, (ns, iface, when) in enumerate(ordered, 1)]
