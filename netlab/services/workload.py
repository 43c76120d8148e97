"""The built-in workload pods run: a hostname server, like the tutorials' hello apps.

Run inside a pod's namespace (netlab starts it with ``ip netns exec``)::

    python -I netlab/services/workload.py --name web-1 --tcp 8080 --udp 5353

- TCP: an HTTP request gets ``200`` and a body that tells the whole story of the request:
  the pod's name on the first line, then the path and Host it was asked for, the client
  address it saw, and the forwarding headers a proxy (an ingress controller) added::

      web-2
      path: /foo
      host: foo.example.com
      client: 10.244.3.2:51532
      x-forwarded-for: 203.0.113.1
      x-real-ip: 203.0.113.1
      x-forwarded-proto: https

  Headers named ``X-Lab-*`` are echoed as well (what a gateway's header filter added).
  A connection that starts with a PROXY protocol v2 header (an NLB target group with
  ``proxy_protocol_v2.enabled``) is read as a server configured for it reads it: the header is
  taken off the stream and reported next to the socket's peer, so one answer shows both::

      client: 192.168.1.253:40112
      proxy-protocol: v2 PROXY TCP4 203.0.113.1:51532 -> 192.168.1.253:80

  (a LOCAL header, a health check's, shows as ``v2 LOCAL TCP4``; a broken header closes the
  connection, as nginx's ``listen ... proxy_protocol`` does). Unlike such a server, a
  connection without the header is served too.
  (``GET /client`` answers with just the client's address as the pod saw it:
  ``203.0.113.1:40312``.) Anything else is echoed back prefixed with ``<pod>: ``.
- UDP: each datagram is echoed back prefixed with ``<pod>: ``.
Each connection is one line on stdout (``<client> <port>/<proto>``), so the log shows
which clients reached the pod and from which address.
"""

from __future__ import annotations

import argparse
import importlib.util
import selectors
import socket
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any


def _sibling(name: str) -> ModuleType:
    """A module beside this file (run as ``python -I file.py``, this directory is not on sys.path)."""
    spec = importlib.util.spec_from_file_location(f"_netlab_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


proxyv2 = _sibling("proxyv2")

HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")
ECHOED = "x-lab-"  # headers the server echoes too (e.g. one an HTTPRoute's RequestHeaderModifier sets)
FORWARDING = ("x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-original-forwarded-for")


def http_reply(name: str, request: bytes, client: str, proxy: Any = None) -> bytes:
    """The answer to one HTTP request; ``proxy``: the connection's PROXY v2 header (proxyv2.Header), if any."""
    lines = request.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("latin-1").split("\n")
    parts = lines[0].split(" ")
    path = parts[1] if len(parts) > 2 else "/"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers.setdefault(key.strip().lower(), value.strip())
    if path.startswith("/client"):
        body = client.encode() + b"\n"
    else:
        story = [name, f"path: {path}", f"host: {headers.get('host', '')}", f"client: {client}"]
        if proxy is not None:
            story.append(f"proxy-protocol: {proxy.describe()}")
        story += [f"{key}: {headers[key]}" for key in FORWARDING if key in headers]
        story += [f"{key}: {value}" for key, value in headers.items() if key.startswith(ECHOED)]
        body = "\n".join(story).encode("latin-1", "replace") + b"\n"
    status = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nX-Pod-Name: {name}\r\nX-Client: {client}\r\nConnection: close\r\n\r\n"
    ).encode()
    return status + (b"" if request.startswith(b"HEAD ") else body)


def _serve_tcp(name: str, conn: socket.socket, client: str) -> None:
    with conn:
        conn.settimeout(10)
        try:
            data = conn.recv(65536)
            while data and proxyv2.needs_more(data):
                more = conn.recv(65536)
                if not more:
                    break
                data += more
            try:
                proxy, data = proxyv2.parse(data)
            except proxyv2.Invalid as err:
                print(f"{client}: {err}: connection closed", flush=True)
                return
            if proxy is not None:
                print(f"{client} proxy-protocol {proxy.describe()}", flush=True)
                if not data:
                    data = conn.recv(65536)
            if data.startswith(HTTP_METHODS):
                while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < 65536:
                    more = conn.recv(65536)
                    if not more:
                        break
                    data += more
                conn.sendall(http_reply(name, data, client, proxy))
                return
            while data:
                conn.sendall(name.encode() + b": " + data)
                data = conn.recv(65536)
        except OSError:
            return


def serve(name: str, tcp: list[int], udp: list[int]) -> None:
    sel = selectors.DefaultSelector()
    sock: Any
    for port in tcp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(512)
        sel.register(sock, selectors.EVENT_READ, ("tcp", port))
    for port in udp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        sel.register(sock, selectors.EVENT_READ, ("udp", port))
    print(f"{name}: serving tcp {tcp} udp {udp}", flush=True)
    while True:
        for key, _ in sel.select():
            proto, port = key.data
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if proto == "tcp":
                conn, addr = sock.accept()
                client = f"{addr[0]}:{addr[1]}"
                print(f"{client} {port}/tcp", flush=True)
                threading.Thread(target=_serve_tcp, args=(name, conn, client), daemon=True).start()
            else:
                data, addr = sock.recvfrom(65536)
                print(f"{addr[0]}:{addr[1]} {port}/udp", flush=True)
                sock.sendto(name.encode() + b": " + data, addr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netlab-workload", description="hostname server: answers with the pod's name")
    parser.add_argument("--name", required=True)
    parser.add_argument("--tcp", type=int, action="append", default=[])
    parser.add_argument("--udp", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    try:
        serve(args.name, args.tcp, args.udp)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
