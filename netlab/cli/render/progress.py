"""The progress bars of a long ``netlab up`` (a build of many operations) and ``netlab check`` (many pings)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn


@contextmanager
def building(out: Console, lab: str, total: int) -> Iterator[tuple[Progress, TaskID]]:
    """A transient bar "building LAB" for ``total`` operations; yields the bar and its task to update."""
    with Progress(TextColumn("building {task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(), console=out, transient=True) as bar:
        yield bar, bar.add_task(lab, total=total)


@contextmanager
def checking(out: Console, lab: str, total: int) -> Iterator[tuple[Progress, TaskID]]:
    """A transient bar "checking LAB" for ``total`` pairs; yields the bar and its task to update."""
    with Progress(TextColumn("checking {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out, transient=True) as bar:
        yield bar, bar.add_task(lab, total=total)
