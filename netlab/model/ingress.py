"""Kubernetes Ingress as netlab reads it: ``networking.k8s.io/v1`` Ingress, IngressClass, and
the ingress-nginx annotations netlab models. Pure: nothing here touches the kernel.

The schema uses Kubernetes' own key names and the API server's validation rules
(``pkg/apis/networking/validation``): ``pathType`` is required, Exact and Prefix paths are
absolute and free of ``//``, ``/./``, ``/../`` and ``%2f``, hosts are DNS subdomains with at
most a leading ``*.``, a backend names a Service and exactly one of a port number or name.
What the ingress-nginx controller adds on top (its admission checks, how it reads its
annotations) is in :func:`nginx_path_problem` and :func:`parse_annotations`.

The topology's ``ingressController:`` key (:class:`IngressControllerSpec`) says whether a lab
runs the ingress-nginx controller: ``auto`` (the default: installed, like a cluster add-on,
the moment an Ingress it serves is applied), ``true`` (at ``netlab up``) or ``false`` (never).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netlab.model import external_dns
from netlab.model.service import NODEPORT_RANGE

NGINX_CLASS = "nginx"  # the IngressClass the controller installs (ingress-nginx's default)
NGINX_CONTROLLER = "k8s.io/ingress-nginx"  # its spec.controller
CLASS_ANNOTATION = "kubernetes.io/ingress.class"  # the deprecated way to pick a class
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
PREFIX = "nginx.ingress.kubernetes.io/"
PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
BACKEND_PROTOCOLS = ("HTTP", "HTTPS", "AUTO_HTTP", "GRPC", "GRPCS")  # FCGI: not modelled
BOOKKEEPING_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
# ingress-nginx's admission check with strict-validate-path-type (on by default since v1.12):
# internal/ingress/inspector/rules.go validPathType
_NGINX_PATH = re.compile(r"^/[A-Za-z0-9._\-/]*$")
# internal/ingress/annotations/parser/validators.go RegexPathWithCapture
_REWRITE_TARGET = re.compile(r"^/?[\-._~a-zA-Z0-9/:$]*$")


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _dns_label(kind: str, value: str, pattern: re.Pattern[str] = _DNS1123) -> str:
    if not pattern.fullmatch(value) or len(value) > 63:
        raise ValueError(f"invalid {kind} {value!r}: a DNS label (lowercase letters, digits and '-', at most 63)")
    return value


def _subdomain(kind: str, value: str) -> str:
    if not _SUBDOMAIN.fullmatch(value) or len(value) > 253:
        raise ValueError(f"invalid {kind} {value!r}: a lowercase DNS subdomain (letters, digits, '-' and '.')")
    return value


def check_host(value: str) -> str:
    """An Ingress host: a DNS subdomain, optionally ``*.`` first; no IP address, no port."""
    bare = value[2:] if value.startswith("*.") else value
    if _IPV4.fullmatch(value):
        raise ValueError(f"host {value!r} is an IP address; Ingress hosts are DNS names (leave host out to match any)")
    if "*" in bare or not _SUBDOMAIN.fullmatch(bare) or len(value) > 253:
        raise ValueError(
            f"invalid host {value!r}: a lowercase DNS name (e.g. foo.example.com), optionally with a leading '*.'"
        )
    return value


class ServiceBackendPort(_Spec):
    number: int | None = Field(None, ge=1, le=65535)
    name: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ServiceBackendPort:
        if (self.number is None) == (self.name is None):
            raise ValueError("give exactly one of port.number or port.name")
        if self.name is not None and (not _PORT_NAME.fullmatch(self.name) or len(self.name) > 15):
            raise ValueError(f"invalid port name {self.name!r}: lowercase letters, digits and '-', at most 15")
        return self

    def __str__(self) -> str:
        return str(self.number) if self.number is not None else str(self.name)


class IngressServiceBackend(_Spec):
    name: str
    port: ServiceBackendPort

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns_label("service name", value, _DNS1035)


class IngressBackend(_Spec):
    service: IngressServiceBackend | None = None
    resource: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _service(self) -> IngressBackend:
        if self.resource is not None:
            raise ValueError("resource backends are not modelled by netlab (ingress-nginx serves Service backends): use service")
        if self.service is None:
            raise ValueError("a backend needs service: {name: ..., port: {number: ...}}")
        return self


class HTTPIngressPath(_Spec):
    path: str = ""
    path_type: Literal["Exact", "Prefix", "ImplementationSpecific"] = Field(alias="pathType")
    backend: IngressBackend

    @model_validator(mode="after")
    def _path(self) -> HTTPIngressPath:
        path = self.path
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in path):
            raise ValueError(f"path {path!r} must not contain whitespace or control characters")
        if self.path_type in ("Exact", "Prefix"):
            if not path.startswith("/"):
                raise ValueError(f"path {path!r} must be an absolute path (start with '/') for pathType {self.path_type}")
            for bad in ("//", "/./", "/../", "%2f", "%2F"):
                if bad in path:
                    raise ValueError(f"path {path!r} must not contain {bad!r} (pathType {self.path_type})")
            for bad in ("/..", "/."):
                if path.endswith(bad):
                    raise ValueError(f"path {path!r} must not end with {bad!r} (pathType {self.path_type})")
        elif path and not path.startswith("/"):
            raise ValueError(f"path {path!r} must be an absolute path (start with '/')")
        return self


class HTTPIngressRuleValue(_Spec):
    paths: tuple[HTTPIngressPath, ...]

    @field_validator("paths")
    @classmethod
    def _some(cls, value: tuple[HTTPIngressPath, ...]) -> tuple[HTTPIngressPath, ...]:
        if not value:
            raise ValueError("at least one path is needed")
        return value


class IngressRule(_Spec):
    host: str = ""
    http: HTTPIngressRuleValue | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value) if value else value


class IngressTLS(_Spec):
    hosts: tuple[str, ...] = ()
    secret_name: str = Field("", alias="secretName")

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_host(h) for h in value)

    @field_validator("secret_name")
    @classmethod
    def _secret(cls, value: str) -> str:
        return _subdomain("secretName", value) if value else value


class IngressSpec(_Spec):
    ingress_class_name: str | None = Field(None, alias="ingressClassName")
    default_backend: IngressBackend | None = Field(None, alias="defaultBackend")
    tls: tuple[IngressTLS, ...] = ()
    rules: tuple[IngressRule, ...] = ()

    @field_validator("ingress_class_name")
    @classmethod
    def _class(cls, value: str | None) -> str | None:
        return _subdomain("ingressClassName", value) if value else value

    @model_validator(mode="after")
    def _something(self) -> IngressSpec:
        if not self.rules and self.default_backend is None:
            raise ValueError("either defaultBackend or rules must be specified (Kubernetes' rule)")
        return self


class Ingress(_Spec):
    """A ``networking.k8s.io/v1`` Ingress: metadata (name, namespace, annotations) and its spec."""

    name: str
    namespace: str = "default"
    annotations: dict[str, str] = Field(default_factory=dict)
    spec: IngressSpec

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _subdomain("Ingress name", value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return _dns_label("namespace", value)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def class_name(self) -> str | None:
        """The class this Ingress asks for: ``spec.ingressClassName``, else the deprecated annotation."""
        return self.spec.ingress_class_name or self.annotations.get(CLASS_ANNOTATION) or None


class IngressClass(_Spec):
    """A ``networking.k8s.io/v1`` IngressClass: which controller serves Ingresses of this class."""

    name: str
    controller: str
    default: bool = False  # ingressclass.kubernetes.io/is-default-class: "true"


# --------------------------------------------------------------------------- annotations
@dataclass(frozen=True)
class NginxAnnotations:
    """The ingress-nginx annotations netlab models, with ingress-nginx's defaults
    (internal/ingress/annotations/{rewrite,backendprotocol}; ssl-redirect defaults to true)."""

    rewrite_target: str = ""
    use_regex: bool = False
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    preserve_trailing_slash: bool = False
    backend_protocol: str = "HTTP"
    ignored: tuple[str, ...] = field(default=())  # annotations netlab does not model, by key


MODELLED = {
    "rewrite-target", "use-regex", "ssl-redirect", "force-ssl-redirect", "preserve-trailing-slash", "backend-protocol",
}


class AnnotationProblem(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _bool(key: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1", "t"):
        return True
    if text in ("false", "0", "f"):
        return False
    raise AnnotationProblem(key, f"expected \"true\" or \"false\" (got {value!r})")


def parse_annotations(annotations: dict[str, str]) -> NginxAnnotations:
    """Read an Ingress's annotations as ingress-nginx does. A modelled annotation with an
    invalid value raises :class:`AnnotationProblem` (ingress-nginx would log a warning and use
    its default; netlab refuses, so the experiment is not silently different); anything else
    is returned in ``ignored``, never dropped silently. ExternalDNS's Ingress annotations
    (:data:`netlab.model.external_dns.INGRESS_KEYS`) are read by ExternalDNS, not ingress-nginx."""
    values: dict[str, Any] = {}
    ignored = []
    for key, raw in sorted(annotations.items()):
        value = str(raw)
        if key in BOOKKEEPING_ANNOTATIONS or key in (CLASS_ANNOTATION,) or key in external_dns.INGRESS_KEYS:
            continue
        name = key[len(PREFIX):] if key.startswith(PREFIX) else None
        if name not in MODELLED:
            ignored.append(key)
            continue
        if "\n" in value or "\r" in value:
            raise AnnotationProblem(key, "must be a single line")
        if name == "rewrite-target":
            if not _REWRITE_TARGET.fullmatch(value):
                raise AnnotationProblem(
                    key, f"{value!r} is not a path with capture groups such as /$2 (ingress-nginx allows letters, digits, -._~/:$)"
                )
            values["rewrite_target"] = value
        elif name == "backend-protocol":
            proto = value.strip().upper()
            if proto not in BACKEND_PROTOCOLS:
                extra = " (FCGI is not modelled)" if proto == "FCGI" else ""
                raise AnnotationProblem(key, f"{value!r} is not one of {', '.join(BACKEND_PROTOCOLS)}{extra}")
            values["backend_protocol"] = proto
        else:
            values[name.replace("-", "_")] = _bool(key, value)
    return NginxAnnotations(**values, ignored=tuple(ignored))


def nginx_path_problem(path: str, path_type: str) -> str | None:
    """ingress-nginx's admission check of a path (strict-validate-path-type, on by default):
    Exact and Prefix paths may hold only letters, digits and ``. _ - /``; regular expressions
    need pathType ImplementationSpecific (with use-regex or rewrite-target)."""
    if path and path_type != "ImplementationSpecific" and not _NGINX_PATH.fullmatch(path):
        return (
            f"ingress contains invalid paths: path {path} cannot be used with pathType {path_type} "
            "(ingress-nginx's admission check; a regular expression needs pathType ImplementationSpecific)"
        )
    return None


# --------------------------------------------------------------------------- the topology's switch
class IngressControllerSpec(_Spec):
    """``ingressController:`` in a topology: the ingress-nginx controller as a cluster add-on."""

    enabled: Literal["auto", True, False] = "auto"
    type: Literal["NodePort", "LoadBalancer"] = "NodePort"  # LoadBalancer: an address from network.loadBalancerPool
    http_node_port: int | None = Field(None, alias="httpNodePort")
    https_node_port: int | None = Field(None, alias="httpsNodePort")
    external_traffic_policy: Literal["Cluster", "Local"] = Field("Cluster", alias="externalTrafficPolicy")
    node: str | None = None  # where the controller pod runs (default: the least loaded node)
    # the controller ConfigMap's use-proxy-protocol (netlab reads no ConfigMap: the topology says it):
    # nginx listens with proxy_protocol and takes the client address from the header
    use_proxy_protocol: bool = Field(False, alias="useProxyProtocol")

    @field_validator("http_node_port", "https_node_port")
    @classmethod
    def _node_port(cls, value: int | None) -> int | None:
        if value is not None and value not in NODEPORT_RANGE:
            raise ValueError(f"nodePort {value} is outside the NodePort range 30000-32767")
        return value

    @model_validator(mode="after")
    def _ports(self) -> IngressControllerSpec:
        if self.http_node_port is not None and self.http_node_port == self.https_node_port:
            raise ValueError(f"httpNodePort and httpsNodePort are both {self.http_node_port}")
        return self
