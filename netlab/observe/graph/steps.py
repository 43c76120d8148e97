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


def from_rows(rows: Sequence[Row]) -> list[Step]:
    """One numbered step per row, request then reply."""
    return [
        Step(
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
