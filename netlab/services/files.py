"""Files a lab's Services write outside its namespaces, each journaled before it exists.

A pod's ``/etc/netns/<netns>/resolv.conf`` (what ``ip netns exec`` bind-mounts on
/etc/resolv.conf) and the cluster DNS's records file. Every file and directory created is
recorded in the lab's files journal first (:meth:`LabState.will_write`), so ``netlab down``
removes it, even after a crash.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

from netlab.model.service import DNS_SERVICE_INDEX, Service
from netlab.services.endpoints import PodInfo, dns_records, resolv_conf
from netlab.services.kubeproxy import Endpoint
from netlab.state import LabState, state_dir

ETC_NETNS = Path("/etc/netns")


def write(state: LabState, path: Path, text: str) -> None:
    """Write ``path`` atomically, journaling it (and any directory made for it) first."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        state.will_write(directory)
        directory.mkdir()
    if not path.exists():
        state.will_write(path)
    tmp = path.with_name(path.name + ".netlab-tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_resolv_conf(state: LabState, pod: PodInfo, service_cidr: ipaddress.IPv4Network) -> None:
    path = ETC_NETNS / pod.netns / "resolv.conf"
    text = resolv_conf(pod.namespace, str(service_cidr.network_address + DNS_SERVICE_INDEX))
    if not path.exists() or path.read_text() != text:
        write(state, path, text)


def write_node_resolv_conf(state: LabState, netns: str, text: str) -> None:
    """A node's resolv.conf (:func:`netlab.services.upstream.node_resolv_conf`), or a pod's with
    ``dnsPolicy: Default`` (the coredns pod): what ``ip netns exec`` mounts, what the cluster DNS forwards to."""
    path = resolv_conf_path(netns)
    if not path.exists() or path.read_text() != text:
        write(state, path, text)


def resolv_conf_path(netns: str) -> Path:
    return ETC_NETNS / netns / "resolv.conf"


def remove_resolv_conf(netns: str) -> None:
    """A deleted pod's resolv.conf, and its directory if now empty."""
    resolv = ETC_NETNS / netns / "resolv.conf"
    resolv.unlink(missing_ok=True)
    try:
        resolv.parent.rmdir()
    except OSError:
        pass


def records_path(lab: str) -> Path:
    return state_dir() / f"{lab}.coredns-records"  # not *.json: LabState.all() reads those as lab records


def write_dns_records(state: LabState, services: list[Service], pods: list[PodInfo], endpoints: dict[str, list[Endpoint]]) -> None:
    write(state, records_path(state.lab), json.dumps(dns_records(services, pods, endpoints), indent=1))


def speaker_config_path(lab: str) -> Path:
    return state_dir() / f"{lab}.metallb"  # which node announces which LB IP (netlab/services/speaker.py)


def write_speaker_config(state: LabState, generation: int, announce: dict[str, dict[str, str]]) -> None:
    write(state, speaker_config_path(state.lab), json.dumps({"generation": generation, "announce": announce}, indent=1, sort_keys=True))


def external_dns_path(lab: str) -> Path:
    return state_dir() / f"{lab}.external-dns"  # the internet's zones (netlab/services/authdns.py)


def write_zones(state: LabState, data: dict[str, object]) -> None:
    write(state, external_dns_path(state.lab), json.dumps(data, indent=1, sort_keys=True))


def write_internet_resolv_conf(state: LabState, netns: str, nameserver: str) -> None:
    """The internet host's resolver: its own authoritative server (what ``ip netns exec`` mounts)."""
    path = ETC_NETNS / netns / "resolv.conf"
    text = f"nameserver {nameserver}\n"
    if not path.exists() or path.read_text() != text:
        write(state, path, text)
