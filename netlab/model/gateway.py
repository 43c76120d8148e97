"""Gateway API as netlab reads it: ``gateway.networking.k8s.io/v1`` GatewayClass, Gateway and
HTTPRoute, as NGINX Gateway Fabric serves them. Pure: nothing here touches the kernel.

The schema follows the Gateway API's own CRDs (``config/crd/standard`` of
kubernetes-sigs/gateway-api, apis/v1 ``gateway_types.go``, ``httproute_types.go``,
``shared_types.go``) and their validation (listener names are SectionNames, hostnames are
DNS names with at most a leading ``*.``, paths start with ``/``, at most 16 backendRefs...).
What netlab does not model is refused with the field named (``extra="forbid"``: a key it
does not know is an error, never dropped silently); fields that have no effect on the
packets (``description``, ``addresses``, ``infrastructure``, ``timeouts``...) are listed by
:func:`ignored_fields` and reported by ``netlab apply``.

Strings that reach nginx.conf are held to a stricter alphabet than the API allows (paths,
header names and values, hostnames): netlab refuses what it could not render literally,
rather than escape it, so a hostile manifest can never add nginx directives.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GATEWAY_API = "gateway.networking.k8s.io/v1"
NGF_CONTROLLER = "gateway.nginx.org/nginx-gateway-controller"  # NGINX Gateway Fabric's controllerName
NGF_CLASS = "nginx"  # the GatewayClass NGF's Helm chart installs

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_DNS1123 = re.compile(rf"^{_LABEL}$")
# netlab's alphabet for what is written into nginx.conf
_PATH = re.compile(r"^/[A-Za-z0-9._~\-/%]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,256}$")  # nginx's $http_<name> (underscores_in_headers off)
_QUERY_NAME = re.compile(r"^[A-Za-z0-9_]{1,256}$")  # nginx's $arg_<name>
_VALUE = re.compile(r"^[A-Za-z0-9 ._~:/?#\[\]@!&'()*+,=%-]{1,4096}$")  # no quote, backslash, $, {, }, ;
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")

# fields with no effect on what netlab's nginx does: listed as ignored, never silently dropped
IGNORED = {
    "GatewayClass": ("spec.description", "spec.parametersRef"),
    "Gateway": ("spec.addresses", "spec.infrastructure", "spec.backendTLS", "spec.allowedListeners"),
    "HTTPRoute": ("spec.rules[].name", "spec.rules[].timeouts", "spec.rules[].retry", "spec.rules[].sessionPersistence"),
}


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _subdomain(kind: str, value: str) -> str:
    if not _SUBDOMAIN.fullmatch(value) or len(value) > 253:
        raise ValueError(f"invalid {kind} {value!r}: a lowercase DNS subdomain (letters, digits, '-' and '.')")
    return value


def check_hostname(value: str) -> str:
    """A Gateway API Hostname: a DNS name, optionally with a leading ``*.``; no IP, no port."""
    bare = value[2:] if value.startswith("*.") else value
    if "*" in bare or not _SUBDOMAIN.fullmatch(bare) or len(value) > 253 or re.fullmatch(r"[\d.]+", value):
        raise ValueError(f"invalid hostname {value!r}: a lowercase DNS name (e.g. foo.example.com), optionally with a leading '*.'")
    return value


def check_path(value: str) -> str:
    """An HTTPRoute path (match or replacement), in netlab's alphabet for nginx.conf."""
    if not _PATH.fullmatch(value) or len(value) > 1024:
        raise ValueError(f"path {value!r}: an absolute path of letters, digits and . _ ~ - / % (netlab renders no other into nginx.conf)")
    for bad in ("//", "/./", "/../", "%2f", "%2F"):
        if bad in value:
            raise ValueError(f"path {value!r} must not contain {bad!r} (the Gateway API's validation)")
    if value.endswith(("/..", "/.")):
        raise ValueError(f"path {value!r} must not end with '/.' or '/..'")
    return value


def check_value(kind: str, value: str) -> str:
    if not _VALUE.fullmatch(value):
        raise ValueError(
            f"{kind} {value!r}: netlab renders only printable ASCII without quotes, backslashes, '$', '{{', '}}' or ';' "
            "(1-4096 characters) into nginx.conf"
        )
    return value


# --------------------------------------------------------------------------- GatewayClass
class GatewayClass(_Spec):
    name: str
    controller_name: str = Field(alias="controllerName")

    @field_validator("controller_name")
    @classmethod
    def _controller(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+)", value) or len(value) > 253:
            raise ValueError(f"invalid controllerName {value!r}: a domain-prefixed path such as {NGF_CONTROLLER}")
        return value


# --------------------------------------------------------------------------- Gateway
class SecretObjectReference(_Spec):
    group: str = ""
    kind: str = "Secret"
    name: str
    namespace: str | None = None

    @model_validator(mode="after")
    def _secret(self) -> SecretObjectReference:
        if self.group not in ("", "core") or self.kind != "Secret":
            raise ValueError(f"certificateRefs to {self.group or 'core'}/{self.kind} are not modelled (netlab reads kubernetes.io/tls Secrets)")
        _subdomain("Secret name", self.name)
        if self.namespace is not None and not _DNS1123.fullmatch(self.namespace):
            raise ValueError(f"invalid namespace {self.namespace!r}")
        return self


class GatewayTLSConfig(_Spec):
    mode: Literal["Terminate"] = "Terminate"  # Passthrough needs TLSRoute: not modelled
    certificate_refs: tuple[SecretObjectReference, ...] = Field((), alias="certificateRefs", max_length=64)
    options: dict[str, str] = Field(default_factory=dict)


class RouteNamespaces(_Spec):
    from_: Literal["Same", "All"] = Field("Same", alias="from")  # Selector: namespace labels are not modelled


class RouteGroupKind(_Spec):
    group: str = "gateway.networking.k8s.io"
    kind: str


class AllowedRoutes(_Spec):
    namespaces: RouteNamespaces = RouteNamespaces()
    kinds: tuple[RouteGroupKind, ...] = ()


class Listener(_Spec):
    name: str
    hostname: str | None = None
    port: int = Field(ge=1, le=65535)
    protocol: Literal["HTTP", "HTTPS"]  # TLS, TCP, UDP: NGF serves them with other routes, not modelled
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes = Field(AllowedRoutes(), alias="allowedRoutes")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 253 or not _SUBDOMAIN.fullmatch(value):
            raise ValueError(f"invalid listener name {value!r}: a SectionName (lowercase letters, digits, '-' and '.')")
        return value

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        return check_hostname(value) if value is not None else None

    @model_validator(mode="after")
    def _tls(self) -> Listener:
        if self.protocol == "HTTPS" and (self.tls is None or not self.tls.certificate_refs):
            raise ValueError("an HTTPS listener needs tls.certificateRefs (mode Terminate)")
        if self.protocol == "HTTP" and self.tls is not None:
            raise ValueError("tls is for HTTPS listeners (the Gateway API's validation refuses it on HTTP)")
        return self


class GatewaySpec(_Spec):
    gateway_class_name: str = Field(alias="gatewayClassName")
    listeners: tuple[Listener, ...] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _unique(self) -> GatewaySpec:
        names = [listener.name for listener in self.listeners]
        if len(set(names)) != len(names):
            raise ValueError("listener names must be unique within a Gateway")
        seen: dict[tuple[int, str], str] = {}
        protocols: dict[int, str] = {}
        for listener in self.listeners:
            if protocols.setdefault(listener.port, listener.protocol) != listener.protocol:
                raise ValueError(f"port {listener.port} has both HTTP and HTTPS listeners (Conflicted ProtocolConflict: not modelled)")
            key = (listener.port, listener.hostname or "")
            if key in seen:
                raise ValueError(f"listeners {seen[key]} and {listener.name} have the same port and hostname (Conflicted HostnameConflict: not modelled)")
            seen[key] = listener.name
        return self


class Gateway(_Spec):
    name: str
    namespace: str = "default"
    spec: GatewaySpec

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# --------------------------------------------------------------------------- HTTPRoute
class ParentReference(_Spec):
    group: str = "gateway.networking.k8s.io"
    kind: str = "Gateway"
    namespace: str | None = None
    name: str
    section_name: str | None = Field(None, alias="sectionName")
    port: int | None = Field(None, ge=1, le=65535)

    @model_validator(mode="after")
    def _gateway(self) -> ParentReference:
        if (self.group, self.kind) != ("gateway.networking.k8s.io", "Gateway"):
            raise ValueError(f"parentRefs to {self.group}/{self.kind} are not modelled (netlab attaches routes to Gateways)")
        return self


class HTTPPathMatch(_Spec):
    type: Literal["Exact", "PathPrefix"] = "PathPrefix"  # RegularExpression: implementation-specific, not modelled
    value: str = "/"

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        return check_path(value)


class HTTPHeaderMatch(_Spec):
    type: Literal["Exact"] = "Exact"  # RegularExpression: implementation-specific, not modelled
    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError(f"header name {value!r}: letters, digits and '-' (nginx drops headers with '_'; netlab renders no others)")
        return value

    @field_validator("value")
    @classmethod
    def _v(cls, value: str) -> str:
        return check_value("header value", value)


class HTTPQueryParamMatch(_Spec):
    type: Literal["Exact"] = "Exact"
    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _QUERY_NAME.fullmatch(value):
            raise ValueError(f"query parameter name {value!r}: letters, digits and '_' (nginx's $arg_<name>)")
        return value

    @field_validator("value")
    @classmethod
    def _v(cls, value: str) -> str:
        return check_value("query parameter value", value)


class HTTPRouteMatch(_Spec):
    path: HTTPPathMatch = HTTPPathMatch()
    headers: tuple[HTTPHeaderMatch, ...] = Field((), max_length=16)
    query_params: tuple[HTTPQueryParamMatch, ...] = Field((), alias="queryParams", max_length=16)
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] | None = None

    @model_validator(mode="after")
    def _unique(self) -> HTTPRouteMatch:
        names = [h.name.lower() for h in self.headers]
        if len(set(names)) != len(names):
            raise ValueError("header match names must be unique (case-insensitively)")
        if len({q.name for q in self.query_params}) != len(self.query_params):
            raise ValueError("query parameter match names must be unique")
        return self


class HTTPHeader(_Spec):
    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError(f"header name {value!r}: letters, digits and '-'")
        return value

    @field_validator("value")
    @classmethod
    def _v(cls, value: str) -> str:
        return check_value("header value", value)


class HTTPHeaderFilter(_Spec):
    set: tuple[HTTPHeader, ...] = Field((), max_length=16)
    add: tuple[HTTPHeader, ...] = Field((), max_length=16)
    remove: tuple[str, ...] = Field((), max_length=16)

    @field_validator("remove")
    @classmethod
    def _remove(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r}: letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _once(self) -> HTTPHeaderFilter:
        names = [h.name.lower() for h in (*self.set, *self.add)] + [n.lower() for n in self.remove]
        if len(set(names)) != len(names):
            raise ValueError("a header may appear once across set, add and remove")
        return self


class HTTPPathModifier(_Spec):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = Field(None, alias="replaceFullPath")
    replace_prefix_match: str | None = Field(None, alias="replacePrefixMatch")

    @model_validator(mode="after")
    def _one(self) -> HTTPPathModifier:
        wanted = self.replace_full_path if self.type == "ReplaceFullPath" else self.replace_prefix_match
        other = self.replace_prefix_match if self.type == "ReplaceFullPath" else self.replace_full_path
        if wanted is None or other is not None:
            raise ValueError(f"type {self.type} needs {'replaceFullPath' if self.type == 'ReplaceFullPath' else 'replacePrefixMatch'} and only it")
        check_path(wanted)
        return self

    @property
    def replacement(self) -> str:
        return self.replace_full_path if self.type == "ReplaceFullPath" else self.replace_prefix_match  # type: ignore[return-value]


class HTTPRequestRedirectFilter(_Spec):
    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    path: HTTPPathModifier | None = None
    port: int | None = Field(None, ge=1, le=65535)
    status_code: Literal[301, 302, 303, 307, 308] = Field(302, alias="statusCode")

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("*") or check_hostname(value) != value):
            raise ValueError(f"invalid redirect hostname {value!r}: no wildcard")
        return value


class HTTPURLRewriteFilter(_Spec):
    hostname: str | None = None
    path: HTTPPathModifier | None = None

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("*"):
            raise ValueError(f"invalid rewrite hostname {value!r}: no wildcard")
        return check_hostname(value) if value is not None else None


class HTTPRouteFilter(_Spec):
    # RequestMirror, ResponseHeaderModifier, CORS, ExtensionRef: not modelled (refused by name)
    type: Literal["RequestHeaderModifier", "RequestRedirect", "URLRewrite"]
    request_header_modifier: HTTPHeaderFilter | None = Field(None, alias="requestHeaderModifier")
    request_redirect: HTTPRequestRedirectFilter | None = Field(None, alias="requestRedirect")
    url_rewrite: HTTPURLRewriteFilter | None = Field(None, alias="urlRewrite")

    @model_validator(mode="after")
    def _matching(self) -> HTTPRouteFilter:
        fields = {"RequestHeaderModifier": self.request_header_modifier, "RequestRedirect": self.request_redirect, "URLRewrite": self.url_rewrite}
        given = [k for k, v in fields.items() if v is not None]
        if given != [self.type]:
            key = self.type[0].lower() + self.type[1:]
            raise ValueError(f"filter type {self.type} needs {key} and no other filter configuration (given: {', '.join(given) or 'none'})")
        return self


class HTTPBackendRef(_Spec):
    group: str = ""
    kind: str = "Service"
    name: str
    namespace: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    weight: int = Field(1, ge=0, le=1000000)

    @model_validator(mode="after")
    def _service(self) -> HTTPBackendRef:
        if len(self.name) > 253 or not _SUBDOMAIN.fullmatch(self.name):
            raise ValueError(f"invalid backend name {self.name!r}")
        if self.namespace is not None and not _DNS1123.fullmatch(self.namespace):
            raise ValueError(f"invalid namespace {self.namespace!r}")
        if self.group in ("", "core") and self.kind == "Service" and self.port is None:
            raise ValueError("port is required when the backend is a Service (the Gateway API's validation)")
        return self


class HTTPRouteRule(_Spec):
    matches: tuple[HTTPRouteMatch, ...] = Field((HTTPRouteMatch(),), max_length=64)
    filters: tuple[HTTPRouteFilter, ...] = Field((), max_length=16)
    backend_refs: tuple[HTTPBackendRef, ...] = Field((), alias="backendRefs", max_length=16)

    @model_validator(mode="after")
    def _filters(self) -> HTTPRouteRule:
        types = [f.type for f in self.filters]
        if "RequestRedirect" in types and "URLRewrite" in types:
            raise ValueError("RequestRedirect and URLRewrite cannot be used together in one rule")
        for kind in ("RequestRedirect", "URLRewrite", "RequestHeaderModifier"):
            if types.count(kind) > 1:
                raise ValueError(f"{kind} may appear once in a rule's filters")
        for f in self.filters:
            path = (f.request_redirect or f.url_rewrite).path if f.type != "RequestHeaderModifier" else None  # type: ignore[union-attr]
            if path is not None and path.type == "ReplacePrefixMatch" and any(m.path.type != "PathPrefix" for m in self.matches):
                raise ValueError("ReplacePrefixMatch needs every match of the rule to be a PathPrefix match")
        return self


class HTTPRouteSpec(_Spec):
    parent_refs: tuple[ParentReference, ...] = Field(alias="parentRefs", min_length=1, max_length=32)
    hostnames: tuple[str, ...] = Field((), max_length=16)
    rules: tuple[HTTPRouteRule, ...] = Field((HTTPRouteRule(),), max_length=16)

    @field_validator("hostnames")
    @classmethod
    def _hostnames(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_hostname(h) for h in value)


class HTTPRoute(_Spec):
    name: str
    namespace: str = "default"
    annotations: dict[str, str] = Field(default_factory=dict)  # metadata.annotations: ExternalDNS reads its own
    spec: HTTPRouteSpec

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def ignored_fields(kind: str, data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``data`` (a document's ``spec``) without the fields netlab does not model but that
    change nothing it renders, and their paths (``spec.rules[0].timeouts``...)."""
    spec = dict(data)
    ignored: list[str] = []
    for path in IGNORED.get(kind, ()):
        parts = path.split(".")[1:]
        if parts[0].endswith("[]"):
            items = spec.get(parts[0][:-2])
            if isinstance(items, list):
                new = []
                for i, item in enumerate(items):
                    if isinstance(item, dict) and parts[1] in item:
                        item = {k: v for k, v in item.items() if k != parts[1]}
                        ignored.append(f"spec.{parts[0][:-2]}[{i}].{parts[1]}")
                    new.append(item)
                spec[parts[0][:-2]] = new
        elif parts[0] in spec:
            spec.pop(parts[0])
            ignored.append(path)
    return spec, ignored
