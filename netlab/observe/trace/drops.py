"""Which firewall rule dropped a traced probe: per-rule packet counters before and after.

What a person does on a real host when a packet vanishes: ``iptables-save -c`` (or
``iptables -L -v``) before and after sending it, and look for the DROP whose counter rose.
:func:`snapshot` reads the counters of every rule and chain policy in the raw, mangle and
filter tables of the namespaces on the probe's path (nat cannot drop); :func:`rose` names
the DROP/REJECT rules and DROP policies whose packet counter went up in between, in the
``iptables -S`` form a person would type (``-A DOCKER-USER -s 203.0.113.1/32 -j DROP``,
``-t raw -A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j DROP``, ``-P FORWARD DROP``).

This works for any lab's tables (dockerd's, kube-proxy's, a user's ``netlab exec ...
iptables -I``). Other traffic crossing the same rule during the probe would count too; a
trace sends one probe and takes well under a second, and the rows show where the probe was
last seen, so a stray match is easy to tell.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

TABLES = ("raw", "mangle", "filter")  # the tables that can drop
_COUNTED = re.compile(r"^\[(\d+):\d+\] (-A (\S+) .*)$")
_POLICY = re.compile(r"^:(\S+) (DROP) \[(\d+):\d+\]$")
_DROPS = re.compile(r" -j (DROP|REJECT)(\s|$)")

Counters = dict[tuple[str, str, str], int]  # (namespace, table, rule in -S form) -> packets


@dataclass(frozen=True)
class Drop:
    """A rule (or chain policy) whose packet counter rose while the probe was out."""

    ns: str
    where: str  # the target name of the namespace (host1, gateway, ...)
    table: str
    rule: str  # as iptables -S prints it: "-A CHAIN ... -j DROP" or "-P CHAIN DROP"
    packets: int

    def __str__(self) -> str:
        table = "" if self.table == "filter" else f"-t {self.table} "
        return f"{self.where}: {table}{self.rule}"


def parse(ns: str, saved: str) -> Counters:
    """The DROP/REJECT rules and DROP policies of ``iptables-save -c`` text, with their packets."""
    out: Counters = {}
    table = ""
    seen: dict[tuple[str, str], int] = {}
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if table not in TABLES:
            continue
        policy = _POLICY.match(line)
        if policy:
            out[(ns, table, f"-P {policy.group(1)} DROP")] = int(policy.group(3))
            continue
        rule = _COUNTED.match(line)
        if rule and _DROPS.search(rule.group(2)):
            text = rule.group(2)
            n = seen.get((table, text), 0)  # the same rule twice: tell them apart by position
            seen[(table, text)] = n + 1
            key = text if n == 0 else f"{text} (#{n + 1})"
            out[(ns, table, key)] = int(rule.group(1))
    return out


def snapshot(namespaces: Iterable[str], save: Callable[[str], str]) -> Counters:
    """Counters of every namespace in ``namespaces``; ``save(ns)`` returns ``iptables-save -c``."""
    out: Counters = {}
    for ns in dict.fromkeys(namespaces):
        try:
            out.update(parse(ns, save(ns)))
        except OSError:  # the namespace went away: nothing to read there
            continue
    return out


def rose(before: Counters, after: Counters, names: dict[str, str], last_ns: str | None = None) -> list[Drop]:
    """The drops whose counter went up, those in ``last_ns`` (where the probe was last seen)
    first; ``names`` maps a namespace to the name a person uses for it."""
    found = [
        Drop(ns, names.get(ns, ns), table, rule, count - before.get((ns, table, rule), 0))
        for (ns, table, rule), count in after.items()
        if count > before.get((ns, table, rule), 0)
    ]
    return sorted(found, key=lambda d: (d.ns != last_ns, -d.packets))
