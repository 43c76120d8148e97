"""Packet captures inside any lab namespace (scapy), like tcpdump on a node.

The capture socket is opened *inside* the target namespace from a helper thread
(:func:`netlab.netns.run_in`), with the BPF filter attached in the kernel, and read by
one reader thread. Every capture is bounded by count and time, and closing it (also on
an exception or Ctrl-C) stops the thread and closes the socket: nothing is left running.

    with capture("docker0-internet", "eth0", bpf="icmp", count=2, timeout=5) as seen:
        ...send traffic...
    seen.packets  # scapy packets, after the block waited for `count` or `timeout`
"""

from __future__ import annotations

import errno
import fcntl
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from netlab.errors import EnvironmentProblem, UsageError
from netlab.kernel import netns
from netlab.plan import Host

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SIOCGIFHWADDR = 0x8927
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
DLT_EN10MB = 1
DLT_RAW = 101
SO_TIMESTAMPNS = 35  # Linux: kernel receive time of each frame, as a control message
_TIMESPEC = struct.Struct("@qq")


@dataclass(frozen=True)
class Point:
    """A place to capture: ``target:iface`` of a lab, resolved to its namespace."""

    target: str
    ns: str
    iface: str
    kind: str = ""

    def __str__(self) -> str:
        return f"{self.target}:{self.iface}"


def resolve_point(endpoints: Sequence[Host], text: str) -> Point:
    """``node1:eth0`` -> Point(ns=<lab>-node1, iface=eth0); ``client`` -> the pod's own interface."""
    target, _, iface = text.partition(":")
    for ep in endpoints:
        if ep.name == target:
            return Point(target, ep.ns, iface or ep.iface, ep.kind)
    valid = ", ".join(ep.name for ep in endpoints)
    raise UsageError(f"no node, pod or lab host named {target!r} to capture on; valid: {valid} (as TARGET:IFACE)")


@dataclass
class Seen:
    """One captured frame: the decoded scapy packet, when, and which way it went."""

    packet: Any
    time: float
    outgoing: bool

    def __getitem__(self, layer: Any) -> Any:
        return self.packet[layer]

    def __contains__(self, layer: Any) -> bool:
        return layer in self.packet


def _open(iface: str, bpf: str | None) -> tuple[socket.socket, int]:
    """Open an AF_PACKET socket on ``iface`` (in the calling thread's namespace)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        reply = fcntl.ioctl(probe, SIOCGIFHWADDR, struct.pack("16s16x", iface.encode()[:15]))
    finally:
        probe.close()
    hwtype = struct.unpack("16xH14x", reply)[0]
    linktype = DLT_EN10MB if hwtype in (ARPHRD_ETHER, ARPHRD_LOOPBACK) else DLT_RAW
    # protocol 0: the socket receives nothing until bind(), so no frame slips past the filter
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        if bpf:
            _attach(sock, bpf, linktype)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((iface, ETH_P_ALL))  # Python converts the protocol to network order
    except BaseException:
        sock.close()
        raise
    return sock, linktype


def _attach(sock: socket.socket, bpf: str, linktype: int) -> None:
    from scapy.arch.common import compile_filter
    from scapy.arch.linux import SO_ATTACH_FILTER
    from scapy.libs.structures import sock_fprog
    from scapy.libs.winpcapy import pcap_freecode

    program = compile_filter(bpf, linktype=linktype)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(sock_fprog(program.bf_len, program.bf_insns)))
    finally:
        pcap_freecode(program)


@dataclass
class Capture:
    ns: str
    iface: str
    bpf: str | None = None
    count: int | None = None
    timeout: float = 10.0
    frames: list[Seen] = field(default_factory=list)
    linktype: int = DLT_EN10MB
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _socket: socket.socket | None = field(default=None, repr=False)
    _deadline: float = 0.0

    @property
    def packets(self) -> list[Any]:
        return [f.packet for f in self.frames]

    def start(self) -> Capture:
        if not netns.exists(self.ns):
            raise UsageError(f"no namespace {self.ns!r}: is the lab up?")
        try:
            self._socket, self.linktype = netns.run_in(self.ns, lambda: _open(self.iface, self.bpf))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                there = netns.run_in(self.ns, lambda: [name for _i, name in socket.if_nameindex() if name != "lo"])
                raise UsageError(f"no interface {self.iface!r} in netns {self.ns}; interfaces there: {', '.join(there)}") from None
            raise UsageError(f"cannot capture on {self.ns}:{self.iface}: {exc.strerror or exc}") from None
        except ImportError as exc:
            raise EnvironmentProblem(f"capture filters need libpcap: apt install libpcap0.8 ({exc})") from None
        except Exception as exc:  # scapy raises Scapy_Exception for a filter libpcap cannot compile
            raise UsageError(f"bad capture filter {self.bpf!r}: {exc}") from None
        import scapy.layers.inet  # noqa: F401  (imported here, not in the reader: scapy's first import is slow)
        import scapy.layers.l2  # noqa: F401
        import scapy.layers.vxlan  # noqa: F401  (decode Flannel's UDP 8472 as VXLAN)

        self._deadline = time.monotonic() + self.timeout
        self._thread = threading.Thread(target=self._read, name=f"capture-{self.ns}:{self.iface}", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        from scapy.layers.inet import IP
        from scapy.layers.l2 import Ether

        decode = Ether if self.linktype == DLT_EN10MB else IP
        sock = self._socket
        assert sock is not None
        while True:
            if self.count is not None and len(self.frames) >= self.count:
                return
            if self._stop.is_set():
                # frames the kernel already queued belong to the capture: drain, then stop
                while self._receive(sock, decode, block=False):
                    if self.count is not None and len(self.frames) >= self.count:
                        return
                return
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                return
            ready, _, _ = select.select([sock], [], [], min(remaining, 0.05))
            if ready and not self._receive(sock, decode, block=True):
                return

    def _receive(self, sock: socket.socket, decode: Any, block: bool) -> bool:
        """Read one frame; False when nothing is left (non-blocking) or the socket is gone."""
        try:
            data, ancillary, _flags, address = sock.recvmsg(65535, socket.CMSG_SPACE(_TIMESPEC.size), 0 if block else socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return False
        stamp = time.time()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                seconds, nanos = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                stamp = seconds + nanos / 1e9
        self.frames.append(Seen(decode(data), stamp, address[2] == PACKET_OUTGOING))
        return True

    @property
    def done(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def wait(self) -> list[Any]:
        """Wait until ``count`` packets arrived or the timeout passed; then stop."""
        if self._thread is not None:
            self._thread.join(max(self._deadline - time.monotonic(), 0) + 1)
        self.stop()
        return self.packets

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def write(self, path: str) -> None:
        """Write a pcap that tcpdump -r and Wireshark open."""
        from scapy.utils import PcapWriter

        with PcapWriter(path, linktype=self.linktype, sync=True) as writer:
            for frame in self.frames:
                frame.packet.time = frame.time
                writer.write(frame.packet)


@contextmanager
def capture(ns: str, iface: str, bpf: str | None = None, count: int | None = None, timeout: float = 10.0) -> Iterator[Capture]:
    """Capture on ``ns:iface`` around a block; on a normal exit wait for ``count``/``timeout``."""
    cap = Capture(ns, iface, bpf, count, timeout).start()
    try:
        yield cap
        cap.wait()
    finally:
        cap.stop()
