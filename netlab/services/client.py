"""Send N requests and count which pod answered: the client side of the hostname server.

Run inside a pod or node (``ip netns exec`` mounts the pod's resolv.conf, so short
service names resolve through cluster DNS, search list and ndots:5 included)::

    python -I netlab/services/client.py http://web -n 300     # what `netlab requests` runs
    {"answers": {"web-1": 97, "web-2": 104, "web-3": 99}, "errors": 0, "requests": 300}

URLs: ``http://HOST[:PORT][/PATH]`` (a new TCP connection per request, like curl in a
loop), ``tcp://HOST:PORT`` and ``udp://HOST:PORT`` (the echo server's ``<pod>: `` prefix).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
from collections import Counter
from urllib.parse import urlsplit


def one(url: str, timeout: float) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http":
        conn = http.client.HTTPConnection(host, parts.port or 80, timeout=timeout)
        try:
            conn.request("GET", parts.path or "/", headers={"User-Agent": "netlab-requests"})
            return conn.getresponse().read().decode().strip()
        finally:
            conn.close()
    if parts.scheme in ("tcp", "udp"):
        if not parts.port:
            raise ValueError(f"{url}: give a port")
        kind = socket.SOCK_STREAM if parts.scheme == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.settimeout(timeout)
            sock.connect((socket.gethostbyname(host), parts.port))
            sock.sendall(b"netlab\n")
            return sock.recv(65536).decode().split(":", 1)[0].strip()
    raise ValueError(f"unsupported URL {url!r}: use http://, tcp:// or udp://")


def run(url: str, count: int, timeout: float) -> dict[str, object]:
    answers: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for _ in range(count):
        try:
            answers[one(url, timeout)] += 1
        except (OSError, ValueError, http.client.HTTPException) as exc:
            errors[type(exc).__name__ + (f" {exc}" if str(exc) else "")] += 1
    return {"requests": count, "answers": dict(sorted(answers.items())), "errors": sum(errors.values()), "error_kinds": dict(errors)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netlab-requests", description="send N requests, count answers per pod")
    parser.add_argument("url")
    parser.add_argument("-n", "--count", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.url, args.count, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
