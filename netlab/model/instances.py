"""EC2 instance types as the AWS VPC CNI sees them: ENIs, IPv4 addresses per ENI, max pods.

The table (``data/ec2-instance-limits.tsv``, 1391 types) is generated from
aws/amazon-vpc-cni-k8s's ``pkg/vpc/vpc_ip_resource_limit.go`` and ``misc/eni-max-pods.txt``
(its header names the commit and date; ``scripts/gen-instance-limits.py`` regenerates it).
It is loaded once and validated: a row that does not parse, or whose published max pods is
not ENIs x (IPv4 per ENI - 1) + 2, stops the import with the line it is on.

Max pods with prefix delegation follows amazon-eks-ami's ``files/max-pods-calculator.sh``:
ENIs x ((IPv4 per ENI - 1) x 16) + 2 where ipamd delegates prefixes (Nitro; netlab also
counts bare metal, as ipamd does, where the calculator asks for Nitro only; other hypervisors
keep the secondary-IP formula), then capped at 110 for instances with at
most 30 vCPUs and 250 above. The published table has no vCPU count, so netlab reads it from
the size (:func:`vcpus`: ``xlarge`` = 4, ``Nxlarge`` = 4N, smaller sizes at most 2, ``metal``
as the largest size of its family), which is how EC2 sizes its general-purpose families.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

TABLE = "ec2-instance-limits.tsv"
IPS_PER_PREFIX = 16  # a /28 (max-pods-calculator.sh IPS_PER_PREFIX)
LOW_CPU_CEILING = 110  # MAX_POD_CEILING_FOR_LOW_CPU
HIGH_CPU_CEILING = 250  # MAX_POD_CEILING_FOR_HIGH_CPU, instances with more than 30 vCPUs
HIGH_CPU_ABOVE = 30
_COLUMNS = ["instance_type", "enis", "ipv4_per_eni", "hypervisor", "bare_metal", "max_pods"]


@dataclass(frozen=True)
class InstanceType:
    name: str
    enis: int
    ipv4_per_eni: int
    hypervisor: str  # nitro | xen | unknown
    bare_metal: bool
    max_pods: int  # as AWS publishes it (secondary-IP mode, no ceiling)

    @property
    def prefix_delegation(self) -> bool:
        """ipamd assigns /28 prefixes only on Nitro or bare-metal instances and falls back to
        secondary IPs elsewhere (pkg/awsutils/awsutils.go ``IsPrefixDelegationSupported``)."""
        return self.hypervisor == "nitro" or self.bare_metal


def _parse(text: str) -> dict[str, InstanceType]:
    out: dict[str, InstanceType] = {}
    header_seen = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if not header_seen:
            if fields != _COLUMNS:
                raise ValueError(f"{TABLE} line {number}: expected the header {' '.join(_COLUMNS)}")
            header_seen = True
            continue
        try:
            name, enis, ips, hypervisor, metal, max_pods = fields
            row = InstanceType(name, int(enis), int(ips), hypervisor, metal == "true", int(max_pods))
        except ValueError:
            raise ValueError(f"{TABLE} line {number}: expected 6 tab-separated fields, got {line!r}") from None
        if not re.fullmatch(r"[a-z0-9-]+\.[a-z0-9-]+", name) or row.enis < 1 or row.ipv4_per_eni < 1:
            raise ValueError(f"{TABLE} line {number}: bad instance type row {line!r}")
        if row.max_pods != row.enis * (row.ipv4_per_eni - 1) + 2:
            raise ValueError(f"{TABLE} line {number}: max pods {row.max_pods} is not ENIs x (IPv4 per ENI - 1) + 2")
        out[name] = row
    return out


@cache
def load() -> dict[str, InstanceType]:
    """The published table, validated (a broken row raises ValueError naming its line)."""
    return _parse(resources.files("netlab.model").joinpath("data", TABLE).read_text())


_SIZE = re.compile(r"(\d*)xlarge")


def vcpus(name: str) -> int:
    """vCPUs read from the size: ``xlarge`` 4, ``Nxlarge`` 4N, below ``xlarge`` 2, ``metal`` the family's largest."""
    family, _, size = name.partition(".")
    match = _SIZE.fullmatch(size)
    if match:
        return 4 * int(match.group(1) or 1)
    if size.startswith("metal"):
        sizes = [vcpus(other) for other in load() if other.startswith(family + ".") and not other.split(".")[1].startswith("metal")]
        return max(sizes, default=HIGH_CPU_ABOVE + 1)
    return 2


def max_pods(kind: InstanceType, prefix_delegation: bool = False) -> tuple[int, str]:
    """Max pods and the formula as text: the published value, or with prefix delegation the
    calculator's (Nitro only), capped at 110/250 by vCPUs as ``max-pods-calculator.sh`` does."""
    secondary = kind.ipv4_per_eni - 1
    if not (prefix_delegation and kind.prefix_delegation):
        return kind.max_pods, f"{kind.enis} ENIs × ({kind.ipv4_per_eni} − 1) + 2 = {kind.max_pods}"
    value = kind.enis * secondary * IPS_PER_PREFIX + 2
    cpus = vcpus(kind.name)
    ceiling = HIGH_CPU_CEILING if cpus > HIGH_CPU_ABOVE else LOW_CPU_CEILING
    formula = f"{kind.enis} ENIs × ({kind.ipv4_per_eni} − 1) × 16 + 2 = {value}"
    if value > ceiling:
        return ceiling, f"{formula}, capped at {ceiling} ({cpus} vCPUs {'>' if cpus > HIGH_CPU_ABOVE else '≤'} 30)"
    return value, formula
