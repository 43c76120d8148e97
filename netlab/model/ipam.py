"""Calico's IPAM, as far as a lab needs it: a pool cut into blocks, blocks claimed by nodes.

What Calico does (libcalico-go ``lib/ipam``, docs "IP address management"): an IPPool
(``spec.cidr``) is divided into blocks of ``spec.blockSize`` (26 for IPv4: 64 addresses); a
node claims a block (block affinity) the first time it needs an address, hands out the
block's addresses in order, and claims another block when it is full. BIRD exports each
claimed block as one route and installs a ``blackhole`` for it on the owner
(``bird_aggr.cfg.template``), so the pool is routed block by block, never per pod.

What differs: Calico picks a free block pseudo-randomly (seeded by the host name); netlab
claims them in order so that plans are stable: every node's first block in file order, then
the second blocks of nodes that need one. With IP-in-IP the node's first address is
``tunl0``'s (calico-node allocates it before any pod), and pods follow.
"""

from __future__ import annotations

import ipaddress


def claim_blocks(pool: ipaddress.IPv4Network, block_size: int, demands: list[int]) -> list[list[ipaddress.IPv4Network]]:
    """The blocks each node claims, given how many addresses each needs (``demands``, in node
    order; every node claims at least one block, as calico-node does at start for tunl0 or
    its first pod). Raises ValueError when the pool has too few blocks."""
    size = 2 ** (32 - block_size)
    total = pool.num_addresses // size
    wanted = [max(1, -(-demand // size)) for demand in demands]
    if sum(wanted) > total:
        raise ValueError(
            f"the nodes need {sum(wanted)} blocks of /{block_size} ({size} addresses each) but pool {pool} has {total}; "
            "use a larger podCIDR or a smaller blockSize"
        )
    out: list[list[ipaddress.IPv4Network]] = [[] for _ in demands]
    index = 0
    for round_ in range(max(wanted, default=0)):
        for node, count in enumerate(wanted):
            if round_ < count:
                out[node].append(ipaddress.IPv4Network(f"{pool.network_address + index * size}/{block_size}"))
                index += 1
    return out


def addresses(blocks: list[ipaddress.IPv4Network], count: int) -> list[ipaddress.IPv4Address]:
    """The first ``count`` addresses of ``blocks``, block after block (Calico hands out every
    address of a block, its first and last included)."""
    out: list[ipaddress.IPv4Address] = []
    for block in blocks:
        for i in range(block.num_addresses):
            if len(out) == count:
                return out
            out.append(block.network_address + i)
    return out
