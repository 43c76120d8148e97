"""NGINX Gateway Fabric's configuration for one Gateway, rendered for real nginx. Pure.

This follows nginx/nginx-gateway-fabric (``internal/controller/nginx/config`` and
``internal/controller/state``), minus its njs and agent:

- one ``server`` per listener port and hostname (``servers_template.go``): ``server_name``
  the listener/route hostname intersection, ``~^`` when neither names one
  (``state/dataplane/configuration.go`` ``wildcardHostname``); per port a ``default_server``
  answering 404 (HTTP) or ``ssl_reject_handshake on`` (HTTPS);
- paths (``servers.go`` ``initializeExternalLocations``): Exact ``/p`` is ``location = /p``,
  PathPrefix ``/p`` is ``location /p/`` plus ``location = /p``;
- several matches on one path, or header/query/method matches (``needsInternalLocationsForMatches``):
  NGF's njs (``httpmatches.js``) picks the first match in precedence order and redirects to an
  internal location ``/_ngf-internal-rule<L>-route<M>``. Plain nginx does the same here with
  ``map`` (one per condition, one per match, and one that picks the first match: ``map``
  tries regular expressions in order) and ``rewrite ^ $dispatch last``; no match is 404;
- weights: ``split_clients $request_id`` over the backends' upstreams (``split_clients.go``:
  each backend ``weight/total`` as ``%.2f``, the last one the remainder);
- upstreams ``<namespace>_<service>_<port>`` listing the endpoint pod IPs (``upstreams.go``);
  a Service with no endpoints goes to a server answering 503, an invalid backendRef to
  upstream ``invalid-backend-ref``, a server answering 500 (the Gateway API: "requests that
  would have been sent to an invalid backend MUST receive a 500", for that backend's share);
- headers to the pod (``servers.go`` ``createBaseProxySetHeaders``): Host
  ``$gw_api_compliant_host``, X-Forwarded-For ``$proxy_add_x_forwarded_for``, X-Real-IP,
  X-Forwarded-Proto/Host/Port; RequestHeaderModifier set/add/remove as ``proxy_set_header``
  (add appends to the client's value through a ``map``, as NGF does);
- URLRewrite and RequestRedirect (``createRewritesValForRewriteFilter``,
  ``createReturnAndRewriteConfigForRedirectFilter``): ``rewrite`` lines and ``return <code>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from netlab.model.gateway import Gateway, HTTPBackendRef, HTTPRoute, HTTPRouteMatch, HTTPRouteRule, Listener
from netlab.model.service import Service
from netlab.services.kubeproxy import Endpoint
from netlab.services.nginx import Cert, Paths

INVALID_BACKEND = "invalid-backend-ref"
INTERNAL = "/_ngf-internal"
ANY_HOST = "~^"


@dataclass
class Upstream:
    name: str
    service: str
    port: int
    endpoints: list[str] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)
    problem: str = ""


@dataclass
class Backend:
    ref: HTTPBackendRef
    upstream: str  # an Upstream's name, or INVALID_BACKEND
    service: str
    reason: str = ""  # why invalid: BackendNotFound, InvalidKind, RefNotPermitted
    message: str = ""


@dataclass
class MatchRule:
    route: HTTPRoute
    order: int  # the route's creation order
    rule_index: int
    match_index: int
    rule: HTTPRouteRule
    match: HTTPRouteMatch
    backends: list[Backend]

    def precedence(self) -> tuple[object, ...]:
        """The Gateway API's precedence (httproute_types.go HTTPRouteRule): an Exact path, the
        longest path, a method, most headers, most query parameters; then the oldest route,
        then namespace/name, then rule order."""
        m = self.match
        return (m.path.type != "Exact", -len(m.path.value), m.method is None, -len(m.headers), -len(m.query_params),
                self.order, self.route.key, self.rule_index, self.match_index)

    @property
    def conditional(self) -> bool:
        return bool(self.match.headers or self.match.query_params or self.match.method)


@dataclass
class VServer:
    port: int
    hostname: str  # ANY_HOST: any Host
    protocol: str
    cert: Cert | None = None
    locations: dict[str, list[MatchRule]] = field(default_factory=dict)  # nginx location ("= /p", "/p/") -> rules


@dataclass
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""

    def __str__(self) -> str:
        return f"{self.type}={self.status} ({self.reason}{': ' + self.message if self.message else ''})"


@dataclass
class ListenerStatus:
    name: str
    port: int
    protocol: str
    hostname: str
    attached: int
    conditions: list[Condition]


@dataclass
class ParentStatus:
    gateway: str
    section: str
    conditions: list[Condition]


@dataclass
class Rendered:
    text: str
    servers: list[VServer]
    upstreams: dict[str, Upstream]
    listeners: list[ListenerStatus]
    routes: dict[str, list[ParentStatus]]  # by route key: its status for this Gateway
    warnings: list[str]


# --------------------------------------------------------------------------- attaching routes
def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:]
    return pattern == host


def intersect(listener: str | None, hostnames: Sequence[str]) -> list[str]:
    """The hostnames a route gets on a listener (the Gateway API's hostname intersection)."""
    if not hostnames:
        return [listener or ANY_HOST]
    if listener is None:
        return list(hostnames)
    out = []
    for host in hostnames:
        if host == listener or _host_matches(listener, host.replace("*.", "x.", 1) if host.startswith("*.") else host):
            out.append(host)
        elif _host_matches(host, listener):
            out.append(listener)
    return sorted(set(out), key=out.index)


def _refers(ref_ns: str, gw: Gateway, name: str) -> bool:
    return name == gw.name and ref_ns == gw.namespace


def _allowed(listener: Listener, gw: Gateway, route: HTTPRoute) -> bool:
    if listener.allowed_routes.namespaces.from_ == "Same" and route.namespace != gw.namespace:
        return False
    kinds = listener.allowed_routes.kinds
    return not kinds or any(k.kind == "HTTPRoute" and k.group == "gateway.networking.k8s.io" for k in kinds)


def _resolve(route: HTTPRoute, ref: HTTPBackendRef, services: Mapping[str, Service], endpoints: Mapping[str, list[Endpoint]],
             upstreams: dict[str, Upstream]) -> Backend:
    ns = ref.namespace or route.namespace
    key = f"{ns}/{ref.name}"
    if ref.group not in ("", "core") or ref.kind != "Service":
        return Backend(ref, INVALID_BACKEND, key, "InvalidKind", f"backendRef {ref.group or 'core'}/{ref.kind} {ref.name}: only Services")
    if ns != route.namespace:
        return Backend(ref, INVALID_BACKEND, key, "RefNotPermitted",
                       f"backendRef to Service {key} in another namespace needs a ReferenceGrant (not modelled by netlab)")
    svc = services.get(key)
    if svc is None:
        return Backend(ref, INVALID_BACKEND, key, "BackendNotFound", f"Service {key} not found")
    port = next((p for p in svc.ports if p.port == ref.port and p.protocol == "TCP"), None)
    if port is None:
        known = ", ".join(str(p.port) for p in svc.ports if p.protocol == "TCP") or "none"
        return Backend(ref, INVALID_BACKEND, key, "BackendNotFound", f"Service {key} has no port {ref.port} (its TCP ports: {known})")
    name = f"{ns}_{ref.name}_{ref.port}"
    if name not in upstreams:
        up = Upstream(name, key, int(port.port))
        for ep in endpoints.get(svc.key, []):
            up.endpoints.append(ep.ip if ":" in ep.ip else f"{ep.ip}:{port.target}")
            up.pods.append(ep.pod or "")
        if not up.endpoints:
            up.problem = f"Service {key} has no endpoints"
        upstreams[name] = up
    return Backend(ref, name, key)


def _locations(path: str, path_type: str) -> list[str]:
    if path_type == "Exact":
        return [f"= {path}"]
    if path == "/" or path.endswith("/"):
        return [path]
    return [f"{path}/", f"= {path}"]


def build(
    gw: Gateway, routes: Sequence[HTTPRoute], services: Sequence[Service], endpoints: Mapping[str, list[Endpoint]],
    certs: Mapping[str, Cert],
) -> tuple[list[VServer], dict[str, Upstream], list[ListenerStatus], dict[str, list[ParentStatus]], list[str]]:
    by_key = {s.key: s for s in services}
    upstreams: dict[str, Upstream] = {}
    warnings: list[str] = []
    servers: dict[tuple[int, str], VServer] = {}
    listeners: list[ListenerStatus] = []
    valid: dict[str, Listener] = {}
    for listener in gw.spec.listeners:
        conds = [Condition("Accepted", "True", "Accepted")]
        resolved = Condition("ResolvedRefs", "True", "ResolvedRefs")
        cert = None
        if listener.protocol == "HTTPS":
            assert listener.tls is not None
            secret = listener.tls.certificate_refs[0]
            ns = secret.namespace or gw.namespace
            cert = certs.get(f"{ns}/{secret.name}")
            if ns != gw.namespace:
                resolved = Condition("ResolvedRefs", "False", "RefNotPermitted", f"Secret {ns}/{secret.name} is in another namespace (ReferenceGrant not modelled)")
            elif cert is None:
                resolved = Condition("ResolvedRefs", "False", "InvalidCertificateRef", f"Secret {ns}/{secret.name} does not exist or is not a kubernetes.io/tls Secret")
        conds.append(resolved)
        ok = resolved.status == "True"
        conds.append(Condition("Programmed", "True" if ok else "False", "Programmed" if ok else "Invalid"))
        conds.append(Condition("Conflicted", "False", "NoConflicts"))
        listeners.append(ListenerStatus(listener.name, listener.port, listener.protocol, listener.hostname or "", 0, conds))
        if ok:
            valid[listener.name] = listener
            servers.setdefault((listener.port, listener.hostname or ANY_HOST), VServer(listener.port, listener.hostname or ANY_HOST, listener.protocol, cert))
        else:
            warnings.append(f"gateway {gw.key} listener {listener.name}: {resolved.message}: not programmed")

    statuses: dict[str, list[ParentStatus]] = {}
    for order, route in enumerate(routes):
        backends = [[_resolve(route, ref, by_key, endpoints, upstreams) for ref in rule.backend_refs] for rule in route.spec.rules]
        bad = [b for rule in backends for b in rule if b.reason]
        resolved = (Condition("ResolvedRefs", "False", bad[0].reason, "; ".join(b.message for b in bad)) if bad
                    else Condition("ResolvedRefs", "True", "ResolvedRefs"))
        for ref in route.spec.parent_refs:
            if not _refers(ref.namespace or route.namespace, gw, ref.name):
                continue
            candidates = [lis for lis in gw.spec.listeners
                          if (ref.section_name is None or lis.name == ref.section_name) and (ref.port is None or lis.port == ref.port)]
            attached: list[tuple[Listener, list[str]]] = []
            reason = "NoMatchingParent" if not candidates else ""
            for lis in candidates:
                if not _allowed(lis, gw, route):
                    reason = reason or "NotAllowedByListeners"
                    continue
                hosts = intersect(lis.hostname, route.spec.hostnames)
                if not hosts:
                    reason = reason or "NoMatchingListenerHostname"
                    continue
                attached.append((lis, hosts))
            if attached:
                accepted = Condition("Accepted", "True", "Accepted")
            else:
                messages = {"NoMatchingParent": f"no listener {ref.section_name or ''}{':' + str(ref.port) if ref.port else ''} on the Gateway",
                            "NotAllowedByListeners": "the listeners' allowedRoutes do not allow this route",
                            "NoMatchingListenerHostname": "no hostname of the route matches a listener's hostname"}
                accepted = Condition("Accepted", "False", reason, messages[reason])
            statuses.setdefault(route.key, []).append(ParentStatus(gw.key, ref.section_name or "", [accepted, resolved]))
            for lis, hosts in attached:
                status = next(s for s in listeners if s.name == lis.name)
                status.attached += 1
                if lis.name not in valid:
                    continue
                for host in hosts:
                    server = servers.setdefault((lis.port, host), VServer(lis.port, host, lis.protocol, servers[(lis.port, lis.hostname or ANY_HOST)].cert))
                    for i, rule in enumerate(route.spec.rules):
                        for j, match in enumerate(rule.matches):
                            mr = MatchRule(route, order, i, j, rule, match, backends[i])
                            for loc in _locations(match.path.value, match.path.type):
                                rules = server.locations.setdefault(loc, [])
                                if not any(r.route.key == route.key and r.rule_index == i and r.match_index == j for r in rules):
                                    rules.append(mr)
        if bad:
            warnings.append(f"httproute {route.key}: ResolvedRefs False ({bad[0].reason}): "
                            + "; ".join(b.message for b in bad) + ": nginx answers 500 for those backends' share")
    for up in upstreams.values():
        if up.problem:
            warnings.append(f"{up.problem}: nginx answers 503 for the requests sent to it")
    for server in servers.values():
        for rules in server.locations.values():
            rules.sort(key=MatchRule.precedence)
    ordered = sorted((s for s in servers.values() if s.locations), key=lambda s: (s.port, s.hostname == ANY_HOST, s.hostname))
    return ordered, upstreams, listeners, statuses, warnings


# --------------------------------------------------------------------------- rendering
def _quote(text: str) -> str:
    """A string as an nginx quoted string: what comes from a manifest was validated
    (netlab.model.gateway keeps quotes, backslashes, '$' and line breaks out of it)."""
    assert not any(c in text for c in '"\n\r'), text
    return f'"{text}"'


def _regex_literal(text: str) -> str:
    return "".join(c if c.isalnum() else "\\" + c for c in text)


def _var(name: str) -> str:
    return name.lower().replace("-", "_")


class _Ctx:
    def __init__(self) -> None:
        self.maps: list[str] = []
        self.splits: list[str] = []
        self.add_vars: set[str] = set()
        self.used: set[str] = set()


def _split(ctx: _Ctx, mr: MatchRule, backends: list[Backend]) -> str:
    """split_clients.go: the backends' shares of $request_id; returns the variable."""
    var = f"$group_{_var(mr.route.namespace)}__{_var(mr.route.name)}_rule{mr.rule_index}"
    if any(var in line for line in ctx.splits):
        return var
    total = sum(b.ref.weight for b in backends)
    lines = [f"    split_clients $request_id {var} {{  # httproute {mr.route.key} rule {mr.rule_index}"]
    left = 100.0
    live = [b for b in backends if b.ref.weight > 0]
    for b in live[:-1]:
        share = int(b.ref.weight * 10000 / total) / 100
        left -= share
        lines.append(f"        {share:.2f}% {b.upstream};  # {b.service} weight {b.ref.weight}")
    last = live[-1]
    lines.append(f"        {left:.2f}% {last.upstream};  # {last.service} weight {last.ref.weight}")
    lines.append("    }")
    ctx.splits += lines
    return var


def _action(ctx: _Ctx, mr: MatchRule, port: int, internal: bool) -> list[str]:
    filters = {f.type: f for f in mr.rule.filters}
    prefix = mr.match.path.value
    out = []
    redirect = filters.get("RequestRedirect")
    rewrite = filters.get("URLRewrite")
    path_mod = (redirect.request_redirect.path if redirect and redirect.request_redirect
                else rewrite.url_rewrite.path if rewrite and rewrite.url_rewrite else None)
    main = ""
    if path_mod is not None:
        if path_mod.type == "ReplaceFullPath":
            main = f"^ {path_mod.replacement}"
        else:  # createMainRewriteForFilters ReplacePrefixMatch
            new = path_mod.replacement or "/"
            regex, repl = f"^{prefix}([^?]*)?", f"{new}$1?$args?"
            if new.endswith("/") and not prefix.endswith("/"):
                regex = f"^{prefix}(?:/([^?]*))?"
            if prefix.endswith("/") and not new.endswith("/"):
                repl = f"{new}/$1?$args?"
            main = f"{regex} {repl}"
        if internal:
            out.append("rewrite ^ $request_uri_path;  # back to the client's path (NGF's InternalRewrite)")
    if redirect is not None and redirect.request_redirect is not None:
        f = redirect.request_redirect
        host = f.hostname or "$host"
        scheme = f.scheme or "$scheme"
        to_port = f.port if f.port is not None else port
        hostport = f"{host}:{to_port}"
        if f.scheme is not None and ((to_port == 80 and scheme == "http") or (to_port == 443 and scheme == "https") or f.port is None):
            hostport = host
        if main:
            out.append(f"rewrite {main};")
        uri = "$uri$is_args$args" if main else "$request_uri"
        out.append(f"return {f.status_code} {_quote(f'{scheme}://{hostport}{uri}')};  # RequestRedirect")
        return out
    headers = {
        "Host": "$gw_api_compliant_host", "X-Forwarded-For": "$proxy_add_x_forwarded_for", "X-Real-IP": "$remote_addr",
        "X-Forwarded-Proto": "$scheme", "X-Forwarded-Host": "$host", "X-Forwarded-Port": "$server_port",
        "Upgrade": "$http_upgrade", "Connection": "$connection_upgrade",
    }
    if rewrite is not None and rewrite.url_rewrite is not None and rewrite.url_rewrite.hostname:
        headers["Host"] = rewrite.url_rewrite.hostname
    modifier = filters.get("RequestHeaderModifier")
    extra: list[str] = []
    if modifier is not None and modifier.request_header_modifier is not None:
        hm = modifier.request_header_modifier
        for h in hm.set:
            headers = {k: v for k, v in headers.items() if k.lower() != h.name.lower()}
            extra.append(f"proxy_set_header {h.name} {_quote(h.value)};  # RequestHeaderModifier set")
        for h in hm.add:
            var = f"{_var(h.name)}_header_var"
            if var not in ctx.add_vars:
                ctx.add_vars.add(var)
                ctx.maps += [f"    map $http_{_var(h.name)} ${var} {{", f'        default "$http_{_var(h.name)}, ";', '        "" "";', "    }"]
            headers = {k: v for k, v in headers.items() if k.lower() != h.name.lower()}
            extra.append(f'proxy_set_header {h.name} "${{{var}}}{h.value}";  # RequestHeaderModifier add')
        for name in hm.remove:
            headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
            extra.append(f'proxy_set_header {name} "";  # RequestHeaderModifier remove')
    live = [b for b in mr.backends if b.ref.weight > 0]
    if not live:
        why = "no backendRefs" if not mr.backends else "every backendRef has weight 0"
        return [*out, f"return 500;  # {why} (the Gateway API: 500)"]
    for b in live:
        ctx.used.add(b.upstream)
    target = live[0].upstream if len(live) == 1 else _split(ctx, mr, live)
    if main:
        out.append(f"rewrite {main} break;  # URLRewrite")
    out += [f"proxy_set_header {k} {v};" for k, v in headers.items()] + extra
    out += ["proxy_http_version 1.1;", f"proxy_pass http://{target}{'' if main else '$request_uri'};"]
    return out


def _map_key(value: str) -> str:
    return _quote("~^" + _regex_literal(value) + "$")


def _server_block(ctx: _Ctx, s_index: int, server: VServer) -> list[str]:
    ssl = " ssl" if server.protocol == "HTTPS" else ""
    host = "any host (no hostname on listener or route)" if server.hostname == ANY_HOST else server.hostname
    lines = ["    server {", f"        # {server.protocol} :{server.port} {host}", f"        listen {server.port}{ssl};",
             f"        server_name {server.hostname};"]
    if server.cert is not None:
        lines += [f"        ssl_certificate {server.cert.pem};  # Secret {server.cert.key}", f"        ssl_certificate_key {server.cert.pem};"]
    internal: list[str] = []
    for l_index, (loc, rules) in enumerate(sorted(server.locations.items())):
        where = ", ".join(dict.fromkeys(f"httproute {r.route.key} rule {r.rule_index}" for r in rules))
        lines.append(f"        location {loc} {{  # {where}")
        if len(rules) == 1 and not rules[0].conditional:
            lines += [f"            {x}" for x in _action(ctx, rules[0], server.port, False)]
        else:
            bits = []
            for m_index, mr in enumerate(rules):
                conds: list[tuple[str, str]] = []
                m = mr.match
                if m.method:
                    conds.append(("$request_method", m.method))
                conds += [(f"$http_{_var(h.name)}", h.value) for h in m.headers]
                conds += [(f"$arg_{q.name}", q.value) for q in m.query_params]
                base = f"$gw_s{s_index}_l{l_index}_m{m_index}"
                for c_index, (source, value) in enumerate(conds):
                    ctx.maps += [f"    map {source} {base}_c{c_index} {{", "        default 0;", f"        {_map_key(value)} 1;", "    }"]
                if conds:
                    joined = "".join(f"${{{base[1:]}_c{c}}}" for c in range(len(conds)))
                    ctx.maps += [f'    map "{joined}" {base} {{', "        default 0;", f'        "{"1" * len(conds)}" 1;', "    }"]
                    bits.append(f"${{{base[1:]}}}")
                else:
                    bits.append("1")
                path = f"{INTERNAL}-rule{l_index}-route{m_index}"
                internal += [f"        location {path} {{  # httproute {mr.route.key} rule {mr.rule_index} match {mr.match_index}",
                             "            internal;"]
                internal += [f"            {x}" for x in _action(ctx, mr, server.port, True)]
                internal.append("        }")
            dispatch = f"$gw_s{s_index}_l{l_index}"
            ctx.maps += [f'    map "{"".join(bits)}" {dispatch} {{  # the first match, in precedence order']
            ctx.maps += [f'        "~^.{{{i}}}1" {INTERNAL}-rule{l_index}-route{i};' for i in range(len(bits))]
            ctx.maps += [f"        default {INTERNAL}-no-match;", "    }"]
            lines.append(f"            rewrite ^ {dispatch} last;  # NGF: njs httpmatches.redirect")
        lines.append("        }")
    if "/" not in server.locations:
        lines += ["        location / {", "            return 404;", "        }"]
    lines += internal
    lines += [f"        location {INTERNAL}-no-match {{", "            internal;", "            return 404;", "        }", "    }", ""]
    return lines


def render(
    gw: Gateway, routes: Sequence[HTTPRoute], services: Sequence[Service], endpoints: Mapping[str, list[Endpoint]],
    certs: Mapping[str, Cert], paths: Paths, pod: str = "",
) -> Rendered:
    """nginx.conf for ``gw`` and the HTTPRoutes (creation order) attached to it."""
    servers, upstreams, listeners, statuses, warnings = build(gw, routes, services, endpoints, certs)
    ctx = _Ctx()
    body: list[str] = []
    for i, server in enumerate(servers):
        body += _server_block(ctx, i, server)
    sock500, sock503 = paths.prefix / "nginx-500-server.sock", paths.prefix / "nginx-503-server.sock"
    out = [
        "# nginx.conf rendered by netlab for a gateway.networking.k8s.io/v1 Gateway, as NGINX Gateway Fabric renders",
        "# internal/controller/nginx/config (nginx/nginx-gateway-fabric); its njs matching as map + rewrite (see",
        "# netlab/services/gateway_nginx.py); upstreams list the Services' endpoint pod IPs.",
        f"# gateway: {gw.key} (class {gw.spec.gateway_class_name}); data-plane pod: {pod or '(not running yet)'}",
        f"# httproutes: {', '.join(r.key for r in routes) or 'none'}",
        f"pid {paths.pid};",
        "worker_processes 1;",
        "user root;",
        f"error_log {paths.error_log} notice;",
        "events {",
        "    worker_connections 1024;",
        "}",
        "http {",
        *paths.temp_directives(),
        "    default_type text/html;",
        "    server_tokens off;",
        "    variables_hash_bucket_size 512;",
        "    server_names_hash_bucket_size 256;",
        f"    access_log {paths.access_log};",
        "    map $http_host $gw_api_compliant_host {",
        "        '' $host;",
        "        default $http_host;",
        "    }",
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        '' close;",
        "    }",
        "    map $request_uri $request_uri_path {",
        '        "~^(?P<path>[^?]*)(\\?.*)?$" $path;',
        "    }",
        *ctx.maps,
        *ctx.splits,
        "",
    ]
    for name in sorted(ctx.used):
        if name == INVALID_BACKEND:
            out += [f"    upstream {INVALID_BACKEND} {{  # backendRefs that do not resolve: 500", f"        server unix:{sock500};", "    }"]
            continue
        up = upstreams[name]
        out.append(f"    upstream {name} {{  # Service {up.service} port {up.port}")
        if up.endpoints:
            out += [f"        server {a};" + (f"  # {p}" if p else "") for a, p in zip(up.endpoints, up.pods, strict=True)]
        else:
            out.append(f"        server unix:{sock503};  # {up.problem}")
        out.append("    }")
    out.append("")
    for port, protocol in sorted({(s.port, s.protocol) for s in servers}):
        if protocol == "HTTPS":
            out += ["    server {", f"        listen {port} ssl default_server;", "        ssl_reject_handshake on;", "    }"]
        else:
            out += ["    server {", f"        listen {port} default_server;", "        default_type text/html;", "        return 404;", "    }"]
    out += body
    out += ["    server {", f"        listen unix:{sock500};", "        access_log off;", "        return 500;", "    }",
            "    server {", f"        listen unix:{sock503};", "        access_log off;", "        return 503;", "    }", "}", ""]
    return Rendered("\n".join(out), servers, upstreams, listeners, statuses, warnings)
