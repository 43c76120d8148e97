"""The trace's probe: one ICMP echo, UDP datagram or TCP connection, recognisable at every hop.

ICMP echoes go out of a raw socket, UDP datagrams and TCP connections out of a plain socket,
all opened inside the source namespace; for UDP/TCP an echo server listens in each namespace
the probe may reach (the destination, every pod a DNAT may send it to) for the run of the
probe, unless something listens there already (a workload). Every probe carries a unique
marker in its payload, which survives NAT and encapsulation, so :meth:`TraceProbe.matches`
recognises the same probe, and its reply, at every hop. Every socket and thread is closed on
any exit (also Ctrl-C).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from netlab.kernel import netns
from netlab.observe.decode import Frame
from netlab.observe.icmp import echo_request

PROBE_PORT = 8080
REPLY_TAG = b"-reply"


@dataclass
class TraceProbe:
    """One trace's probe: what is sent, how to recognise it, and whether it was answered.

    (Not a ping pair of ``netlab check`` nor a scenario's probe step.)
    """

    proto: str  # icmp | udp | tcp
    src_ip: str
    dst_ip: str
    port: int | None
    marker: bytes
    ident: int  # the ICMP echo identifier
    client_port: int | None = None
    target_ports: tuple[int, ...] = ()  # where a DNAT may send it
    replied: bool = False
    detail: str = ""
    http: bytes = b""  # TCP: an HTTP request carrying the marker (for proxies), else the bare marker
    answer: bytes = b""  # what came back (TCP, UDP)

    def http_request(self, host: str, path: str) -> None:
        """Send an HTTP GET for ``path`` to ``host`` instead of the bare marker. The marker rides
        in the query string and in an ``X-Lab-Trace`` header (the hostname workload echoes
        ``X-Lab-*`` headers), so it survives a proxy's new connection and a path rewrite."""
        mark = self.marker.decode()
        target = f"{path}{'&' if '?' in path else '?'}netlab-trace={mark}"
        self.http = (
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: netlab-trace\r\n"
            f"X-Lab-Trace: {mark}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        ).encode()

    def answer_fields(self) -> dict[str, str]:
        """An HTTP answer's status and the hostname workload's story (pod, client, x-forwarded-for...)."""
        if not self.answer.startswith(b"HTTP/"):
            return {}
        head, _, body = self.answer.replace(b"\r\n", b"\n").partition(b"\n\n")
        lines = head.decode("latin-1").split("\n")
        fields = {"status": " ".join(lines[0].split(" ")[1:3])}
        story = body.decode("latin-1", "replace").splitlines()
        if story and ":" not in story[0]:
            fields["pod"] = story[0].strip()
        for line in story[1:]:
            key, sep, value = line.partition(": ")
            if sep and key in ("client", "x-forwarded-for", "x-real-ip", "host", "path", "proxy-protocol"):
                fields[key] = value.strip()
        return fields

    def matches(self, frame: Frame) -> str | None:
        """'request', 'reply' or None: is ``frame`` this probe (at any hop, after any NAT)?"""
        if self.marker not in frame.payload:
            return None
        if frame.proto == "icmp":
            return "request" if frame.icmp_type == 8 else "reply" if frame.icmp_type == 0 else None
        if self.marker + REPLY_TAG in frame.payload:
            return "reply"  # netlab's echo server answers with the marker and a tag
        ports = {self.port, *self.target_ports}
        if frame.dport in ports or (self.client_port is not None and frame.sport == self.client_port):
            return "request"
        if frame.sport in ports:
            return "reply"
        return None


def send_probe(src_ns: str, listeners: Sequence[tuple[str, int]], probe: TraceProbe, timeout: float) -> None:
    """Send one probe from ``src_ns`` and wait for its reply (sets ``probe.replied``).

    ``listeners``: (namespace, port) where an echo server answers UDP/TCP probes for the
    run of the probe (skipped where something already listens, e.g. a workload).
    """
    with ExitStack() as stack:
        if probe.proto == "icmp":
            sock = netns.run_in(src_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
            stack.callback(sock.close)
            sock.sendto(echo_request(probe.ident, 1, probe.marker), (probe.dst_ip, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                data = sock.recv(65535)
                ihl = (data[0] & 0x0F) * 4
                kind, _code, _sum, ident = struct.unpack("!BBHH", data[ihl : ihl + 6])
                if kind == 0 and ident == probe.ident and probe.marker in data:
                    probe.replied = True
                    return
            probe.detail = "no echo reply"
            return
        kind = socket.SOCK_DGRAM if probe.proto == "udp" else socket.SOCK_STREAM
        stop = threading.Event()
        for ns, port in listeners:
            server = netns.run_in(ns, lambda port=port: _listener(kind, port))  # type: ignore[misc]
            if server is None:
                continue
            stack.callback(server.close)
            echo = threading.Thread(target=_echo, args=(server, kind, stop, timeout), name="trace-echo", daemon=True)
            echo.start()
            stack.callback(echo.join, timeout + 1)
        stack.callback(stop.set)  # runs first: the echo threads end, then are joined, then closed
        client = netns.run_in(src_ns, lambda: socket.socket(socket.AF_INET, kind))
        stack.callback(client.close)
        client.settimeout(timeout)
        try:
            client.bind(("0.0.0.0", 0))
            probe.client_port = client.getsockname()[1]
            if kind == socket.SOCK_DGRAM:
                client.sendto(probe.marker, (probe.dst_ip, probe.port))
                data = client.recv(65535)
            else:
                client.connect((probe.dst_ip, probe.port))
                client.sendall(probe.http or probe.marker)
                data = _read_answer(client, bool(probe.http))
            probe.replied = bool(data)
            probe.answer = data
            if probe.http and data:
                probe.detail = f"HTTP {probe.answer_fields().get('status', '?')}"
            elif data and probe.marker not in data:
                probe.detail = "answered by a server that is not an echo"
        except OSError as exc:
            probe.detail = exc.strerror or str(exc)


def _read_answer(client: socket.socket, whole: bool, limit: int = 65536) -> bytes:
    """The first data back, or (HTTP, ``Connection: close``) everything until the server closes."""
    data = client.recv(limit)
    while whole and data and len(data) < limit:
        try:
            more = client.recv(limit - len(data))
        except OSError:
            break
        if not more:
            break
        data += more
    return data


def _listener(kind: int, port: int) -> socket.socket | None:
    """An echo server's socket on ``port``; None if something already listens there."""
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        if kind == socket.SOCK_STREAM:
            sock.listen(4)
    except OSError:
        sock.close()
        return None
    return sock


def _echo(server: socket.socket, kind: int, stop: threading.Event, timeout: float) -> None:
    """Answer one datagram or one connection's first data with the data and :data:`REPLY_TAG`."""
    deadline = time.monotonic() + timeout
    conn: socket.socket | None = None
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([server if conn is None else conn], [], [], 0.05)
            if not ready:
                continue
            if kind == socket.SOCK_DGRAM:
                data, address = server.recvfrom(65535)
                server.sendto(data + REPLY_TAG, address)
                return
            if conn is None:
                conn, _ = server.accept()
                continue
            data = conn.recv(65535)
            if data:
                conn.sendall(data + REPLY_TAG)
            return
    except OSError:
        return
    finally:
        if conn is not None:
            conn.close()
