"""A lean, synchronous rtnetlink client for the build's hot path.

pyroute2's ``IPRoute`` runs every request through an asyncio event loop (~1 ms a request,
profiled) and its message classes take 50-300 us to encode one request; a 500-container
docker0 host is 3500 requests. The few messages every lab repeats per pod (new veth or
bridge, link up/master, address, route) are small fixed structures, so this client packs
them with :mod:`struct` (a few microseconds), writes each to a plain ``NETLINK_ROUTE``
socket and reads the kernel's ack before sending the next: an error belongs to exactly
one operation. Errors are pyroute2's :class:`NetlinkError` (callers branch on ``.code``),
carrying the kernel's extended-ack text when it gives one. Everything else goes through
pyroute2 (see :class:`netlab.backend.NetlinkBackend`). :meth:`Rtnl.dump` reads a whole table
(links, addresses, routes) the same way, for the read-only inspector (``netlab status``).

Both sockets must already live in the right namespace (open them with :func:`sockets`
inside it). Interface indexes come from ``SIOCGIFINDEX`` on the second socket, as
iproute2's ``if_nametoindex`` does: an ``RTM_GETLINK`` (or the kernel's echo of a new
veth) would make the kernel allocate a netns id for the peer's namespace, which measured
twice the cost of creating the veth itself.
Message layouts: linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

from pyroute2.netlink.exceptions import NetlinkError

NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
NLM_F_DUMP = 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK = 16, 18, 19
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_GETROUTE = 20, 22, 24, 26
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
NLMSGERR_ATTR_MSG = 1
IFF_UP = 1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_NET_NS_FD = 12, 18, 28
IFLA_BRPORT_MODE = 4  # a bridge port's hairpin mode (nested in IFLA_PROTINFO, family AF_BRIDGE)
NLA_F_NESTED = 0x8000
AF_BRIDGE = 7
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_COMPAT, RT_TABLE_MAIN = 252, 254
RTPROT_STATIC = 4  # what pyroute2 sets, and `ip route add` shows as "proto static"
RTN_UNICAST, RTN_LOCAL = 1, 2
RT_SCOPE_HOST = 254
CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
CHANGE = NLM_F_REQUEST | NLM_F_ACK

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_IFREQ_INDEX = struct.Struct("16si20x")  # struct ifreq: name, ifindex (union padded to 24)
SIOCGIFINDEX = 0x8933


def sockets() -> tuple[socket.socket, socket.socket]:
    """A NETLINK_ROUTE socket and an ioctl socket in the calling thread's namespace."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def _attr(kind: int, payload: bytes) -> bytes:
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


def _name(kind: int, name: str) -> bytes:
    return _attr(kind, name.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _mac(kind: int, mac: str) -> bytes:
    return _attr(kind, bytes.fromhex(mac.replace(":", "")))


def _ipv4(kind: int, address: str) -> bytes:
    return _attr(kind, socket.inet_aton(address))


class Rtnl:
    """Requests on one ``NETLINK_ROUTE`` socket, each answered before the next is sent."""

    def __init__(self, sock: socket.socket, ifsock: socket.socket | None = None) -> None:
        self.sock = sock
        self.ifsock = ifsock
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):  # short acks, with the kernel's reason
            try:
                sock.setsockopt(SOL_NETLINK, option, 1)
            except OSError:
                pass
        sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()
        if self.ifsock is not None:
            self.ifsock.close()

    # ------------------------------------------------------------------ transport
    def request(self, msg_type: int, flags: int, body: bytes) -> list[bytes]:
        """Send one message; return what the kernel answered with before its ack."""
        self.seq += 1
        seq = self.seq
        self.sock.send(_HEADER.pack(_HEADER.size + len(body), msg_type, flags, seq, 0) + body)
        replies: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, mflags, mseq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    break
                message = data[offset : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    code = struct.unpack_from("=i", message, _HEADER.size)[0]
                    if code:
                        raise NetlinkError(-code, _reason(message, mflags, -code))
                    return replies
                if kind == NLMSG_DONE:
                    return replies
                replies.append(message)
                if not flags & (NLM_F_ACK | NLM_F_DUMP):
                    return replies

    def dump(self, msg_type: int, body: bytes) -> list[bytes]:
        """Every object of a table (``RTM_GETLINK``, ``RTM_GETADDR``, ``RTM_GETROUTE`` with ``body``'s
        family): the messages, each with its ``nlmsghdr``, as the kernel sent them."""
        return self.request(msg_type, NLM_F_REQUEST | NLM_F_DUMP, body)

    # ------------------------------------------------------------------ links
    def add_link(self, name: str, kind: str, mtu: int | None = None, mac: str | None = None,
                 peer: str | None = None, peer_mtu: int | None = None, peer_mac: str | None = None,
                 peer_netns_fd: int | None = None) -> None:
        """Create a link (``ip link add``); for a veth, ``peer*`` describe the other end."""
        data = b""
        if peer is not None:
            peer_attrs = _name(IFLA_IFNAME, peer)
            if peer_mtu is not None:
                peer_attrs += _u32(IFLA_MTU, peer_mtu)
            if peer_mac:
                peer_attrs += _mac(IFLA_ADDRESS, peer_mac)
            if peer_netns_fd is not None:
                peer_attrs += _u32(IFLA_NET_NS_FD, peer_netns_fd)
            data = _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, _IFINFO.pack(0, 0, 0, 0, 0) + peer_attrs))
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _name(IFLA_IFNAME, name)
        if mtu is not None:
            body += _u32(IFLA_MTU, mtu)
        if mac:
            body += _mac(IFLA_ADDRESS, mac)
        body += _attr(IFLA_LINKINFO, _name(IFLA_INFO_KIND, kind) + data)
        self.request(RTM_NEWLINK, CREATE, body)

    def set_link(self, index: int = 0, name: str | None = None, up: bool | None = None,
                 master: int | None = None, mtu: int | None = None, mac: str | None = None) -> None:
        """Change a link (``ip link set``), found by ``index`` or, with index 0, by ``name``."""
        body = _IFINFO.pack(0, 0, index, IFF_UP if up else 0, IFF_UP if up is not None else 0)
        if not index and name:
            body += _name(IFLA_IFNAME, name)
        if master is not None:
            body += _u32(IFLA_MASTER, master)
        if mtu is not None:
            body += _u32(IFLA_MTU, mtu)
        if mac:
            body += _mac(IFLA_ADDRESS, mac)
        self.request(RTM_NEWLINK, CHANGE, body)

    def set_hairpin(self, index: int, on: bool = True) -> None:
        """``bridge link set dev <index> hairpin on``: the bridge may send a frame back out the
        port it came in on. An ``AF_BRIDGE`` RTM_SETLINK with the port's mode nested in
        IFLA_PROTINFO, as iproute2's ``bridge link`` and vishvananda/netlink's LinkSetHairpin
        (what the bridge CNI plugin calls) send it."""
        body = _IFINFO.pack(AF_BRIDGE, 0, index, 0, 0)
        body += _attr(IFLA_PROTINFO | NLA_F_NESTED, _attr(IFLA_BRPORT_MODE, bytes([1 if on else 0])))
        self.request(RTM_SETLINK, CHANGE, body)

    def link_index(self, name: str) -> int:
        """The index of interface ``name`` (``NetlinkError`` ``ENODEV`` if there is none)."""
        if self.ifsock is not None:
            try:
                reply = fcntl.ioctl(self.ifsock, SIOCGIFINDEX, _IFREQ_INDEX.pack(name.encode(), 0))
            except OSError as exc:
                raise NetlinkError(exc.errno or errno.ENODEV, f"no interface {name!r}") from None
            return int(_IFREQ_INDEX.unpack(reply)[1])
        replies = self.request(RTM_GETLINK, NLM_F_REQUEST, _IFINFO.pack(0, 0, 0, 0, 0) + _name(IFLA_IFNAME, name))
        if not replies:
            raise NetlinkError(errno.ENODEV, f"no interface {name!r}")
        return int(_IFINFO.unpack_from(replies[0], _HEADER.size)[2])

    # ------------------------------------------------------------------ addresses, routes
    def add_address(self, index: int, address: str, prefixlen: int, flags: int = 0) -> None:
        """``ip addr add address/prefixlen dev <index>`` (IPv4)."""
        body = _IFADDR.pack(socket.AF_INET, prefixlen, flags & 0xFF, 0, index)
        body += _ipv4(IFA_LOCAL, address) + _ipv4(IFA_ADDRESS, address)
        if flags > 0xFF:
            body += _u32(IFA_FLAGS, flags)
        self.request(RTM_NEWADDR, CREATE, body)

    def add_route(self, dst: str | None, dst_len: int, gateway: str | None = None, oif: int | None = None,
                  scope: int = 0, flags: int = 0, table: int = RT_TABLE_MAIN, local: bool = False) -> None:
        """``ip route add`` (IPv4 unicast, proto static; ``local``: type local, scope host)."""
        body = _RTMSG.pack(socket.AF_INET, dst_len, 0, 0, table if table < 256 else RT_TABLE_COMPAT,
                           RTPROT_STATIC, RT_SCOPE_HOST if local else scope, RTN_LOCAL if local else RTN_UNICAST, flags)
        body += _u32(RTA_TABLE, table)
        if dst_len and dst:
            body += _ipv4(RTA_DST, dst)
        if gateway:
            body += _ipv4(RTA_GATEWAY, gateway)
        if oif:
            body += _u32(RTA_OIF, oif)
        self.request(RTM_NEWROUTE, CREATE, body)


def attributes(msg: bytes, offset: int) -> dict[int, bytes]:
    """The netlink attributes of ``msg`` from ``offset`` on: type (flags masked off) -> payload."""
    out: dict[int, bytes] = {}
    while offset + _NLA.size <= len(msg):
        length, kind = _NLA.unpack_from(msg, offset)
        if length < _NLA.size:
            break
        out[kind & 0x3FFF] = msg[offset + _NLA.size : offset + length]
        offset += (length + 3) & ~3
    return out


def _reason(message: bytes, flags: int, code: int) -> str:
    text = os.strerror(code)
    if flags & NLM_F_ACK_TLVS:
        # nlmsgerr: error (4) + the request (just its header when capped), then the TLVs
        request = _HEADER.size if flags & NLM_F_CAPPED else _HEADER.unpack_from(message, _HEADER.size + 4)[0]
        tlvs = attributes(message, _HEADER.size + 4 + ((request + 3) & ~3))
        text_attr = tlvs.get(NLMSGERR_ATTR_MSG)
        if text_attr:
            text += ": " + text_attr.rstrip(b"\0").decode(errors="replace")
    return text
