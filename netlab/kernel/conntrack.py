"""Connection tracking in a lab's namespace, over ctnetlink (pyroute2's ``Conntrack``).

kube-proxy deletes the conntrack entries of a UDP endpoint that went away (and of a UDP
Service that just got its first endpoint), so a client that keeps sending from the same
port is NATed afresh to a live endpoint instead of into the void (kubernetes
pkg/proxy/conntrack/cleanup.go as of v1.33: ``CleanStaleEntries`` lists the table over netlink
and deletes the stale entries, as this module does). Which entries are stale is decided by
:func:`netlab.services.stale_udp.stale_udp_flows`; this module only lists and deletes them,
inside the node's namespace, never the host's.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from pyroute2 import Conntrack
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from netlab.kernel import netns


@dataclass(frozen=True)
class Flow:
    """One conntrack entry: the original direction and where replies come from (after DNAT,
    the endpoint)."""

    src: str
    sport: int
    dst: str
    dport: int
    reply_src: str
    reply_sport: int


def _udp_flows() -> list[Flow]:
    with Conntrack() as ct:
        out = []
        for entry in ct.dump_entries(tuple_orig=NFCTAttrTuple(proto=socket.IPPROTO_UDP)):
            o, r = entry.tuple_orig, entry.tuple_reply
            out.append(Flow(o.saddr, o.sport, o.daddr, o.dport, r.saddr, r.sport))
        return out


def udp_flows(ns: str) -> list[Flow]:
    """The UDP entries of namespace ``ns``'s conntrack table (``conntrack -L -p udp``)."""
    return netns.run_in(ns, _udp_flows)


def delete_udp(ns: str, flows: list[Flow]) -> int:
    """Delete these UDP entries in ``ns`` (``conntrack -D``); returns how many were still there."""

    def inside() -> int:
        deleted = 0
        with Conntrack() as ct:
            for flow in flows:
                tuple_orig = NFCTAttrTuple(saddr=flow.src, daddr=flow.dst, proto=socket.IPPROTO_UDP, sport=flow.sport, dport=flow.dport)
                try:
                    ct.delete(tuple_orig)
                except NetlinkError as exc:
                    if exc.code != errno.ENOENT:  # gone meanwhile (timed out): nothing to do
                        raise
                    continue
                deleted += 1
        return deleted

    return netns.run_in(ns, inside) if flows else 0
