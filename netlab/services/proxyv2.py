"""The PROXY protocol version 2 header (binary), as an AWS NLB target group with
``proxy_protocol_v2.enabled`` sends it at the start of each TCP connection to a target.

The format is haproxy's specification, doc/proxy-protocol.txt section 2.2
(https://www.haproxy.org/download/1.8/doc/proxy-protocol.txt):

- 12 bytes of signature ``\\r\\n\\r\\n\\0\\r\\nQUIT\\n``;
- one byte version and command: ``0x21`` (version 2, PROXY: a relayed connection) or ``0x20``
  (version 2, LOCAL: the proxy's own connection, e.g. a health check; the receiver uses the
  real connection endpoints and skips the address block);
- one byte family and transport: ``0x11`` TCP over IPv4 (``0x00`` UNSPEC);
- two bytes (network order): the length of what follows, the address block and any TLVs;
- for TCP over IPv4: source address, destination address (4 bytes each), source port,
  destination port (2 bytes each).

AWS's health checks on such a target group send a LOCAL header with the TCP/IPv4 family and
dummy addresses (a capture in kubernetes/kubernetes#57250; pires/go-proxyproto#12 "AWS NLB
sends health check packets with the LOCAL command, and uses the TCPv4 address family with dummy
IP and port information"): :func:`local_header` sends the same shape, zero addresses.

Only the standard library: the NLB's forwarder and the workload load this file by path.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
HEADER_MIN = 16  # signature, version/command, family, length
PROXY, LOCAL = 0x21, 0x20
TCP4 = 0x11
MAX_LENGTH = 1024  # far above any header a load balancer sends; a guard for the reader


@dataclass(frozen=True)
class Header:
    """A decoded header: ``command`` is ``PROXY`` or ``LOCAL`` (addresses are empty for LOCAL)."""

    command: str
    family: str  # TCP4 | UNSPEC | other: 0x..
    src: str = ""
    src_port: int = 0
    dst: str = ""
    dst_port: int = 0
    size: int = 0  # bytes the header took on the wire

    def describe(self) -> str:
        """One line, as the workload reports it: ``v2 PROXY TCP4 203.0.113.1:40312 -> 192.168.1.253:80``."""
        if self.command != "PROXY":
            return f"v2 {self.command} {self.family}"
        return f"v2 PROXY {self.family} {self.src}:{self.src_port} -> {self.dst}:{self.dst_port}"


def proxy_header(src: str, src_port: int, dst: str, dst_port: int) -> bytes:
    """A PROXY header for a relayed TCP/IPv4 connection (client -> the address it connected to)."""
    block = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + struct.pack("!HH", src_port, dst_port)
    return SIGNATURE + bytes((PROXY, TCP4)) + struct.pack("!H", len(block)) + block


def local_header() -> bytes:
    """The LOCAL header an NLB's health check sends: family TCP4, dummy (zero) addresses."""
    return SIGNATURE + bytes((LOCAL, TCP4)) + struct.pack("!H", 12) + bytes(12)


class Invalid(ValueError):
    """Bytes that start like a PROXY v2 header but are not a valid one."""


def needs_more(data: bytes) -> bool:
    """Could ``data`` be the start of a header that has not fully arrived yet?"""
    if len(data) < len(SIGNATURE):
        return SIGNATURE.startswith(data)
    if not data.startswith(SIGNATURE):
        return False
    if len(data) < HEADER_MIN:
        return True
    return len(data) < HEADER_MIN + struct.unpack("!H", data[14:16])[0]


def parse(data: bytes) -> tuple[Header | None, bytes]:
    """(header, the bytes after it); (None, data) when ``data`` does not start with the signature.

    Raises :class:`Invalid` for a header with a bad version or command, or an address block
    too short for its family. TLVs after the addresses are skipped (the length covers them).
    """
    if not data.startswith(SIGNATURE):
        return None, data
    if len(data) < HEADER_MIN:
        raise Invalid("truncated PROXY v2 header")
    version_command, family = data[12], data[13]
    length = struct.unpack("!H", data[14:16])[0]
    if version_command >> 4 != 2 or version_command & 0x0F > 1:
        raise Invalid(f"PROXY header version/command {version_command:#04x} (expected 0x21 or 0x20)")
    if length > MAX_LENGTH or len(data) < HEADER_MIN + length:
        raise Invalid(f"PROXY v2 header length {length} with {len(data) - HEADER_MIN} bytes after it")
    rest = data[HEADER_MIN + length:]
    size = HEADER_MIN + length
    names = {TCP4: "TCP4", 0x00: "UNSPEC"}
    fam = names.get(family, f"{family:#04x}")
    if version_command == LOCAL:
        return Header("LOCAL", fam, size=size), rest
    if family != TCP4:
        return Header("PROXY", fam, size=size), rest  # other families: relayed, addresses not decoded
    if length < 12:
        raise Invalid(f"PROXY v2 TCP4 address block of {length} bytes (needs 12)")
    block = data[HEADER_MIN:HEADER_MIN + 12]
    src, dst = str(ipaddress.IPv4Address(block[0:4])), str(ipaddress.IPv4Address(block[4:8]))
    src_port, dst_port = struct.unpack("!HH", block[8:12])
    return Header("PROXY", fam, src, src_port, dst, dst_port, size), rest
