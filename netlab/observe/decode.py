"""A captured frame -> the header fields a person reads off a hop.

:func:`decode` turns a scapy packet (Ethernet or raw IP) into a :class:`Frame`: the outer
IPv4 header, the encapsulation (VXLAN with its VNI and UDP port, IP-in-IP, or none), the
inner IPv4 header, TTL, length and the transport (ICMP type/id/seq, UDP/TCP ports). Pure:
no kernel, no I/O; tests build packets with scapy and check the fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PROTOS = {1: "icmp", 4: "ipip", 6: "tcp", 17: "udp", 47: "gre", 50: "esp"}
ICMP_TYPES = {0: "echo-reply", 3: "unreachable", 8: "echo-request", 11: "time-exceeded"}


@dataclass(frozen=True)
class Frame:
    """The fields of one IPv4 packet as seen at one point, encapsulation unwrapped."""

    src: str  # outer (outermost) IPv4 header
    dst: str
    ttl: int
    length: int  # bytes on the wire at this point (the whole frame)
    encap: str = "none"  # none | vxlan | ipip
    vni: int | None = None
    udp_port: int | None = None  # VXLAN's UDP destination port
    inner_src: str = ""  # the encapsulated header; equal to src/dst when encap is none
    inner_dst: str = ""
    inner_ttl: int = 0
    proto: str = ""  # of the inner packet: icmp | udp | tcp | <number>
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_id: int | None = None
    icmp_seq: int | None = None
    tcp_flags: str = ""
    payload: bytes = b""

    @property
    def encapsulated(self) -> bool:
        return self.encap != "none"

    def encap_text(self) -> str:
        if self.encap == "vxlan":
            return f"VXLAN VNI {self.vni} udp/{self.udp_port}"
        if self.encap == "ipip":
            return "IPIP"
        return "none"

    def short_encap(self) -> str:
        return {"vxlan": f"VXLAN VNI {self.vni}", "ipip": "IPIP"}.get(self.encap, "none")

    def transport_text(self) -> str:
        if self.proto == "icmp":
            kind = ICMP_TYPES.get(self.icmp_type or 0, f"type {self.icmp_type}")
            ident = f" id {self.icmp_id} seq {self.icmp_seq}" if self.icmp_id is not None else ""
            return f"icmp {kind}{ident}"
        if self.proto in ("udp", "tcp"):
            flags = f" [{self.tcp_flags}]" if self.tcp_flags else ""
            return f"{self.proto} {self.sport}->{self.dport}{flags}"
        return self.proto

    def line(self) -> str:
        """One tcpdump-like line."""
        if self.encapsulated:
            return (
                f"{self.src} > {self.dst} {self.encap_text()} ttl {self.ttl} len {self.length} | "
                f"{self.inner_src} > {self.inner_dst} {self.transport_text()} ttl {self.inner_ttl}"
            )
        return f"{self.src} > {self.dst} {self.transport_text()} ttl {self.ttl} len {self.length}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("payload")
        return data


def _ip_layer(packet: Any) -> Any:
    from scapy.layers.inet import IP

    return packet.getlayer(IP) if packet.haslayer(IP) else None


def decode(packet: Any) -> Frame | None:
    """Decode a scapy packet; None when it carries no IPv4 (ARP, IPv6, ...)."""
    import scapy.layers.vxlan  # noqa: F401  (binds UDP 8472/4789 to VXLAN)
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.vxlan import VXLAN

    outer = _ip_layer(packet)
    if outer is None:
        return None
    encap, vni, port, inner = "none", None, None, outer
    if outer.proto == 4 and isinstance(outer.payload, IP):
        encap, inner = "ipip", outer.payload
    elif outer.haslayer(UDP) and outer[UDP].haslayer(VXLAN):
        vx = outer[UDP][VXLAN]
        nested = vx.getlayer(IP)
        if nested is not None:
            encap, vni, port, inner = "vxlan", int(vx.vni), int(outer[UDP].dport), nested
    fields: dict[str, Any] = {}
    layer = inner.payload
    if isinstance(layer, ICMP):
        fields.update(icmp_type=int(layer.type))
        if layer.type in (0, 8):
            fields.update(icmp_id=int(layer.id), icmp_seq=int(layer.seq))
        fields["payload"] = bytes(layer.payload)
    elif isinstance(layer, (UDP, TCP)):
        fields.update(sport=int(layer.sport), dport=int(layer.dport), payload=bytes(layer.payload))
        if isinstance(layer, TCP):
            fields["tcp_flags"] = str(layer.flags)
    return Frame(
        src=str(outer.src),
        dst=str(outer.dst),
        ttl=int(outer.ttl),
        length=len(bytes(packet)),
        encap=encap,
        vni=vni,
        udp_port=port,
        inner_src=str(inner.src),
        inner_dst=str(inner.dst),
        inner_ttl=int(inner.ttl),
        proto=PROTOS.get(int(inner.proto), str(inner.proto)),
        **fields,
    )
