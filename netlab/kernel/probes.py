"""Kernel feature probes: try the real thing in a scratch namespace and report what failed.

Each probe is a function of an ``IPRoute`` bound to the scratch namespace and the
namespace's name; it succeeds or raises the kernel's own error. :func:`run` creates the
namespace, runs the probes in it, and removes it again (stopping anything left running),
so the host's namespace is never touched. :mod:`netlab.doctor` says what each one means.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

from pyroute2 import IPVS, IPRoute

from netlab.kernel import ipset as _ipset
from netlab.kernel import iptables as _iptables
from netlab.kernel import netns, processes
from netlab.kernel import nft as _nft

ProbeFn = Callable[[IPRoute, str], None]


def link(kind: str, **extra: object) -> ProbeFn:
    """Adding a link of ``kind`` works (e.g. ``link("vxlan", vxlan_id=1)``)."""

    def probe(ipr: IPRoute, ns: str) -> None:
        ipr.link("add", ifname=f"probe-{kind}"[:15], kind=kind, **extra)

    return probe


def qdisc(kind: str, **params: object) -> ProbeFn:
    """Attaching a qdisc of ``kind`` to a veth works."""

    def probe(ipr: IPRoute, ns: str) -> None:
        ipr.link("add", ifname=f"q-{kind}", kind="veth", peer={"ifname": f"q-{kind}-p"})
        ipr.tc("add", kind, index=ipr.link_lookup(ifname=f"q-{kind}")[0], **params)

    return probe


def ipvs(ipr: IPRoute, ns: str) -> None:
    """The IPVS generic-netlink family answers in the namespace."""
    netns.run_in(ns, lambda: IPVS()).close()


def iptables(rules: str) -> ProbeFn:
    """``rules`` (iptables-save format) load with iptables-restore."""

    def probe(ipr: IPRoute, ns: str) -> None:
        _iptables.restore(ns, rules)

    return probe


def ipset_match(ipr: IPRoute, ns: str) -> None:
    """A ``hash:net`` ipset can be made and an iptables rule can match it (``-m set``)."""
    _ipset.create_net(ns, "netlab-probe", ("10.0.0.0/8",))
    _iptables.restore(ns, "*nat\n-A POSTROUTING -m set --match-set netlab-probe src -m set ! --match-set netlab-probe dst -j MASQUERADE\nCOMMIT\n")


def nft(script: str) -> ProbeFn:
    """``script`` (``nft -f`` statements) loads as one transaction."""

    def probe(ipr: IPRoute, ns: str) -> None:
        _nft.load(ns, script)

    return probe


def run(ns: str, probes: Sequence[ProbeFn]) -> list[BaseException | None]:
    """Run ``probes`` in a new namespace ``ns`` (the caller journals it first); return each
    one's error, or None where it worked. The namespace is always removed afterwards."""
    found: list[BaseException | None] = []
    try:
        sock = netns.create(ns, then=lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0))
        with IPRoute(use_socket=sock) as ipr:
            for probe in probes:
                try:
                    probe(ipr, ns)
                    found.append(None)
                except Exception as exc:  # the probe's failure *is* the finding
                    found.append(exc)
    finally:
        processes.stop_in([ns])
        netns.remove(ns)
    return found
