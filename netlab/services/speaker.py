"""MetalLB's layer-2 speaker, reduced to what it does on the wire: answer ARP for the LB IPs
its node leads, and announce them with gratuitous ARP when it starts leading one.

Run in a node's namespace (netlab starts one per node, as MetalLB's speaker DaemonSet runs
one hostNetwork pod per node)::

    python -I netlab/services/speaker.py --node node1 --iface eth0 --config /run/netlab/<lab>.metallb

The config file (rewritten by netlab whenever Services, endpoints or the election change)
says which node leads which address: ``{"generation": N, "announce": {"node1":
{"192.168.1.240": "default/web"}}}``. The speaker rereads it when it changes, logs
``applied generation N`` once it acts on it, and:

- replies to an ARP request (broadcast or to its MAC) for an address its node leads, with
  its interface's MAC as the sender (internal/layer2/arp.go ``processRequest``); requests it
  sent itself, gratuitous ones (sender IP = target IP: a new leader announcing) and ARP
  replies are ignored;
- on gaining an address, sends a gratuitous ARP request and reply, broadcast, sender and
  target both the LB IP (arp.go ``Gratuitous``), again after 1.1 s and 2.2 s (announcer.go
  repeats them for a few seconds), so neighbours that cached the old leader follow at once.

It never sees or forwards traffic for the address: kube-proxy's rules do that in the kernel.
Only the standard library: it starts fast in every node.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
BROADCAST = b"\xff" * 6
REPEATS = (0.0, 1.1, 2.2)  # seconds after gaining an address: gratuitous ARP again


def arp_frame(op: int, src_mac: bytes, src_ip: str, dst_mac: bytes, target_mac: bytes, target_ip: str) -> bytes:
    """An Ethernet frame carrying an ARP packet (op 1 request, 2 reply)."""
    eth = dst_mac + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + src_mac + socket.inet_aton(src_ip) + target_mac + socket.inet_aton(target_ip)
    return eth + arp


def parse_request(frame: bytes) -> tuple[bytes, bytes, str, str] | None:
    """(ethernet destination, sender MAC, sender IP, target IP) of an ARP request, else None."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 1):
        return None
    return frame[0:6], frame[22:28], socket.inet_ntoa(frame[28:32]), socket.inet_ntoa(frame[38:42])


def reply_for(frame: bytes, mac: bytes, leading: set[str]) -> bytes | None:
    """The ARP reply this speaker sends for ``frame``, or None (not a request for an address it leads)."""
    request = parse_request(frame)
    if request is None:
        return None
    eth_dst, sender_mac, sender_ip, target_ip = request
    if target_ip not in leading or eth_dst not in (BROADCAST, mac) or sender_ip == target_ip:
        return None  # not ours, not to us, or a gratuitous announcement (another speaker taking over)
    return arp_frame(2, mac, target_ip, sender_mac, sender_mac, sender_ip)


def gratuitous(mac: bytes, ip: str) -> list[bytes]:
    """MetalLB's gratuitous announcement: a request and a reply, both broadcast, both about ``ip``."""
    return [arp_frame(op, mac, ip, BROADCAST, BROADCAST, ip) for op in (1, 2)]


def read_config(path: str) -> tuple[int, dict[str, dict[str, str]]]:
    try:
        with open(path) as handle:
            data = json.load(handle)
        return int(data.get("generation", 0)), dict(data.get("announce", {}))
    except (OSError, ValueError):
        return -1, {}


def serve(node: str, iface: str, config: str) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((iface, ETH_P_ARP))
    mac = sock.getsockname()[4][:6]
    leading: dict[str, str] = {}
    pending: list[tuple[float, str]] = []  # (when, ip): gratuitous ARP to send
    mtime = -1.0
    applied = -1
    print(f"speaker {node}: serving ARP on {iface} ({mac.hex(':')})", flush=True)
    while True:
        try:
            current = os.stat(config).st_mtime
        except OSError:
            current = -1.0
        if current != mtime:
            mtime = current
            generation, announce = read_config(config)
            wanted = dict(announce.get(node, {}))
            for ip in sorted(set(wanted) - set(leading)):
                print(f"announcing {ip} ({wanted[ip]}) on {iface}", flush=True)
                pending += [(time.monotonic() + delay, ip) for delay in REPEATS]
            for ip in sorted(set(leading) - set(wanted)):
                print(f"withdrawing {ip} ({leading[ip]})", flush=True)
            leading = wanted
            if generation != applied and generation >= 0:
                applied = generation
                print(f"applied generation {generation}", flush=True)
        now = time.monotonic()
        for item in [p for p in pending if p[0] <= now]:
            pending.remove(item)
            if item[1] in leading:
                for frame in gratuitous(mac, item[1]):
                    sock.send(frame)
        ready, _, _ = select.select([sock], [], [], 0.05)
        if not ready:
            continue
        frame, address = sock.recvfrom(65535)
        if address[2] == PACKET_OUTGOING:
            continue
        answer = reply_for(frame, mac, set(leading))
        if answer is not None:
            sock.send(answer)
            request = parse_request(frame)
            assert request is not None
            print(f"arp reply {request[3]} is-at {mac.hex(':')} to {request[2]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netlab-speaker", description="MetalLB-style layer-2 speaker: ARP for LB IPs")
    parser.add_argument("--node", required=True)
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    try:
        serve(args.node, args.iface, args.config)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
