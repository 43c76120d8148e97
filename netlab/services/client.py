"""Send N requests and count which pod answered: the client side of the hostname server.

Run inside a pod or node (``ip netns exec`` mounts the pod's resolv.conf, so short
service names resolve through cluster DNS, search list and ndots:5 included)::

    python -I netlab/services/client.py http://web -n 300     # what `netlab requests` runs
    {"answers": {"web-1": 97, "web-2": 104, "web-3": 99}, "errors": 0, "requests": 300, ...}

URLs: ``http://HOST[:PORT][/PATH]`` and ``https://...`` (a new TCP connection per request,
like curl in a loop), ``tcp://HOST:PORT`` and ``udp://HOST:PORT`` (the echo server's
``<pod>: `` prefix). Like curl: ``-H 'Host: foo.example.com'`` (any header),
``--resolve NAME:PORT:ADDR`` (connect to ADDR for NAME:PORT; TLS SNI and Host stay NAME),
``--cacert FILE`` or ``--insecure`` for https. An answer is the pod's name (the first line of
the hostname server's body), or ``HTTP <status> <reason>`` when it is not a 200 (a 3xx adds
``-> <Location>``); the ``key: value`` lines of the body (path, host, client address and
forwarding headers the pod saw) are counted per answer in ``fields``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import sys
import time
from collections import Counter
from urllib.parse import urlsplit


class _Connection(http.client.HTTPConnection):
    """HTTP to ``address`` while the URL (and Host) says ``host``, as curl --resolve does."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to ``address``, with SNI and certificate check for ``host``."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def tls_context(cacert: str | None, insecure: bool) -> ssl.SSLContext:
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=cacert) if cacert else ssl.create_default_context()


class Options:
    def __init__(
        self, headers: list[str] | None = None, resolve: list[str] | None = None, cacert: str | None = None,
        insecure: bool = False, timeout: float = 2.0,
    ) -> None:
        self.headers: dict[str, str] = {}
        for header in headers or []:
            key, sep, value = header.partition(":")
            if not sep or not key.strip():
                raise ValueError(f"header {header!r}: expected 'Name: value'")
            self.headers[key.strip()] = value.strip()
        self.resolve: dict[tuple[str, int], str] = {}
        for entry in resolve or []:
            parts = entry.rsplit(":", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                raise ValueError(f"--resolve {entry!r}: expected NAME:PORT:ADDRESS")
            self.resolve[(parts[0].lower(), int(parts[1]))] = parts[2]
        self.context = tls_context(cacert, insecure)
        self.timeout = timeout


def _http(url: str, options: Options) -> tuple[str, list[str]]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = options.resolve.get((host.lower(), port), host)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = _TLSConnection(host, port, address, options.timeout, options.context)
    else:
        conn = _Connection(host, port, address, options.timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers={"User-Agent": "netlab-requests", **options.headers})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        if response.status != 200:
            where = response.getheader("Location")
            return f"HTTP {response.status} {response.reason}" + (f" -> {where}" if where and 300 <= response.status < 400 else ""), []
        lines = body.strip().splitlines() or [""]
        return lines[0].strip(), lines[1:]
    finally:
        conn.close()


def one(url: str, timeout: float, options: Options | None = None) -> tuple[str, list[str]]:
    """One request: the answer and the ``key: value`` lines that came with it."""
    options = options or Options(timeout=timeout)
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme in ("http", "https"):
        return _http(url, options)
    if parts.scheme in ("tcp", "udp"):
        if not parts.port:
            raise ValueError(f"{url}: give a port")
        kind = socket.SOCK_STREAM if parts.scheme == "tcp" else socket.SOCK_DGRAM
        address = options.resolve.get((host.lower(), parts.port), host)
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.settimeout(timeout)
            sock.connect((socket.gethostbyname(address), parts.port))
            sock.sendall(b"netlab\n")
            return sock.recv(65536).decode().split(":", 1)[0].strip(), []
    raise ValueError(f"unsupported URL {url!r}: use http://, https://, tcp:// or udp://")


def _fields(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if sep:
            value = value.strip()
            if key == "client":
                value = value.rsplit(":", 1)[0]  # the address; the port is new every time
            elif key == "proxy-protocol":  # v2 PROXY TCP4 SRC:PORT -> DST:PORT: the source port is new every time
                head, arrow, tail = value.partition(" -> ")
                value = head.rsplit(":", 1)[0] + arrow + tail if arrow else value
            out[key.strip()] = value
    return out


def run(url: str, count: int, timeout: float, options: Options | None = None, latencies: bool = False, warmup: int = 0) -> dict[str, object]:
    """``count`` requests; with ``latencies``, also each answered request's time in µs (connect,
    TLS, request and the whole answer, as curl's time_total; name lookup excluded with --resolve).
    ``warmup`` requests go first and count nowhere: the first request of a process pays for
    Python's lazy imports and cold caches (a 1-in-100 outlier that was every p99 of 100-request chunks)."""
    options = options or Options(timeout=timeout)
    for _ in range(warmup):
        try:
            one(url, timeout, options)
        except (OSError, ValueError, http.client.HTTPException):
            pass
    answers: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    fields: dict[str, dict[str, Counter[str]]] = {}
    took: list[float] = []
    for _ in range(count):
        started = time.perf_counter_ns()
        try:
            answer, lines = one(url, timeout, options)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            errors[type(exc).__name__ + (f" {exc}" if str(exc) else "")] += 1
            continue
        took.append((time.perf_counter_ns() - started) / 1000.0)
        answers[answer] += 1
        for key, value in _fields(lines).items():
            fields.setdefault(answer, {}).setdefault(key, Counter())[value] += 1
    out: dict[str, object] = {
        "requests": count,
        "answers": dict(sorted(answers.items())),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "fields": {a: {k: dict(v) for k, v in f.items()} for a, f in sorted(fields.items())},
    }
    if latencies:
        out["latencies_us"] = took
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netlab-requests", description="send N requests, count answers per pod")
    parser.add_argument("url")
    parser.add_argument("-n", "--count", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value', e.g. 'Host: foo.example.com'")
    parser.add_argument("--resolve", action="append", default=[], metavar="NAME:PORT:ADDRESS")
    parser.add_argument("--cacert", metavar="FILE", help="CA certificate(s) to verify https servers with")
    parser.add_argument("-k", "--insecure", action="store_true", help="https without verifying the server's certificate")
    parser.add_argument("--latencies", action="store_true", help="also each answered request's time in µs (latencies_us)")
    parser.add_argument("--warmup", type=int, default=0, help="requests sent first and counted nowhere")
    args = parser.parse_args(argv)
    try:
        options = Options(args.header, args.resolve, args.cacert, args.insecure, args.timeout)
    except (ValueError, OSError) as exc:
        print(f"netlab-requests: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(run(args.url, args.count, args.timeout, options, args.latencies, max(0, args.warmup))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
