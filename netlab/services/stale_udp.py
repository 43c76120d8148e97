"""kube-proxy's UDP conntrack cleanup: which entries of a node's table point nowhere now.

UDP has no connection to close, so conntrack keeps NATing a client's datagrams to the
endpoint it first picked for as long as the client keeps sending (the entry's timeout is
refreshed by every datagram). When that endpoint goes away, kube-proxy deletes the entries
after it has written the new rules (kubernetes pkg/proxy/conntrack/cleanup.go, v1.30,
``CleanStaleEntries``):

- a deleted UDP endpoint: entries whose original destination is the Service's ClusterIP,
  an external IP or a load-balancer IP and whose reply source is the endpoint
  (``filterForNAT``), and entries to the NodePort whose reply source is the endpoint
  (``filterForPortNAT``);
- a UDP Service that just got endpoints: every entry to its ClusterIP (and NodePort), which
  were created while nothing answered (``deleteStaleServiceConntrackEntries``).

netlab computes the same set from the state instead of the change: a UDP entry to a
Service address (or a NodePort on this node) whose reply does not come from one of the
Service's current endpoints. Pure: the kernel side is :mod:`netlab.kernel.conntrack`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from netlab.kernel.conntrack import Flow
from netlab.model.service import Service
from netlab.services.kubeproxy import Endpoint, endpoint_address


def stale_udp_flows(
    flows: Iterable[Flow],
    services: Sequence[Service],
    endpoints: Mapping[str, Sequence[Endpoint]],
    node_ip: str,
    ingress: Mapping[str, Sequence[str]] | None = None,
) -> list[Flow]:
    """The UDP ``flows`` of a node that kube-proxy would delete, given the Services' current
    ``endpoints`` (``ns/name`` -> ready backends), this node's address and the LB IPs."""
    virtual: dict[tuple[str, int], set[str]] = {}  # (Service address, port) -> live endpoint IPs
    node_ports: dict[int, set[str]] = {}
    for svc in services:
        if svc.type == "ExternalName" or svc.headless or not svc.cluster_ip:
            continue
        for port in svc.ports:
            if port.protocol != "UDP":
                continue
            live = {endpoint_address(svc, port, b).rsplit(":", 1)[0] for b in endpoints.get(svc.key, [])}
            addresses = [str(svc.cluster_ip)]
            if svc.type == "LoadBalancer":
                addresses += list((ingress or {}).get(svc.key, ()))
            for address in addresses:
                virtual[(address, port.port)] = live
            if svc.has_node_ports and port.node_port:
                node_ports[port.node_port] = live
    stale = []
    for flow in flows:
        alive = virtual.get((flow.dst, flow.dport))
        if alive is None and flow.dport in node_ports and (flow.dst == node_ip or flow.dst.startswith("127.")):
            alive = node_ports[flow.dport]
        if alive is not None and flow.reply_src not in alive:
            stale.append(flow)
    return stale
