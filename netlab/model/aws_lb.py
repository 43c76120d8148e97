"""The AWS Load Balancer Controller's Service annotations, as netlab reads them (pure, validated).

Which annotations, their accepted values and their defaults follow
kubernetes-sigs/aws-load-balancer-controller (docs/guide/service/annotations.md, and
pkg/service/model_builder.go for the defaults it fills in), and the AWS documentation for
Network Load Balancer target groups (edit-target-group-attributes: client IP preservation,
deregistration delay):

- the controller claims a ``type: LoadBalancer`` Service with
  ``service.beta.kubernetes.io/aws-load-balancer-type: external`` (or ``nlb-ip``, the
  deprecated spelling of external + ip), or ``loadBalancerClass: service.k8s.aws/nlb``;
- ``...-nlb-target-type``: ``instance`` (the default) or ``ip``;
- ``...-scheme``: ``internal`` (the default) or ``internet-facing``;
- health check (model_builder.go): TCP on the traffic port every 10 s, timeout 10 s,
  healthy and unhealthy thresholds 3; with ``externalTrafficPolicy: Local`` in instance mode,
  HTTP ``/healthz`` on the Service's ``healthCheckNodePort``, interval 10 s, timeout 6 s,
  thresholds 2. ``...-healthcheck-{protocol,port,path,interval,timeout,healthy-threshold,
  unhealthy-threshold}`` override them; AWS's ranges: interval 5-300, timeout 2-120,
  thresholds 2-10;
- ``...-target-group-attributes``: ``preserve_client_ip.enabled`` (AWS's defaults: on for
  instance targets, off for ip targets with TCP) and ``deregistration_delay.timeout_seconds``
  (0-3600, default 300). Other attributes are reported as ignored.
- proxy protocol v2 (pkg/service/model_build_target_group.go ``buildTargetGroupAttributes``):
  the target-group attribute ``proxy_protocol_v2.enabled`` (default false), and the annotation
  ``...-proxy-protocol``, whose only accepted value is ``"*"`` (anything else is the
  controller's error "only value currently supported is *"); the annotation wins over the
  attribute.

Everything here is validated before it can reach iptables, a file or DNS: an invalid value is
a ``ValueError`` naming the annotation (the manifest loader turns it into exit 2 naming the file
and document).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "service.beta.kubernetes.io/aws-load-balancer-"
TYPE = PREFIX + "type"
TARGET_TYPE = PREFIX + "nlb-target-type"
SCHEME = PREFIX + "scheme"
HC_PROTOCOL = PREFIX + "healthcheck-protocol"
HC_PORT = PREFIX + "healthcheck-port"
HC_PATH = PREFIX + "healthcheck-path"
HC_INTERVAL = PREFIX + "healthcheck-interval"
HC_TIMEOUT = PREFIX + "healthcheck-timeout"
HC_HEALTHY = PREFIX + "healthcheck-healthy-threshold"
HC_UNHEALTHY = PREFIX + "healthcheck-unhealthy-threshold"
TG_ATTRIBUTES = PREFIX + "target-group-attributes"
PROXY_PROTOCOL = PREFIX + "proxy-protocol"
LB_CLASS = "service.k8s.aws/nlb"
MODELLED = (TYPE, TARGET_TYPE, SCHEME, HC_PROTOCOL, HC_PORT, HC_PATH, HC_INTERVAL, HC_TIMEOUT, HC_HEALTHY, HC_UNHEALTHY, TG_ATTRIBUTES,
            PROXY_PROTOCOL)
TG_MODELLED = ("preserve_client_ip.enabled", "deregistration_delay.timeout_seconds", "proxy_protocol_v2.enabled")
DEFAULT_DEREGISTRATION_DELAY = 300
_PATH = re.compile(r"/[A-Za-z0-9._~/-]{0,200}")


@dataclass(frozen=True)
class HealthCheck:
    protocol: str  # TCP | HTTP
    port: str  # "traffic-port" or a number
    path: str
    interval: int
    timeout: int
    healthy: int
    unhealthy: int


@dataclass(frozen=True)
class NlbSettings:
    """What the controller builds for one Service (its NLB and target group settings)."""

    target_type: str  # instance | ip
    scheme: str  # internal | internet-facing
    health: HealthCheck
    preserve_client_ip: bool
    deregistration_delay: int
    proxy_protocol: bool  # proxy_protocol_v2.enabled: a PROXY v2 header at the start of each connection to a target
    ignored: tuple[str, ...]  # annotations and target-group attributes netlab does not model


def claimed(annotations: Mapping[str, str], load_balancer_class: str | None) -> bool:
    """Does the AWS Load Balancer Controller reconcile this Service (as an NLB)?"""
    return load_balancer_class == LB_CLASS or annotations.get(TYPE, "").strip() in ("external", "nlb-ip")


def _int(annotations: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    text = annotations.get(key)
    if text is None:
        return default
    if not text.strip().isdigit() or not low <= int(text.strip()) <= high:
        raise ValueError(f"annotation {key}: {text!r} is not a whole number in {low}-{high}")
    return int(text.strip())


def target_group_attributes(text: str) -> dict[str, str]:
    """The stringMap annotation ``k=v,k=v`` (the controller's ParseStringMapAnnotation)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq or not re.fullmatch(r"[a-z0-9_.]+", key.strip()) or not re.fullmatch(r"[A-Za-z0-9_.-]*", value.strip()):
            raise ValueError(f"annotation {TG_ATTRIBUTES}: {item.strip()!r} is not attribute=value")
        out[key.strip()] = value.strip()
    return out


def settings(annotations: Mapping[str, str], external_traffic_policy: str = "Cluster") -> NlbSettings:
    """The NLB settings the annotations ask for, with the controller's and AWS's defaults."""
    kind = annotations.get(TYPE, "external").strip()
    if kind not in ("external", "nlb-ip"):
        raise ValueError(f"annotation {TYPE}: {kind!r}: netlab models the AWS Load Balancer Controller's 'external' (NLB)")
    target = annotations.get(TARGET_TYPE, "ip" if kind == "nlb-ip" else "instance").strip()
    if target not in ("instance", "ip"):
        raise ValueError(f"annotation {TARGET_TYPE}: {target!r} is not instance or ip")
    scheme = annotations.get(SCHEME, "internal").strip()
    if scheme not in ("internal", "internet-facing"):
        raise ValueError(f"annotation {SCHEME}: {scheme!r} is not internal or internet-facing")
    local = external_traffic_policy == "Local" and target == "instance"
    protocol = annotations.get(HC_PROTOCOL, "HTTP" if local else "TCP").strip().upper()
    if protocol not in ("TCP", "HTTP"):
        raise ValueError(f"annotation {HC_PROTOCOL}: {protocol!r}: netlab's health checker speaks TCP or HTTP")
    port = annotations.get(HC_PORT, "health-check-node-port" if local else "traffic-port").strip()
    if port not in ("traffic-port", "health-check-node-port") and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"annotation {HC_PORT}: {port!r} is not traffic-port or a port number (named ports are not modelled)")
    path = annotations.get(HC_PATH, "/healthz" if local else "/").strip()
    if not _PATH.fullmatch(path):
        raise ValueError(f"annotation {HC_PATH}: {path!r} is not an absolute URL path")
    health = HealthCheck(
        protocol, port, path,
        _int(annotations, HC_INTERVAL, 10, 5, 300),
        _int(annotations, HC_TIMEOUT, 6 if local else 10, 2, 120),
        _int(annotations, HC_HEALTHY, 2 if local else 3, 2, 10),
        _int(annotations, HC_UNHEALTHY, 2 if local else 3, 2, 10),
    )
    attributes = target_group_attributes(annotations.get(TG_ATTRIBUTES, ""))
    preserve_text = attributes.get("preserve_client_ip.enabled", "true" if target == "instance" else "false")
    if preserve_text not in ("true", "false"):
        raise ValueError(f"annotation {TG_ATTRIBUTES}: preserve_client_ip.enabled={preserve_text!r} is not true or false")
    delay_text = attributes.get("deregistration_delay.timeout_seconds", str(DEFAULT_DEREGISTRATION_DELAY))
    if not delay_text.isdigit() or int(delay_text) > 3600:
        raise ValueError(f"annotation {TG_ATTRIBUTES}: deregistration_delay.timeout_seconds={delay_text!r} is not 0-3600")
    proxy_text = attributes.get("proxy_protocol_v2.enabled", "false")
    if proxy_text not in ("true", "false"):
        raise ValueError(f"annotation {TG_ATTRIBUTES}: proxy_protocol_v2.enabled={proxy_text!r} is not true or false")
    if PROXY_PROTOCOL in annotations:
        if annotations[PROXY_PROTOCOL] != "*":  # compared as written, as the controller does
            raise ValueError(f"annotation {PROXY_PROTOCOL}: {annotations[PROXY_PROTOCOL]!r}: the only value the controller accepts is \"*\" (proxy protocol v2 on)")
        proxy_text = "true"
    ignored = sorted(k for k in annotations if k.startswith(PREFIX) and k not in MODELLED)
    ignored += sorted(f"{TG_ATTRIBUTES}: {k}" for k in attributes if k not in TG_MODELLED)
    return NlbSettings(target, scheme, health, preserve_text == "true", int(delay_text), proxy_text == "true", tuple(ignored))
