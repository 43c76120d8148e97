"""What a capture shows while a BGP outage lasts (the ``bgp_outage`` step).

The step captures ICMP to and from the destination on the source's node (``<node>:eth0``)
from before BIRD stops until after the routes are back, and sorts what it saw into three
phases: *before* the stop, *during* (stop to relearned) and *after*. Echo requests are counted
by the host whose MAC they were sent to (the next hop the node's routing chose: the peer
node, or the gateway once the peer's block is withdrawn and only the default route is left),
replies and ICMP errors by who sent them. So the pcap and the summary show what a person
running tcpdump on the node would see while the route is gone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PHASES = ("before", "during", "after")


def phase(when: float, stop: float, relearned: float) -> str:
    return "before" if when < stop else "during" if when < relearned else "after"


def summarize(frames: Sequence[Any], stop: float, relearned: float, owners: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Per phase, how many echo requests went to which next hop, and what came back.

    ``frames``: :class:`~netlab.observe.capture.Seen` frames (time, direction, scapy packet);
    ``owners``: MAC address (lower case) -> the lab host that owns it."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    out: dict[str, dict[str, int]] = {p: {} for p in PHASES}
    for seen in frames:
        packet = seen.packet
        if ICMP not in packet or IP not in packet:
            continue
        kind = packet[ICMP].type
        if seen.outgoing and kind == 8:
            mac = packet[Ether].dst.lower() if Ether in packet else ""
            key = f"requests to {owners.get(mac, mac or 'an unknown next hop')}"
        elif not seen.outgoing and kind == 0:
            key = "replies"
        elif not seen.outgoing and kind == 3:
            key = f"unreachable from {packet[IP].src}"
        else:
            continue
        counts = out[phase(seen.time, stop, relearned)]
        counts[key] = counts.get(key, 0) + 1
    return out


def describe(summary: Mapping[str, Mapping[str, int]], where: str) -> str:
    """One line: ``at node1:eth0: before: 50 requests to node2, 50 replies; during: ...``."""
    parts = []
    for name in PHASES:
        seen = summary.get(name, {})
        parts.append(f"{name}: " + (", ".join(f"{n} {key}" for key, n in sorted(seen.items(), key=lambda kv: -kv[1])) or "nothing"))
    return f"at {where}: " + "; ".join(parts)
