"""Queueing disciplines on an interface inside a namespace: a scenario's ``impair`` step.

A root ``tbf`` caps the rate; a root ``netem`` adds delay, jitter and loss (and optionally a
rate). The parameters arrive computed (delay and jitter in microseconds, loss in percent, a
rate as tc writes it, e.g. ``100mbit``): this module knows the kernel, not the scenario file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netlab.errors import EnvironmentProblem, UsageError
from netlab.kernel import netns

TC_H_ROOT = 0xFFFFFFFF  # the parent handle of a root qdisc


@contextmanager
def _link(ns: str, iface: str) -> Iterator[tuple[IPRoute, int]]:
    """An rtnetlink handle in ``ns`` and the index of ``iface`` there."""
    with IPRoute(use_socket=netns.netlink_socket(ns)) as ipr:
        found = ipr.link_lookup(ifname=iface)
        if not found:
            raise UsageError(f"no interface {iface!r} in {ns}")
        yield ipr, found[0]


def _cannot(ns: str, iface: str, exc: NetlinkError) -> EnvironmentProblem:
    return EnvironmentProblem(f"cannot add the qdisc on {ns}:{iface}: {exc} (netlab doctor says what this kernel lacks)")


def clear(ns: str, iface: str) -> None:
    """Remove the root tbf or netem qdisc of ``ns:iface`` (any other qdisc stays)."""
    with _link(ns, iface) as (ipr, index):
        for qdisc in ipr.get_qdiscs(index=index):
            if qdisc["parent"] == TC_H_ROOT and qdisc.get_attr("TCA_KIND") in ("tbf", "netem"):
                ipr.tc("del", index=index, handle=qdisc["handle"], parent=TC_H_ROOT)


def set_netem(ns: str, iface: str, params: Mapping[str, Any]) -> None:
    """Make netem the root qdisc of ``ns:iface``: ``delay``/``jitter`` (µs), ``loss`` (%), ``rate``."""
    with _link(ns, iface) as (ipr, index):
        try:
            ipr.tc("replace", "netem", index=index, **params)
        except NetlinkError as exc:
            raise _cannot(ns, iface, exc) from None


def set_tbf(ns: str, iface: str, rate: str, burst: int = 64 * 1024, latency: int = 50_000) -> None:
    """Make tbf the root qdisc of ``ns:iface``: ``rate`` (e.g. ``100mbit``), ``burst`` bytes, ``latency`` µs."""
    with _link(ns, iface) as (ipr, index):
        try:
            ipr.tc("replace", "tbf", index=index, rate=rate, burst=burst, latency=latency)
        except NetlinkError as exc:
            raise _cannot(ns, iface, exc) from None
