"""The emulated NLB's health checker and rule writer: one process in the lab's ``nlb`` namespace.

Run by netlab (in the lab's cgroup, like MetalLB's speaker)::

    python -I netlab/services/nlbhealth.py --config /run/netlab/<lab>.nlb --health /run/netlab/<lab>.nlb-health

The config (rewritten by netlab's controller, :mod:`netlab.services.nlb`, whenever Services or
endpoints change) lists every NLB, its address and target groups, each with its registered
targets and health-check settings. For every registered target this process

- probes it every ``interval`` seconds from the NLB's own address: TCP (a connection
  completes) or HTTP (``GET <path>``, 200-399 is healthy, the controller's default matcher),
  giving up after ``timeout``;
- keeps AWS's target states: a new target is ``initial`` (``Elb.RegistrationInProgress``)
  until ``healthy`` consecutive checks pass; ``healthy`` turns ``unhealthy``
  (``Target.FailedHealthChecks``, ``Target.ResponseCodeMismatch``, ``Target.Timeout``) after
  ``unhealthy`` consecutive failures, and back after ``healthy`` passes; a deregistered one is
  ``draining`` (``Target.DeregistrationInProgress``) for ``deregistration_delay`` seconds:
  it gets no new flows, existing ones (conntrack) go on; then it is gone;
- writes the NLB's iptables (:func:`ruleset`, one iptables-restore) whenever the set of
  targets that get new flows changes: the healthy ones, or, when none is healthy, the
  unhealthy ones (an NLB fails open);
- writes ``describe-target-health`` rows to the health file, and logs ``applied generation N``;
- serves the listeners whose target group has proxy protocol v2 on (:class:`Forwarder`): a
  header cannot be added by NAT, so for those listeners there is no DNAT; this process accepts
  on the NLB's address and port, connects to a target that gets new flows (chosen at random, as
  the DNAT rules choose) from the NLB's address, sends the PROXY v2 header (the client's address
  and port, the NLB's address and port: :mod:`netlab.services.proxyv2`) and then relays both
  ways. Where the group preserves the client's address (instance targets, or the attribute) it
  connects from the client's address and port (a transparent socket), as the target would see
  it behind AWS's NLB; the replies come back through the VPC router and :data:`FORWARDER_MARK`.
  Its health checks on such a group send the LOCAL header first, as AWS's do.

Only the standard library (and ``proxyv2.py`` beside it, loaded by path): it starts fast.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
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
FORWARDER_MARK = 0x4F  # replies to the forwarder's transparent connections: ip rule fwmark 0x4f -> local route (nlbrun)
IDLE_TIMEOUT = 350.0  # an NLB's TCP idle timeout (seconds): the forwarder's relayed connections end after it

REASONS = {
    "initial": ("Elb.RegistrationInProgress", "Target registration is in progress"),
    "healthy": ("", ""),
    "draining": ("Target.DeregistrationInProgress", "Target deregistration is in progress"),
}


def check_addresses(*values: str) -> None:
    for value in values:
        if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?", value):
            raise ValueError(f"refusing to render an NLB rule with address {value!r}")


def ruleset(config: list[dict[str, Any]], active: dict[str, list[tuple[str, int]]], vpc: list[str],
            draining: dict[str, list[tuple[str, int]]] | None = None) -> str:
    """The NLB namespace's nat and filter tables (a full iptables-restore: the namespace is the NLB's alone).

    ``config`` are :meth:`Balancer.to_json` rows, ``active`` the targets (ip, port) that get new
    flows per target group name (healthy ones, or all of them when none is: fail-open);
    ``draining`` the deregistered ones whose connections go on.
    """
    nat = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
    nat_rules: list[str] = []
    post: list[str] = []
    filt = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    filt_rules: list[str] = []
    mangle = ["*mangle", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
              ":POSTROUTING ACCEPT [0:0]"]
    check_addresses(*vpc)
    for cidr in vpc:  # nothing from the VPC leaves for outside unless it is the reply of a balanced flow (no loops)
        filt_rules.append(f'-A FORWARD -s {cidr} -m conntrack ! --ctstate DNAT -m comment --comment "NLB: only replies of balanced flows" -j DROP')
    for index, lb in enumerate(config):
        if lb.get("pending") or not lb.get("ip"):
            continue
        ip = str(lb["ip"])
        check_addresses(ip)
        for g_index, group in enumerate(lb.get("groups", [])):
            proto = str(group["protocol"])
            if proto not in ("tcp", "udp"):
                raise ValueError(f"refusing protocol {proto!r}")
            chain = f"NLB-TG-{index}-{g_index}"
            port = int(group["port"])
            name = str(group["name"])
            if not re.fullmatch(r"k8s-[A-Za-z0-9]{0,8}-[A-Za-z0-9]{0,8}-[0-9a-f]{10}", name):
                raise ValueError(f"refusing target group name {name!r}")
            targets = list(active.get(name, ()))
            match = f"-d {ip}/32 -p {proto} -m {proto} --dport {port}"
            if group.get("proxy_protocol") and proto == "tcp":
                # proxy protocol v2: no DNAT; the forwarder in this namespace accepts on ip:port and
                # connects to a target itself (a header cannot be added by NAT); where the client's
                # address is preserved it connects from that address, and the target's replies (which
                # the VPC router sends here) are marked for local delivery to the forwarder's socket
                if group.get("preserve_client_ip", True):
                    registered = {(str(t["ip"]), int(t["port"])) for t in group.get("targets", [])} | set(targets)
                    registered |= set((draining or {}).get(name, ()))  # their connections go on
                    for tip, tport in sorted(registered):
                        check_addresses(tip)
                        mangle.append(f"-A PREROUTING -s {tip}/32 -p tcp -m tcp --sport {int(tport)} -m comment "
                                      f'--comment "{name}: reply to the proxy protocol forwarder" -j MARK --set-xmark {FORWARDER_MARK:#x}/0xff')
                if not targets:
                    filt_rules.append(f'-A INPUT {match} -m comment --comment "{name}: no targets" -j DROP')
                elif lb.get("scheme") == "internal":
                    filt_rules += [f'-A INPUT -s {cidr} {match} -m comment --comment "{name}: proxy protocol forwarder" -j ACCEPT' for cidr in vpc]
                    filt_rules.append(f'-A INPUT {match} -m comment --comment "{name}: internal NLB, not from the VPC" -j DROP')
                continue
            if lb.get("scheme") == "internal":
                for cidr in vpc:
                    nat_rules.append(f"-A PREROUTING -s {cidr} {match} -m comment --comment \"{name}\" -j {chain}")
                filt_rules.append(f'-A INPUT {match} -m comment --comment "{name}: internal NLB, not from the VPC" -j DROP')
            else:
                nat_rules.append(f'-A PREROUTING {match} -m comment --comment "{name}" -j {chain}')
            if not targets:
                filt_rules.append(f'-A INPUT {match} -m comment --comment "{name}: no targets" -j DROP')
                continue
            nat.append(f":{chain} - [0:0]")
            for i, (tip, tport) in enumerate(targets):
                check_addresses(tip)
                left = len(targets) - i
                stat = f"-m statistic --mode random --probability {1.0 / left:0.10f} " if left > 1 else ""
                nat_rules.append(f'-A {chain} -p {proto} -m comment --comment "{name} -> {tip}:{int(tport)}" {stat}-j DNAT --to-destination {tip}:{int(tport)}')
            if not group.get("preserve_client_ip", True):
                post.append(
                    f"-A POSTROUTING -p {proto} -m conntrack --ctstate DNAT --ctorigdst {ip}/32 --ctorigdstport {port} "
                    f'-m comment --comment "{name}: client IP not preserved" -j SNAT --to-source {ip}'
                )
    lines = nat + nat_rules + post + ["COMMIT"] + filt + filt_rules + ["COMMIT"] + mangle + ["COMMIT"]
    return "\n".join(lines) + "\n"


def probe(source: str, ip: str, port: int, check: dict[str, Any]) -> tuple[bool, str, str]:
    """One health check: (passed, reason, description) as describe-target-health words them."""
    timeout = float(check.get("timeout", 10))
    try:
        with socket.create_connection((ip, port), timeout=timeout, source_address=(source, 0)) as sock:
            if check.get("proxy_protocol"):  # AWS: health checks of a PPv2 target group send a LOCAL header too
                sock.sendall(proxyv2.local_header())
            if check.get("protocol") != "HTTP":
                return True, "", ""
            sock.sendall(f"GET {check.get('path', '/')} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n".encode())
            head = sock.recv(64).decode("latin-1")
    except TimeoutError:
        return False, "Target.Timeout", "Request timed out"
    except OSError:
        return False, "Target.FailedHealthChecks", "Health checks failed"
    match = re.match(r"HTTP/1\.[01] (\d{3})", head)
    code = int(match.group(1)) if match else 0
    if 200 <= code < 400:
        return True, "", ""
    return False, "Target.ResponseCodeMismatch", f"Health checks failed with these codes: [{code}]"


class Target:
    def __init__(self, group: str, ip: str, port: int, target_id: str, hc_port: int) -> None:
        self.group, self.ip, self.port, self.id, self.hc_port = group, ip, port, target_id, hc_port
        self.state = "initial"
        self.reason, self.description = REASONS["initial"]
        self.ok = self.failed = 0
        self.next = 0.0
        self.busy = False
        self.until = 0.0  # draining: when it is gone

    def row(self) -> dict[str, Any]:
        health: dict[str, Any] = {"State": self.state}
        if self.reason:
            health["Reason"], health["Description"] = self.reason, self.description
        return {"Target": {"Id": self.id, "Port": self.port}, "HealthCheckPort": str(self.hc_port), "TargetHealth": health}


class Checker:
    def __init__(self, config: str, health: str) -> None:
        self.config_path, self.health_path = config, health
        self.lock = threading.Lock()
        self.targets: dict[tuple[str, str, int], Target] = {}
        self.config: dict[str, Any] = {}
        self.rendered = ""
        self.dirty = True

    def load(self) -> int:
        try:
            with open(self.config_path) as handle:
                self.config = json.load(handle)
        except (OSError, ValueError):
            return -1
        now = time.monotonic()
        wanted: dict[tuple[str, str, int], tuple[dict[str, Any], dict[str, Any]]] = {}
        for lb in self.config.get("balancers", []):
            for group in lb.get("groups", []):
                for target in group.get("targets", []):
                    wanted[(group["name"], target["ip"], int(target["port"]))] = (group, target)
        with self.lock:
            for key, (_group, target) in wanted.items():
                current = self.targets.get(key)
                if current is None or current.state == "draining":
                    self.targets[key] = Target(key[0], key[1], key[2], target["id"], int(target["hc_port"]))
                    print(f"registered {target['id']}:{key[2]} in {key[0]}: initial", flush=True)
                else:
                    current.hc_port = int(target["hc_port"])
            for key, current in list(self.targets.items()):
                if key not in wanted and current.state != "draining":
                    delay = next((int(g.get("deregistration_delay", 300)) for lb in self.config.get("balancers", [])
                                  for g in lb.get("groups", []) if g["name"] == key[0]), 0)
                    current.state = "draining"
                    current.reason, current.description = REASONS["draining"]
                    current.until = now + delay
                    print(f"deregistered {current.id}:{key[2]} in {key[0]}: draining for {delay} s", flush=True)
            self.dirty = True
        return int(self.config.get("generation", 0))

    def group_settings(self, name: str) -> tuple[dict[str, Any], str] | None:
        for lb in self.config.get("balancers", []):
            for group in lb.get("groups", []):
                if group["name"] == name:
                    return {**group.get("health", {}), "proxy_protocol": bool(group.get("proxy_protocol"))}, str(lb["ip"])
        return None

    def result(self, target: Target, passed: bool, reason: str, description: str, check: dict[str, Any]) -> None:
        with self.lock:
            target.busy = False
            if target.state == "draining":
                return
            if passed:
                target.ok, target.failed = target.ok + 1, 0
                if target.state in ("initial", "unhealthy") and target.ok >= int(check.get("healthy", 3)):
                    self.move(target, "healthy", "", "")
            else:
                target.ok, target.failed = 0, target.failed + 1
                if target.state in ("initial", "healthy") and target.failed >= int(check.get("unhealthy", 3)):
                    self.move(target, "unhealthy", reason, description)
                elif target.state == "unhealthy":
                    target.reason, target.description = reason, description

    def move(self, target: Target, state: str, reason: str, description: str) -> None:
        print(f"{target.id}:{target.port} in {target.group}: {target.state} -> {state}", flush=True)
        target.state, target.reason, target.description = state, reason, description
        self.dirty = True

    def tick(self) -> None:
        now = time.monotonic()
        with self.lock:
            for key, target in list(self.targets.items()):
                if target.state == "draining":
                    if now >= target.until:
                        print(f"{target.id}:{target.port} in {target.group}: drained, removed", flush=True)
                        del self.targets[key]
                        self.dirty = True
                    continue
                settings = self.group_settings(target.group)
                if settings is None or target.busy or now < target.next:
                    continue
                check, source = settings
                target.busy = True
                target.next = now + float(check.get("interval", 10))
                threading.Thread(target=self._probe, args=(target, source, check), daemon=True).start()

    def _probe(self, target: Target, source: str, check: dict[str, Any]) -> None:
        passed, reason, description = probe(source, target.ip, target.hc_port, check)
        self.result(target, passed, reason, description, check)

    def active(self) -> dict[str, list[tuple[str, int]]]:
        out: dict[str, list[tuple[str, int]]] = {}
        by_group: dict[str, list[Target]] = {}
        for target in self.targets.values():
            by_group.setdefault(target.group, []).append(target)
        for group, targets in by_group.items():
            healthy = [t for t in targets if t.state == "healthy"]
            chosen = healthy or [t for t in targets if t.state == "unhealthy"]  # fail open
            out[group] = sorted((t.ip, t.port) for t in chosen)
        return out

    def write(self) -> None:
        with self.lock:
            if not self.dirty:
                return
            self.dirty = False
            active = self.active()
            groups: dict[str, list[dict[str, Any]]] = {}
            for target in sorted(self.targets.values(), key=lambda t: (t.group, t.id, t.port)):
                groups.setdefault(target.group, []).append(target.row())
            draining = {k[0]: [] for k in self.targets}  # type: dict[str, list[dict[str, Any]]]
            for key, target in self.targets.items():
                if target.state == "draining":
                    draining[key[0]].append({"ip": target.ip, "port": target.port})
        gone = {group: [(str(t["ip"]), int(t["port"])) for t in targets] for group, targets in draining.items()}
        rules = ruleset(list(self.config.get("balancers", [])), active, list(self.config.get("vpc", [])), gone)
        if rules != self.rendered:
            done = subprocess.run(["iptables-restore"], input=rules, text=True, capture_output=True, check=False)
            if done.returncode != 0:
                print(f"iptables-restore failed: {done.stderr.strip()}", flush=True)
            else:
                self.rendered = rules
        text = json.dumps({"generation": self.config.get("generation", 0), "groups": groups, "draining": draining, "active": active}, indent=1)
        tmp = self.health_path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(text)
        os.replace(tmp, self.health_path)


class Forwarder:
    """The listeners of target groups with proxy protocol v2: accept, pick a target, send the header, relay."""

    def __init__(self, checker: Checker) -> None:
        self.checker = checker
        self.selector = selectors.DefaultSelector()
        self.listeners: dict[tuple[str, int], tuple[socket.socket, str]] = {}  # (NLB ip, port) -> (socket, group)
        self.preserve: dict[str, bool] = {}  # group -> connect from the client's address (preserve_client_ip)

    def reconcile(self) -> None:
        """Listen on exactly the proxy-protocol listeners of the current config."""
        wanted: dict[tuple[str, int], str] = {}
        for lb in self.checker.config.get("balancers", []):
            if lb.get("pending") or not lb.get("ip"):
                continue
            for group in lb.get("groups", []):
                if group.get("proxy_protocol") and group.get("protocol") == "tcp":
                    wanted[(str(lb["ip"]), int(group["port"]))] = str(group["name"])
                    self.preserve[str(group["name"])] = bool(group.get("preserve_client_ip", True))
        for key in [k for k in self.listeners if self.listeners[k][1] != wanted.get(k)]:
            sock, _group = self.listeners.pop(key)
            self.selector.unregister(sock)
            sock.close()
            print(f"proxy protocol listener {key[0]}:{key[1]}: closed", flush=True)
        for key, group in wanted.items():
            if key in self.listeners:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND: the NLB's address may come a moment later
            try:
                sock.bind(key)
            except OSError as err:
                print(f"proxy protocol listener {key[0]}:{key[1]}: {err}", flush=True)
                sock.close()
                continue
            sock.listen(512)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, key)
            self.listeners[key] = (sock, group)
            print(f"proxy protocol listener {key[0]}:{key[1]} for {group}: listening", flush=True)

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` for new connections and hand each to a thread."""
        if not self.listeners:
            time.sleep(timeout)
            return
        for key, _events in self.selector.select(timeout):
            listener, group = self.listeners[key.data]
            try:
                conn, client = listener.accept()
            except OSError:
                continue
            threading.Thread(target=self.relay, args=(conn, client, key.data, group), daemon=True).start()

    def relay(self, conn: socket.socket, client: tuple[str, int], listener: tuple[str, int], group: str) -> None:
        conn.setblocking(True)
        conn.settimeout(IDLE_TIMEOUT)
        with self.checker.lock:
            targets = self.checker.active().get(group, [])
        if not targets:
            conn.close()
            return
        ip, port = random.choice(targets)
        try:
            upstream = connect((ip, port), client if self.preserve.get(group) else (listener[0], 0), self.preserve.get(group, False))
        except OSError:
            conn.close()  # the client sees its connection reset, as when an NLB's target refuses
            return
        upstream.settimeout(IDLE_TIMEOUT)
        with conn, upstream:
            try:
                upstream.sendall(proxyv2.proxy_header(client[0], client[1], listener[0], listener[1]))
            except OSError:
                return
            back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
            back.start()
            _pump(conn, upstream)
            back.join(IDLE_TIMEOUT)


def connect(target: tuple[str, int], source: tuple[str, int], transparent: bool) -> socket.socket:
    """A connection to ``target`` from ``source``; ``transparent``: from an address that is not
    this namespace's (the client's, IP_TRANSPARENT), its own port if free, else any."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if transparent:
            sock.setsockopt(socket.IPPROTO_IP, 19, 1)  # IP_TRANSPARENT
            try:
                sock.bind(source)
            except OSError:
                sock.bind((source[0], 0))
        else:
            sock.bind(source)
        sock.settimeout(10)
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction until its end, then pass the end on (half-close)."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(config: str, health: str) -> None:
    checker = Checker(config, health)
    forwarder = Forwarder(checker)
    mtime = -1.0
    applied = -1
    print("nlb health checker: serving", flush=True)
    while True:
        try:
            current = os.stat(config).st_mtime_ns / 1e9
        except OSError:
            current = -1.0
        generation = applied
        if current != mtime:
            mtime = current
            generation = checker.load()
            forwarder.reconcile()
        checker.tick()
        checker.write()
        if generation != applied and generation >= 0:
            applied = generation
            print(f"applied generation {generation}", flush=True)
        forwarder.poll(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netlab-nlb-health", description="emulated AWS NLB: health checks and forwarding rules")
    parser.add_argument("--config", required=True)
    parser.add_argument("--health", required=True)
    args = parser.parse_args(argv)
    try:
        serve(args.config, args.health)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
