"""Naming rules, written down in one place.

- Namespaces carry the lab name so they read well in ``ip netns list``:
  ``<lab>-<node>``, ``<lab>-<pod>``, ``<lab>-underlay``, ``<lab>-gateway``, ``<lab>-internet``.
- Interface names never carry the lab name. Inside a node they are the real ones
  (``eth0``, ``docker0``, ``cni0``, ``flannel.1``, ``tunl0``); host ends of pod veths are
  named the way each runtime names them, from a hash of the pod's name:
  Docker ``veth`` + 7 hex, Calico and the AWS VPC CNI ``cali``/``eni`` + 11 hex of
  the SHA-1 of ``<namespace>.<pod>``.
- In the underlay namespace, a node's port is ``<node>-eth0``; the gateway's is ``gw-<subnet>``.
- A lab's own names (lab, nodes, subnets, pods) are DNS-1035 labels: lowercase letters, digits
  and ``-``, starting with a letter, not ending with ``-`` (:func:`name_problem`). A lab name
  has at most 16 characters; it also names the lab's record ``<state dir>/<lab>.json``, so a
  name that passes can never point outside that directory.
"""

from __future__ import annotations

import hashlib
import re

UNDERLAY = "underlay"
GATEWAY = "gateway"
INTERNET = "internet"
LAB_NAME_MAX = 16  # it prefixes every namespace of the lab

_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def name_problem(kind: str, value: object, max_len: int, why: str) -> str | None:
    """What is wrong with ``value`` as one of netlab's names, or None when it is fine."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        return f"invalid {kind} {shown}: use lowercase letters, digits and '-', starting with a letter and not ending with '-'"
    if len(value) > max_len:
        return f"{kind} {value!r} is {len(value)} characters; at most {max_len} ({why})"
    return None


def lab_name_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a lab name (the rule ``up`` applies), or None."""
    return name_problem("lab name", value, LAB_NAME_MAX, "it prefixes every namespace of the lab")


def namespace(lab: str, target: str) -> str:
    return f"{lab}-{target}"


def _hex(*parts: str, length: int) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:length]


def docker_veth(node: str, pod: str) -> str:
    return "veth" + _hex(node, pod, length=7)


def bridge_plugin_veth(node: str, pod: str) -> str:
    """The host end of a pod's veth as the CNI bridge plugin names it: ``veth`` + 8 hex digits
    (containernetworking/plugins ``pkg/ip/link_linux.go`` ``RandomVethName``: 4 random bytes
    as hex). netlab derives the bytes from the node and pod, so that a plan is the same every
    time it is computed (``apply`` and ``plan`` compare plans), where the plugin draws them at random."""
    return "veth" + _hex(node, pod, "bridge-plugin", length=8)


def calico_veth(node: str, pod: str) -> str:
    return "cali" + _hex(node, pod, length=11)


def eni_veth(namespace: str, pod: str) -> str:
    """The AWS VPC CNI's host-side name for a pod's veth: ``eni`` (AWS_VPC_K8S_CNI_VETHPREFIX's
    default) + the first 11 hex digits of the SHA-1 of ``<namespace>.<pod>``
    (amazon-vpc-cni-k8s ``pkg/networkutils/names.go`` ``GeneratePodHostVethName``; the same
    suffix Calico computes, so its policy finds the interface)."""
    return "eni" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def mac(*parts: str, prefix: str = "02") -> str:
    """A stable locally administered unicast MAC derived from ``parts``."""
    head = prefix.split(":")
    digest = _hex(*parts, length=12)
    tail = [digest[i : i + 2] for i in range(0, 2 * (6 - len(head)), 2)]
    return ":".join(head + tail)


def docker_mac(ip: str) -> str:
    """Docker's container MAC: 02:42 followed by the IPv4 address bytes."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


def calico_workload_veth(namespace: str, pod: str) -> str:
    """Calico's host-side name for a pod's veth: ``cali`` + the first 11 hex digits of the
    SHA-1 of ``<namespace>.<pod>`` (libcalico-go ``lib/backend/k8s/conversion``
    ``VethNameForWorkload``, with felix's default interface prefix ``cali``)."""
    return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]
