"""netlab's docker-proxy: Docker's userland proxy for one published port, standard library only.

dockerd (with ``"userland-proxy": true``, the default) starts one ``docker-proxy`` per
published port and protocol on the host; netlab runs this stand-in in the Docker host's
namespace with the same arguments dockerd passes (moby v28.5.2,
``libnetwork/portmapper/proxy_linux.go`` StartProxy)::

    python -I netlab/services/docker_proxy.py -proto tcp -host-ip 0.0.0.0 -host-port 8080 \\
        -container-ip 172.17.0.2 -container-port 80

It listens on host-ip:host-port and relays every TCP connection (or UDP flow) to the
container, as ``cmd/docker-proxy`` does: a new connection to the container per client
connection, both directions copied until each side closes, UDP flows forgotten after 90 s
without traffic (``UDPConnTrackTimeout``). The container therefore sees the host's docker0
address (172.17.0.1) as the client. This is what answers ``curl 127.0.0.1:8080`` on the
host (the nat OUTPUT jump skips 127.0.0.0/8) and a container asking for its host's address
(nat ``DOCKER -i docker0 -j RETURN`` skips the DNAT). Traffic from elsewhere is DNATed in
PREROUTING and never reaches the proxy.

Differences from the real binary: dockerd 28 binds the socket itself and hands it over as
fd 4 (``-use-listen-fd``) and reads "0\\n" from a status pipe on fd 3; here the proxy binds
it and prints ``serving`` when listening (the real one still accepts being started that
way, for older daemons).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading

UDP_TIMEOUT = 90.0  # seconds: cmd/docker-proxy udp_proxy.go UDPConnTrackTimeout
UDP_BUFFER = 65507  # the largest UDP payload over IPv4, as docker-proxy's UDPBufSize


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)  # half-close, as docker-proxy's CloseWrite
    except OSError:
        pass


def _relay(client: socket.socket, backend: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(backend, timeout=10)
    except OSError as exc:
        print(f"can't forward to {backend[0]}:{backend[1]}: {exc}", flush=True)
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def serve_tcp(host: tuple[str, int], backend: tuple[str, int]) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(host)
    listener.listen(128)
    print("serving", flush=True)
    while True:
        client, _peer = listener.accept()
        threading.Thread(target=_relay, args=(client, backend), daemon=True).start()


def serve_udp(host: tuple[str, int], backend: tuple[str, int]) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(host)
    flows: dict[tuple[str, int], socket.socket] = {}
    lock = threading.Lock()
    print("serving", flush=True)

    def replies(peer: tuple[str, int], upstream: socket.socket) -> None:
        upstream.settimeout(UDP_TIMEOUT)
        try:
            while True:
                listener.sendto(upstream.recv(UDP_BUFFER), peer)
        except OSError:  # timeout: the flow is idle
            pass
        with lock:
            flows.pop(peer, None)
        upstream.close()

    while True:
        data, peer = listener.recvfrom(UDP_BUFFER)
        with lock:
            upstream = flows.get(peer)
            if upstream is None:
                upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                upstream.connect(backend)
                flows[peer] = upstream
                threading.Thread(target=replies, args=(peer, upstream), daemon=True).start()
        try:
            upstream.send(data)
        except OSError as exc:
            print(f"can't forward to {backend[0]}:{backend[1]}: {exc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docker-proxy", prefix_chars="-")
    parser.add_argument("-proto", choices=("tcp", "udp"), default="tcp")
    parser.add_argument("-host-ip", dest="host_ip", default="0.0.0.0")
    parser.add_argument("-host-port", dest="host_port", type=int, required=True)
    parser.add_argument("-container-ip", dest="container_ip", required=True)
    parser.add_argument("-container-port", dest="container_port", type=int, required=True)
    args = parser.parse_args(argv)
    host, backend = (args.host_ip, args.host_port), (args.container_ip, args.container_port)
    try:
        (serve_tcp if args.proto == "tcp" else serve_udp)(host, backend)
    except OSError as exc:
        print(f"failed to listen on {args.host_ip}:{args.host_port}/{args.proto}: {exc}", flush=True)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
