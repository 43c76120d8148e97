"""ingress-nginx's configuration, rendered for real nginx from Ingress objects. Pure.

This follows kubernetes/ingress-nginx step by step, so the nginx.conf a lab gets is the one
the controller would write, minus its Lua:

- which Ingress claims which host and path, and how several Ingresses merge:
  ``internal/ingress/controller/controller.go`` (``createUpstreams``, ``createServers``,
  ``getBackendServers``: the first Ingress to define a host/path keeps it, an Ingress's
  ``defaultBackend`` serves the ``/`` of its hosts, an Ingress with only a
  ``defaultBackend`` becomes the catch-all, locations sorted longest path first);
- path types: ``internal/k8s/main.go`` (``ImplementationSpecific`` is read as ``Prefix``),
  ``internal/ingress/controller/location.go`` (a Prefix path ``/foo`` becomes ``location
  /foo/`` plus ``location = /foo``) and ``template.go`` ``buildLocation`` (``= "/p"`` for
  Exact, ``~* "^/p"`` for every location of a server where one needs a regex);
- ``rewrite-target``: ``template.go`` ``buildProxyPass`` (``rewrite "(?i)<path>" <target>
  break;``); ``backend-protocol``: the same function (``https://``, ``grpc_pass``, ...);
- ``ssl-redirect`` (default true when the host has a certificate) and ``force-ssl-redirect``:
  ``rootfs/etc/nginx/lua/lua_ingress.lua`` ``rewrite()`` (308, the request URI without its
  trailing slash unless ``preserve-trailing-slash``), rendered here as an ``if``/``return``;
- headers to the pod: the ``proxy_set_header`` lines of
  ``rootfs/etc/nginx/template/nginx.tmpl`` (X-Real-IP and X-Forwarded-For ``$remote_addr``,
  X-Forwarded-Proto the scheme, ...), with ingress-nginx's defaults (use-forwarded-headers
  false, so an incoming X-Forwarded-For is passed on as X-Original-Forwarded-For);
- the default backend: with no default-backend Service, ``upstream-default-backend`` is
  ``127.0.0.1:8181``, a server that answers ``404`` (nginx.tmpl); a Service with no
  endpoints (or missing) answers ``503`` (``rootfs/etc/nginx/lua/balancer.lua``
  ``rewrite()``);
- upstreams: ingress-nginx bypasses the ClusterIP and balances over the Service's endpoint
  pod IPs in Lua (``balancer_by_lua``, round robin, peers never marked down). Its static
  equivalent in plain nginx is one ``upstream`` block per Service port listing the endpoint
  pod IPs with ``max_fails=0``, rewritten and reloaded when endpoints change, which is
  what this renders; the keepalive settings are ingress-nginx's defaults.

Not rendered (no effect on the packets or answers these experiments look at): Lua, metrics,
OpenTelemetry, ModSecurity, auth, rate limits, canaries, HTTP/2 (netlab's clients speak
HTTP/1.1). nginx runs one worker (ingress-nginx: one per CPU) as root (ingress-nginx: uid 101).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from netlab.model.ingress import Ingress, IngressBackend, NginxAnnotations, parse_annotations
from netlab.model.service import Service
from netlab.services.kubeproxy import Endpoint

DEFAULT_UPSTREAM = "upstream-default-backend"
DEFAULT_SERVER = "_"
DEFAULT_BACKEND_PORT = 8181  # ingress-nginx's ListenPorts.Default
STATUS_PORT = 10246  # ingress-nginx's status server (127.0.0.1 only)
HTTP_PORT, HTTPS_PORT = 80, 443
FAKE_CERT_SUBJECT = "/O=Acme Co/CN=Kubernetes Ingress Controller Fake Certificate"
FAKE_CERT_NAMES = ("ingress.local",)
TEMP_DIRS = ("client-body", "proxy", "fastcgi", "uwsgi", "scgi")
SSL_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256"
)
LOG_FORMAT = (  # ingress-nginx's log-format-upstream
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" '
    "$request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr "
    "$upstream_response_length $upstream_response_time $upstream_status $req_id"
)


@dataclass(frozen=True)
class Cert:
    """A TLS Secret as the controller holds it: one PEM file (certificate and key) and the
    DNS names the certificate is valid for (its SANs, else its CN)."""

    key: str  # "<namespace>/<secret>"
    pem: str
    names: tuple[str, ...]

    def covers(self, host: str) -> bool:
        host = host.lower()
        for name in (n.lower() for n in self.names):
            if name == host or (name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]):
                return True
        return False


@dataclass(frozen=True)
class Paths:
    """Where one controller's nginx keeps its files (a directory journaled in the lab's record)."""

    prefix: Path

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def pid(self) -> Path:
        return self.prefix / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    @property
    def ssl(self) -> Path:
        return self.prefix / "ssl"

    @property
    def default_cert(self) -> Path:
        return self.ssl / "default-fake-certificate.pem"

    def temp(self, name: str) -> Path:
        return self.prefix / f"{name}-temp"

    def temp_directives(self) -> list[str]:
        """The ``http {}`` lines that keep every nginx temp file in this controller's own
        directory (netlab's, not upstream's: the Ingress and Gateway configurations share them)."""
        return [
            f"    client_body_temp_path {self.temp('client-body')};",
            f"    proxy_temp_path       {self.temp('proxy')};",
            f"    fastcgi_temp_path     {self.temp('fastcgi')};",
            f"    uwsgi_temp_path       {self.temp('uwsgi')};",
            f"    scgi_temp_path        {self.temp('scgi')};",
        ]


@dataclass
class Upstream:
    """A Service port the Ingresses send to, and the endpoints nginx balances over."""

    name: str  # ingress-nginx's upstreamName: <namespace>-<service>-<port>
    service: str  # "<namespace>/<service>"
    port: str  # the Ingress's port number or name
    endpoints: list[str] = field(default_factory=list)  # "ip:port"
    pods: list[str] = field(default_factory=list)
    problem: str = ""  # why there are no endpoints


@dataclass
class Location:
    path: str
    path_type: str  # Exact | Prefix (ImplementationSpecific reads as Prefix)
    backend: str
    is_def_backend: bool
    ingress: Ingress | None
    annotations: NginxAnnotations
    service: str = ""
    port: str = ""
    ingress_path: str = ""
    access_log: bool = True


@dataclass
class Server:
    hostname: str
    locations: list[Location]
    cert: Cert | None = None  # a TLS Secret's certificate; None: the default (fake) one
    # ingress-nginx gave the host a certificate (its Secret's, or the default one when the
    # Secret is missing or wrong): its Lua then finds "a certificate configured for the
    # request", which is what ssl-redirect needs (certificate.lua configured_for_current_request)
    certified: bool = False


@dataclass
class Rendered:
    """nginx.conf's text, and what it means (for ``netlab status``)."""

    text: str
    servers: list[Server]
    upstreams: dict[str, Upstream]
    warnings: list[str]


def upstream_name(namespace: str, backend: IngressBackend) -> str:
    assert backend.service is not None
    return f"{namespace}-{backend.service.name}-{backend.service.port}"


def _endpoints(up: Upstream, services: Mapping[str, Service], endpoints: Mapping[str, list[Endpoint]]) -> None:
    """Fill ``up`` like ingress-nginx's serviceEndpoints: the endpoints of the Service port
    whose port number, targetPort or name is the Ingress's port."""
    svc = services.get(up.service)
    if svc is None:
        up.problem = f"service {up.service} not found"
        return
    if svc.type == "ExternalName":
        up.problem = f"service {up.service} is ExternalName (not modelled as an ingress backend)"
        return
    port = next((p for p in svc.ports if up.port in (str(p.port), str(p.target), p.name or "") and p.protocol == "TCP"), None)
    if port is None:
        known = ", ".join(p.name or str(p.port) for p in svc.ports if p.protocol == "TCP") or "none"
        up.problem = f"service {up.service} has no port {up.port} (its TCP ports: {known})"
        return
    for ep in endpoints.get(svc.key, []):
        address = ep.ip if ":" in ep.ip else f"{ep.ip}:{port.target}"
        up.endpoints.append(address)
        up.pods.append(ep.pod or "")
    if not up.endpoints:
        up.problem = f"service {up.service} has no endpoints"


def _nginx_type(path_type: str) -> str:
    return "Prefix" if path_type == "ImplementationSpecific" else path_type


def build(
    ingresses: Sequence[Ingress], services: Sequence[Service], endpoints: Mapping[str, list[Endpoint]], certs: Mapping[str, Cert]
) -> tuple[list[Server], dict[str, Upstream], list[str]]:
    """ingress-nginx's getBackendServers and getConfiguration: servers with their locations,
    and the upstreams, from the Ingresses (in creation order) the controller serves."""
    by_key = {s.key: s for s in services}
    warnings: list[str] = []
    annotations = {ing.key: parse_annotations(ing.annotations) for ing in ingresses}
    for ing in ingresses:
        if annotations[ing.key].ignored:
            warnings.append(f"ingress {ing.key}: annotation(s) not modelled, ignored: {', '.join(annotations[ing.key].ignored)}")

    # createUpstreams
    upstreams: dict[str, Upstream] = {DEFAULT_UPSTREAM: Upstream(DEFAULT_UPSTREAM, "", "", [f"127.0.0.1:{DEFAULT_BACKEND_PORT}"])}
    for ing in ingresses:
        backends = [ing.spec.default_backend] if ing.spec.default_backend else []
        backends += [p.backend for r in ing.spec.rules if r.http for p in r.http.paths]
        for backend in backends:
            name = upstream_name(ing.namespace, backend)
            if name not in upstreams:
                assert backend.service is not None
                up = Upstream(name, f"{ing.namespace}/{backend.service.name}", str(backend.service.port))
                _endpoints(up, by_key, endpoints)
                upstreams[name] = up

    # createServers
    servers: dict[str, Server] = {
        DEFAULT_SERVER: Server(
            DEFAULT_SERVER,
            [Location("/", "Prefix", DEFAULT_UPSTREAM, True, None, NginxAnnotations(ssl_redirect=False), access_log=False)],
        )
    }
    for ing in ingresses:
        anns = annotations[ing.key]
        default_upstream = DEFAULT_UPSTREAM
        if ing.spec.default_backend is not None:
            default_upstream = upstream_name(ing.namespace, ing.spec.default_backend)
            root = servers[DEFAULT_SERVER].locations[0]
            if root.is_def_backend and not ing.spec.rules:  # an Ingress with only a backend: the catch-all
                assert ing.spec.default_backend.service is not None
                root.backend, root.is_def_backend, root.ingress = default_upstream, False, ing
                root.service, root.port = ing.spec.default_backend.service.name, str(ing.spec.default_backend.service.port)
                # "Redirect and rewrite can affect the catch all behavior, skip for now" (controller.go)
                root.annotations = replace(anns, rewrite_target="", use_regex=False, ssl_redirect=False,
                                           force_ssl_redirect=False, preserve_trailing_slash=False)
        for rule in ing.spec.rules:
            host = rule.host or DEFAULT_SERVER
            if host not in servers:
                servers[host] = Server(host, [Location("/", "Prefix", default_upstream, True, ing, anns)])
    for ing in ingresses:  # certificates: the first Ingress with a TLS section for a host decides it
        for rule in ing.spec.rules:
            host = rule.host or DEFAULT_SERVER
            server = servers[host]
            if server.certified or not ing.spec.tls or host == DEFAULT_SERVER:  # "_" has the default one
                continue
            server.certified = True
            secret = _tls_secret_name(host, ing, certs)
            if not secret:
                warnings.append(f"ingress {ing.key}: no TLS secret for host {host}: the default (fake) certificate is used")
                continue
            cert = certs.get(f"{ing.namespace}/{secret}")
            if cert is None:
                warnings.append(f"ingress {ing.key}: TLS secret {ing.namespace}/{secret} not found: host {host} gets the default (fake) certificate")
                continue
            if not cert.covers(host):
                warnings.append(
                    f"ingress {ing.key}: TLS secret {cert.key} is not valid for {host} (it covers {', '.join(cert.names)}): "
                    "the default (fake) certificate is used"
                )
                continue
            server.cert = cert

    # getBackendServers: the paths
    for ing in ingresses:
        anns = annotations[ing.key]
        for rule in ing.spec.rules:
            if rule.http is None:
                continue
            server = servers[rule.host or DEFAULT_SERVER]
            for path in rule.http.paths:
                assert path.backend.service is not None
                name = upstream_name(ing.namespace, path.backend)
                nginx_path = path.path or "/"
                path_type = _nginx_type(path.path_type)
                add = True
                for loc in server.locations:
                    if loc.path != nginx_path:
                        continue
                    if loc.path_type != path_type:  # same path, other type: both are kept
                        break
                    add = False
                    if not loc.is_def_backend:
                        owner = loc.ingress.key if loc.ingress else "?"
                        if owner != ing.key:
                            warnings.append(f"ingress {ing.key}: host {server.hostname} path {nginx_path} is already defined by ingress {owner}: ignored")
                        break
                    loc.backend, loc.is_def_backend, loc.ingress, loc.annotations = name, False, ing, anns
                    loc.service, loc.port = path.backend.service.name, str(path.backend.service.port)
                    break
                if add:
                    server.locations.append(
                        Location(nginx_path, path_type, name, False, ing, anns, path.backend.service.name, str(path.backend.service.port))
                    )
    for up in upstreams.values():
        if up.problem:
            users = sorted({f"{s.hostname}{loc.path}" for s in servers.values() for loc in s.locations if loc.backend == up.name})
            if users:
                warnings.append(f"{up.problem}: nginx answers 503 for {', '.join(users)}")

    ordered = []
    for host in sorted(servers):
        server = servers[host]
        server.locations.sort(key=lambda loc: loc.path, reverse=True)
        server.locations.sort(key=lambda loc: len(loc.path), reverse=True)
        server.locations = _update_server_locations(server.locations)
        ordered.append(server)
    return ordered, upstreams, warnings


def _tls_secret_name(host: str, ing: Ingress, certs: Mapping[str, Cert]) -> str:
    """ingress-nginx's extractTLSSecretName: the TLS entry listing ``host``, else one whose
    certificate is valid for it."""
    for tls in ing.spec.tls:
        if host.lower() in (h.lower() for h in tls.hosts):
            return tls.secret_name
    for tls in ing.spec.tls:
        cert = certs.get(f"{ing.namespace}/{tls.secret_name}") if tls.secret_name else None
        if cert is not None and cert.covers(host):
            return tls.secret_name
    return ""


def _needs_rewrite(loc: Location) -> bool:
    return bool(loc.annotations.rewrite_target) and loc.annotations.rewrite_target != loc.path


def _update_server_locations(locations: list[Location]) -> list[Location]:
    """location.go updateServerLocations: a Prefix ``/foo`` becomes ``/foo/`` plus an Exact ``/foo``."""
    exact = {loc.path for loc in locations if loc.path_type == "Exact"}
    out: list[Location] = []
    for loc in locations:
        if loc.path == "/":
            out.append(loc)
            continue
        loc.ingress_path = loc.path
        if loc.path_type != "Prefix" or _needs_rewrite(loc) or loc.annotations.use_regex:
            out.append(loc)
            continue
        twin = replace(loc, path_type="Exact")
        loc.path = loc.path if loc.path.endswith("/") else loc.path + "/"
        out.append(loc)
        if twin.path not in exact:
            out.append(twin)
    return out


# --------------------------------------------------------------------------- the text
def _quote(text: str) -> str:
    """template.go sanitizeQuotedRegex: backslashes and double quotes escaped, in quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _location_match(loc: Location, enforce_regex: bool) -> str:
    if enforce_regex:
        return f"~* {_quote('^' + loc.path)}"
    if loc.path_type == "Exact":
        return f"= {_quote(loc.path)}"
    return _quote(loc.path)


def _upstream_block(up: Upstream) -> list[str]:
    if up.name == DEFAULT_UPSTREAM:
        return [
            f"    upstream {DEFAULT_UPSTREAM} {{",
            "        # no default-backend Service: ingress-nginx's own 404 server below",
            f"        server 127.0.0.1:{DEFAULT_BACKEND_PORT};",
            "    }",
        ]
    if not up.endpoints:
        return [f"    # upstream {up.name}: {up.problem}; its locations answer 503 (ingress-nginx's balancer.lua rewrite())"]
    lines = [f"    upstream {up.name} {{", f"        # Service {up.service} port {up.port}: its endpoints, pod IPs (not the ClusterIP)"]
    for address, pod in zip(up.endpoints, up.pods, strict=True):
        lines.append(f"        server {address} max_fails=0;" + (f"  # {pod}" if pod else ""))
    lines += [
        "        keepalive 320;",
        "        keepalive_time 1h;",
        "        keepalive_timeout 60s;",
        "        keepalive_requests 10000;",
        "    }",
    ]
    return lines


def _proxy_pass(loc: Location, upstream: Upstream) -> list[str]:
    """template.go buildProxyPass."""
    proto, directive = "http://", "proxy_pass"
    protocol = loc.annotations.backend_protocol
    if protocol == "AUTO_HTTP":
        proto = "$scheme://"
    elif protocol == "HTTPS":
        proto = "https://"
    elif protocol in ("GRPC", "GRPCS"):
        proto, directive = protocol.lower() + "://", "grpc_pass"
    if loc.backend == DEFAULT_UPSTREAM:
        proto, directive = "http://", "proxy_pass"
    lines = []
    if upstream.name != DEFAULT_UPSTREAM and not upstream.endpoints:  # no upstream block to pass to
        return [f"return 503;  # {upstream.problem} (ingress-nginx: balancer.lua rewrite() finds no backend)"]
    if _needs_rewrite(loc):
        lines.append(f'rewrite "(?i){_escape(loc.path)}" {loc.annotations.rewrite_target} break;')
    lines.append(f"{directive} {proto}{upstream.name};")
    return lines


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _location_block(server: Server, loc: Location, upstream: Upstream, enforce_regex: bool) -> list[str]:
    ing = loc.ingress
    anns = loc.annotations
    body = [
        f"set $namespace      {_quote(ing.namespace if ing else '')};",
        f"set $ingress_name   {_quote(ing.name if ing else '')};",
        f"set $service_name   {_quote(loc.service)};",
        f"set $service_port   {_quote(loc.port)};",
        f"set $location_path  {_quote((loc.ingress_path or loc.path).replace('$', '${literal_dollar}'))};",
    ]
    if not loc.access_log:
        body.append("access_log off;")
    redirect = anns.force_ssl_redirect or (anns.ssl_redirect and server.certified)
    if redirect:  # lua_ingress.lua rewrite(): redirect_to_https
        body.append("# ssl-redirect (ingress-nginx does this in Lua: lua_ingress.lua rewrite())")
        body.append("set $redirect_uri $request_uri;")
        if not anns.preserve_trailing_slash:
            body.append('if ($request_uri ~ "^(.*)/$") { set $redirect_uri $1; }')
        body.append("if ($scheme = http) { return 308 https://$host$redirect_uri; }")
    body += [
        "port_in_redirect off;",
        f"set $proxy_upstream_name {_quote(loc.backend)};",
        "set $proxy_host          $proxy_upstream_name;",
        "set $pass_access_scheme  $scheme;",
        "set $pass_server_port    $server_port;",
        "set $best_http_host      $http_host;",
        "set $pass_port           $pass_server_port;",
        "client_max_body_size                    1m;",
        "proxy_set_header Host                   $best_http_host;",
        "# Allow websocket connections",
        "proxy_set_header                        Upgrade           $http_upgrade;",
        "proxy_set_header                        Connection        $connection_upgrade;",
        "proxy_set_header X-Request-ID           $req_id;",
        "proxy_set_header X-Real-IP              $remote_addr;",
        "proxy_set_header X-Forwarded-For        $remote_addr;",
        "proxy_set_header X-Forwarded-Host       $best_http_host;",
        "proxy_set_header X-Forwarded-Port       $pass_port;",
        "proxy_set_header X-Forwarded-Proto      $pass_access_scheme;",
        "proxy_set_header X-Forwarded-Scheme     $pass_access_scheme;",
        "proxy_set_header X-Scheme               $pass_access_scheme;",
        "# Pass the original X-Forwarded-For",
        "proxy_set_header X-Original-Forwarded-For $http_x_forwarded_for;",
        "# Pass the original X-Forwarded-Host",
        "proxy_set_header X-Original-Forwarded-Host $http_x_forwarded_host;",
        "# mitigate HTTPoxy Vulnerability",
        'proxy_set_header Proxy                  "";',
        "proxy_connect_timeout                   5s;",
        "proxy_send_timeout                      60s;",
        "proxy_read_timeout                      60s;",
        "proxy_buffering                         off;",
        "proxy_buffer_size                       4k;",
        "proxy_buffers                           4 4k;",
        "proxy_max_temp_file_size                1024m;",
        "proxy_request_buffering                 on;",
        "proxy_http_version                      1.1;",
        "proxy_cookie_domain                     off;",
        "proxy_cookie_path                       off;",
        "# In case of errors try the next upstream server before returning an error",
        "proxy_next_upstream                     error timeout;",
        "proxy_next_upstream_timeout             0;",
        "proxy_next_upstream_tries               3;",
    ]
    body += _proxy_pass(loc, upstream)
    body.append("proxy_redirect                          off;")
    where = f"{loc.ingress_path or loc.path} ({loc.path_type})" + (f" of ingress {ing.key}" if ing else "")
    lines = [f"        location {_location_match(loc, enforce_regex)} {{  # {where}" + (" [default backend]" if loc.is_def_backend else "")]
    lines += [f"            {line}" for line in body]
    lines.append("        }")
    return lines


def _server_name(hostname: str) -> str:
    """template.go buildServerName: ``*.example.com`` as a regex with a ``subdomain`` capture."""
    if not hostname.startswith("*"):
        return _quote(hostname)
    parts = hostname.replace("*.", "", 1).split(".")
    return _quote(r"~^(?<subdomain>[\w-]+)\." + r"\.".join(parts) + "$")


def _server_block(server: Server, upstreams: Mapping[str, Upstream], proxy_protocol: bool = False) -> list[str]:
    default = server.hostname == DEFAULT_SERVER
    # internal/ingress/controller/template/template.go commonListenOptions: proxy_protocol first
    options = (" proxy_protocol" if proxy_protocol else "") + (" default_server reuseport backlog=4096" if default else "")
    lines = [
        f"    ## start server {server.hostname}",
        "    server {",
        f"        server_name {_server_name(server.hostname)} ;",
        f"        listen {HTTP_PORT}{options} ;",
        f"        listen {HTTPS_PORT}{options} ssl;",
        '        set $proxy_upstream_name "-";',
        '        set $proxy_alternative_upstream_name "";',
    ]
    if default:
        lines.append("        ssl_reject_handshake off;")
    if server.cert is not None:
        lines += [f"        # certificate of Secret {server.cert.key} ({', '.join(server.cert.names)})",
                  f"        ssl_certificate     {server.cert.pem};", f"        ssl_certificate_key {server.cert.pem};"]
    else:
        lines.append("        # the default (fake) certificate of the http block")
    enforce_regex = any(_needs_rewrite(loc) or loc.annotations.use_regex for loc in server.locations)
    for loc in server.locations:
        lines += _location_block(server, loc, upstreams[loc.backend], enforce_regex)
    if default:
        lines += [
            "        # health checks in cloud providers require the use of port 80",
            "        location /healthz {",
            "            access_log off;",
            "            return 200;",
            "        }",
            "        # this is required to avoid error if nginx is being monitored",
            "        location /nginx_status {",
            "            allow 127.0.0.1;",
            "            deny all;",
            "            access_log off;",
            "            stub_status on;",
            "        }",
        ]
    lines += ["    }", f"    ## end server {server.hostname}", ""]
    return lines


def render(
    ingresses: Sequence[Ingress],
    services: Sequence[Service],
    endpoints: Mapping[str, list[Endpoint]],
    certs: Mapping[str, Cert],
    paths: Paths,
    controller: str = "",
    use_proxy_protocol: bool = False,
) -> Rendered:
    """nginx.conf for the Ingresses the controller serves (creation order), with the
    Services' current endpoints and the TLS Secrets' certificates. ``use_proxy_protocol``: the
    ConfigMap key ``use-proxy-protocol`` (the listeners read a PROXY header, and the real_ip
    module takes ``$remote_addr`` from it, as nginx.tmpl does when UseProxyProtocol is set)."""
    servers, upstreams, warnings = build(ingresses, services, endpoints, certs)
    used = {loc.backend for s in servers for loc in s.locations}
    out = [
        "# nginx.conf rendered by netlab from networking.k8s.io/v1 Ingress objects, as the ingress-nginx",
        "# controller renders rootfs/etc/nginx/template/nginx.tmpl (kubernetes/ingress-nginx); without its",
        "# Lua: the upstreams list the Services' endpoint pod IPs (see netlab/services/nginx.py).",
        f"# controller pod: {controller}" if controller else "# controller pod: (not running yet)",
        f"# ingresses: {', '.join(i.key for i in ingresses) or 'none'}",
        f"pid {paths.pid};",
        "worker_processes 1;",
        "user root;",
        f"error_log {paths.error_log} notice;",
        "worker_rlimit_nofile 65536;",
        "worker_shutdown_timeout 240s ;",
        "",
        "events {",
        "    multi_accept        on;",
        "    worker_connections  16384;",
        "    use                 epoll;",
        "}",
        "",
        "http {",
        *paths.temp_directives(),
        "    default_type text/html;",
        "    aio                 threads;",
        "    aio_write           on;",
        "    tcp_nopush          on;",
        "    tcp_nodelay         on;",
        "    log_subrequest      on;",
        "    reset_timedout_connection on;",
        "    keepalive_timeout  75s;",
        "    keepalive_requests 1000;",
        "    client_body_buffer_size         8k;",
        "    client_header_buffer_size       1k;",
        "    client_header_timeout           60s;",
        "    large_client_header_buffers     4 8k;",
        "    client_body_timeout             60s;",
        "    types_hash_max_size             2048;",
        "    server_names_hash_max_size      1024;",
        "    server_names_hash_bucket_size   64;",
        "    map_hash_bucket_size            64;",
        "    variables_hash_bucket_size      256;",
        "    variables_hash_max_size         2048;",
        "    underscores_in_headers          off;",
        "    ignore_invalid_headers          on;",
        "    limit_req_status                503;",
        "    limit_conn_status               503;",
        "    server_tokens off;",
        f"    log_format upstreaminfo '{LOG_FORMAT}';",
        f"    access_log {paths.access_log} upstreaminfo;",
        *([  # nginx.tmpl: real_ip only with use-forwarded-headers or use-proxy-protocol; proxy-real-ip-cidr 0.0.0.0/0
            "    real_ip_header      proxy_protocol;",
            "    real_ip_recursive   on;",
            "    set_real_ip_from    0.0.0.0/0;",
        ] if use_proxy_protocol else []),
        "    map $http_upgrade $connection_upgrade {",
        "        default          upgrade;",
        "        # See https://nginx.org/en/docs/http/ngx_http_upstream_module.html#keepalive",
        "        ''               '';",
        "    }",
        "    # Reverse proxies can detect if a client provides a X-Request-ID header, and pass it on to the backend server.",
        "    # If no such header is provided, it can provide a random value.",
        "    map $http_x_request_id $req_id {",
        "        default   $http_x_request_id;",
        '        ""        $request_id;',
        "    }",
        "    # Create a variable that contains the literal $ character.",
        "    # This works because the geo module will not resolve variables.",
        "    geo $literal_dollar {",
        '        default "$";',
        "    }",
        "    # HSTS (ingress-nginx: hsts, hsts-include-subdomains, hsts-max-age; set in Lua header())",
        "    map $scheme $hsts_header {",
        '        https     "max-age=31536000; includeSubDomains";',
        '        default   "";',
        "    }",
        "    # lua_ingress.lua header() adds it to every https answer (hsts is on by default)",
        "    add_header Strict-Transport-Security $hsts_header always;",
        "    server_name_in_redirect off;",
        "    port_in_redirect        off;",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_early_data off;",
        "    # turn on session caching to drastically improve performance",
        "    ssl_session_cache shared:SSL:10m;",
        "    ssl_session_timeout 10m;",
        "    ssl_session_tickets off;",
        "    # slightly reduce the time-to-first-byte",
        "    ssl_buffer_size 4k;",
        f"    ssl_ciphers '{SSL_CIPHERS}';",
        "    ssl_prefer_server_ciphers on;",
        "    ssl_ecdh_curve auto;",
        "    # the controller's default certificate: Kubernetes Ingress Controller Fake Certificate",
        f"    ssl_certificate     {paths.default_cert};",
        f"    ssl_certificate_key {paths.default_cert};",
        "    proxy_ssl_session_reuse on;",
        "",
    ]
    for name in sorted(upstreams):
        if name in used or name == DEFAULT_UPSTREAM:
            out += _upstream_block(upstreams[name])
    out.append("")
    for server in servers:
        out += _server_block(server, upstreams, use_proxy_protocol)
    out += [
        "    # backend for when default-backend-service is not configured or it does not have endpoints",
        "    server {",
        f"        listen {DEFAULT_BACKEND_PORT} default_server reuseport backlog=4096;",
        '        set $proxy_upstream_name "internal";',
        '        set $proxy_alternative_upstream_name "";',
        "        access_log off;",
        "        location / {",
        "            return 404;",
        "        }",
        "    }",
        "",
        "    # default server, used for NGINX healthcheck and access to nginx stats",
        "    server {",
        f"        listen 127.0.0.1:{STATUS_PORT};",
        '        set $proxy_upstream_name "internal";',
        '        set $proxy_alternative_upstream_name "";',
        "        keepalive_timeout 0;",
        "        gzip off;",
        "        access_log off;",
        "        location /healthz {",
        "            return 200;",
        "        }",
        "        location /nginx_status {",
        "            stub_status on;",
        "        }",
        "        location / {",
        "            return 404;",
        "        }",
        "    }",
        "}",
        "",
    ]
    return Rendered("\n".join(out), servers, upstreams, warnings)
