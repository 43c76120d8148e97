"""kube-proxy's UDP conntrack cleanup: which entries of a node's table point nowhere now.

UDP has no connection to close, so conntrack keeps NATing a client's datagrams to the
endpoint it first picked for as long as the client keeps sending (the entry's timeout is
refreshed by every datagram). When that endpoint goes away, kube-proxy deletes the entries
after it has written the new rules. Kubernetes v1.33 reconciles the whole table after each
sync (kubernetes pkg/proxy/conntrack/cleanup.go, ``CleanStaleEntries``: one netlink dump,
then a delete of the stale entries):

- for every UDP Service port with at least one serving endpoint, the set of its endpoints as
  ``IP:port``; a Service port with none is skipped (its entries stay until it has one);
- an entry is stale when its original destination is the Service's ClusterIP, a
  load-balancer IP or an external IP with the Service's port, and its reply does not come
  from one of those endpoints (IP *and* port);
- or when its original destination *port* is the Service's NodePort (whatever the address,
  as upstream matches it) and its reply does not come from one of those endpoints.

Entries made while the Service had no endpoint (their reply comes from the ClusterIP itself)
are therefore deleted at the first sync after it gets one. Pure: the kernel side is
:mod:`netlab.kernel.conntrack`.
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
    ingress: Mapping[str, Sequence[str]] | None = None,
) -> list[Flow]:
    """The UDP ``flows`` of a node that kube-proxy would delete, given the Services' current
    ``endpoints`` (``ns/name`` -> ready backends) and the LB IPs (``ns/name`` -> ingress IPs)."""
    virtual: dict[tuple[str, int], set[tuple[str, int]]] = {}  # (Service address, port) -> live IP:port
    node_ports: dict[int, set[tuple[str, int]]] = {}
    for svc in services:
        if svc.type == "ExternalName" or svc.headless or not svc.cluster_ip:
            continue
        for port in svc.ports:
            if port.protocol != "UDP":
                continue
            live = {_ip_port(endpoint_address(svc, port, b)) for b in endpoints.get(svc.key, [])}
            if not live:  # "a Service without endpoints does not require to clean the conntrack entries"
                continue
            addresses = [str(svc.cluster_ip)]
            if svc.type == "LoadBalancer":
                addresses += list((ingress or {}).get(svc.key, ()))
            for address in addresses:
                virtual[(address, port.port)] = live
            if svc.has_node_ports and port.node_port:
                node_ports[port.node_port] = live
    stale = []
    for flow in flows:
        reply = (flow.reply_src, flow.reply_sport)
        alive = virtual.get((flow.dst, flow.dport))
        if alive is not None:
            if reply not in alive:
                stale.append(flow)
            continue
        alive = node_ports.get(flow.dport)
        if alive is not None and reply not in alive:
            stale.append(flow)
    return stale


def _ip_port(address: str) -> tuple[str, int]:
    ip, port = address.rsplit(":", 1)
    return ip, int(port)
