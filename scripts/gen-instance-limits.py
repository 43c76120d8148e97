#!/usr/bin/env python3
"""Regenerate netlab/model/data/ec2-instance-limits.tsv from amazon-vpc-cni-k8s.

Usage: scripts/gen-instance-limits.py <checkout of github.com/aws/amazon-vpc-cni-k8s> COMMIT DATE

Reads two of its generated files (both from the EC2 DescribeInstanceTypes API):
pkg/vpc/vpc_ip_resource_limit.go (ENILimit, IPv4Limit, HypervisorType, IsBareMetal per type)
and misc/eni-max-pods.txt (the max pods AWS publishes), and checks that every max pods value
is ENIs x (IPv4 per ENI - 1) + 2 before writing the table.
"""

import re
import sys
from pathlib import Path

repo, commit, date = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
limits = (repo / "pkg/vpc/vpc_ip_resource_limit.go").read_text()
published = {}
for line in (repo / "misc/eni-max-pods.txt").read_text().splitlines():
    if line.strip() and not line.startswith("#"):
        kind, value = line.split()
        published[kind] = int(value)
entry = re.compile(r'\n\t"([^"]+)": \{\n\t\tENILimit:\s+(\d+),\n\t\tIPv4Limit:\s+(\d+),(.*?)\n\t\},', re.S)
rows = []
for kind, enis, ips, rest in entry.findall(limits):
    hypervisor = re.search(r'HypervisorType:\s+"([^"]*)"', rest)
    metal = re.search(r"IsBareMetal:\s+(\w+)", rest)
    assert hypervisor and metal, kind
    max_pods = published[kind]
    assert max_pods == int(enis) * (int(ips) - 1) + 2, kind
    rows.append(f"{kind}\t{enis}\t{ips}\t{hypervisor.group(1)}\t{metal.group(1)}\t{max_pods}")
out = Path(__file__).resolve().parent.parent / "netlab/model/data/ec2-instance-limits.tsv"
out.write_text(
    "# EC2 instance types: ENIs, IPv4 addresses per ENI, hypervisor, bare metal, and the max pods AWS publishes.\n"
    f"# source: github.com/aws/amazon-vpc-cni-k8s commit {commit} ({date}),\n"
    "#   pkg/vpc/vpc_ip_resource_limit.go (ENILimit, IPv4Limit, HypervisorType, IsBareMetal) and\n"
    "#   misc/eni-max-pods.txt (max pods = ENIs x (IPv4 per ENI - 1) + 2), both generated from EC2 DescribeInstanceTypes\n"
    "#   (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-eni.html#AvailableIpPerENI)\n"
    "# regenerate: scripts/gen-instance-limits.py <checkout> <commit> <date>\n"
    "instance_type\tenis\tipv4_per_eni\thypervisor\tbare_metal\tmax_pods\n" + "\n".join(rows) + "\n"
)
print(f"{len(rows)} instance types -> {out}")
