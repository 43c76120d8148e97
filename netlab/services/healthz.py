"""kube-proxy's service health check server: ``healthCheckNodePort`` on every node.

For a ``type: LoadBalancer`` Service with ``externalTrafficPolicy: Local`` kube-proxy listens on
its ``healthCheckNodePort`` on every node and answers any GET with the number of the Service's
ready endpoints on that node (kubernetes pkg/proxy/healthcheck/service_health.go ``ServeHTTP``)::

    HTTP/1.1 200 OK   (503 Service Unavailable when there are none)
    Content-Type: application/json
    X-Content-Type-Options: nosniff
    X-Load-Balancing-Endpoint-Weight: <n>

    {"service": {"namespace": "default", "name": "web"}, "localEndpoints": <n>, "serviceProxyHealthy": true}

A cloud load balancer's health check on that port is how it learns which nodes may get the
Service's traffic. netlab runs one such server per node (in the node's namespace, the lab's
cgroup); the config file (rewritten by netlab when Services or endpoints change) says
``{"generation": N, "ports": {"<port>": {"service": "ns/name", "local": {"<node>": n}}}}``.
kube-proxy serves it with Go's net/http: a request whose first line is not ``METHOD URI
HTTP/x.y`` gets ``400 Bad Request`` (net/http server.go, "malformed HTTP request"). So does a
health check that starts with a PROXY protocol v2 header: the known reason an NLB target group
with proxy protocol marks every node unhealthy when it checks this port (cilium/cilium#26274,
kubernetes/ingress-nginx#10982). Only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import socket
import sys
import time
from typing import Any


def answer(service: str, count: int) -> bytes:
    namespace, _, name = service.partition("/")
    body = json.dumps({"service": {"namespace": namespace, "name": name}, "localEndpoints": count, "serviceProxyHealthy": True})
    status = "200 OK" if count > 0 else "503 Service Unavailable"
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"X-Load-Balancing-Endpoint-Weight: {count}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return (head + body).encode()


REQUEST_LINE = re.compile(rb"[A-Z]+ \S+ HTTP/\d\.\d\r?\n")
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"


def reply(request: bytes, service: str, count: int) -> bytes:
    """What Go's net/http in kube-proxy answers: 400 to a malformed request line, else :func:`answer`."""
    if not REQUEST_LINE.match(request):
        return BAD_REQUEST
    return answer(service, count)


def serve(node: str, config: str) -> None:
    listeners: dict[int, socket.socket] = {}
    ports: dict[str, Any] = {}
    mtime = -1.0
    applied = -1
    print(f"healthz {node}: serving", flush=True)
    while True:
        try:
            current = os.stat(config).st_mtime_ns / 1e9
        except OSError:
            current = -1.0
        if current != mtime:
            mtime = current
            try:
                with open(config) as handle:
                    data = json.load(handle)
            except (OSError, ValueError):
                data = {"generation": -1}
            ports = dict(data.get("ports", {}))
            wanted = {int(p) for p in ports}
            for port in sorted(set(listeners) - wanted):
                listeners.pop(port).close()
            for port in sorted(wanted - set(listeners)):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("0.0.0.0", port))
                sock.listen(64)
                listeners[port] = sock
            generation = int(data.get("generation", -1))
            if generation != applied and generation >= 0:
                applied = generation
                print(f"applied generation {generation}", flush=True)
        ready, _, _ = select.select(list(listeners.values()), [], [], 0.1)
        for sock in ready:
            port = next(p for p, s in listeners.items() if s is sock)
            try:
                conn, _peer = sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    request = conn.recv(4096)
                    while request and b"\n" not in request and len(request) < 4096:  # the first line, whole
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        request += chunk
                    entry = ports.get(str(port), {})
                    conn.sendall(reply(request, str(entry.get("service", "")), int(entry.get("local", {}).get(node, 0))))
                except OSError:
                    pass
        time.sleep(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netlab-healthz", description="kube-proxy's healthCheckNodePort server")
    parser.add_argument("--node", required=True)
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    try:
        serve(args.node, args.config)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
