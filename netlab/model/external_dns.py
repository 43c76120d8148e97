"""ExternalDNS's annotations, as netlab reads them (pure).

The keys are kubernetes-sigs/external-dns v0.21's (``source/annotations/annotations.go``;
v0.22 moved the default prefix to ``external-dns.kubernetes.io/``). Each source reads its own
set: the Service source ``hostname`` and ``ttl``; the Ingress source also
``ingress-hostname-source`` (``source/ingress.go``); the Gateway route sources also
``gateway-hostname-source`` (``source/gateway.go``). Every other ``external-dns`` annotation
(``target``, ``internal-hostname``, provider-specific ones) is listed as ignored where the
object is applied.
"""

from __future__ import annotations

PREFIX = "external-dns.alpha.kubernetes.io/"
HOSTNAME = PREFIX + "hostname"
TTL = PREFIX + "ttl"
INGRESS_HOSTNAME_SOURCE = PREFIX + "ingress-hostname-source"
GATEWAY_HOSTNAME_SOURCE = PREFIX + "gateway-hostname-source"
ANNOTATION_ONLY = "annotation-only"  # the hostname-source annotations' two values
DEFINED_HOSTS_ONLY = "defined-hosts-only"

SERVICE_KEYS = (HOSTNAME, TTL)
INGRESS_KEYS = (HOSTNAME, TTL, INGRESS_HOSTNAME_SOURCE)
ROUTE_KEYS = (HOSTNAME, TTL, GATEWAY_HOSTNAME_SOURCE)

