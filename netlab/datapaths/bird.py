"""BIRD's configuration on a Calico node, as calico-node's confd renders it, in BIRD 2 syntax.

calico-node runs BIRD with the configuration confd writes from three templates in
projectcalico/calico ``confd/etc/calico/confd/templates/`` at v3.31.7 (the last release whose
``bird.cfg.template`` writes the node-to-node mesh itself; v3.32 moved it into confd's Go code): ``bird.cfg.template`` (router id
= the node's IP, ``protocol kernel`` with ``learn``/``persist``/``scan time 2``/``graceful
restart``, ``protocol device``, ``protocol direct`` excluding ``cali*`` and ``kube-ipvs*``,
``template bgp bgp_template`` with ``local as``, ``multihop``, ``gateway recursive``,
``connect delay time 2``/``connect retry time 5``/``error wait time 5,30``, and one
``protocol bgp Mesh_<a_b_c_d>`` per other node, ``passive on`` towards nodes with a higher
address), ``bird_aggr.cfg.template`` (``protocol static`` with a ``blackhole`` route per
block the node owns; ``calico_aggr()`` exports a block and nothing beneath it) and
``bird_ipam.cfg.template`` (``calico_export_to_bgp_peers`` accepts what lies in an IP pool;
``calico_kernel_programming`` puts routes into the pool on ``tunl0`` for IP-in-IP,
only off-subnet next hops for CrossSubnet).

What differs, and why:

- Calico ships its own BIRD 1.6 fork; netlab runs the distribution's BIRD 2, so each protocol
  carries an ``ipv4 { ... }`` channel, and the fork's ``krt_tunnel = "tunl0"`` is written
  ``ifname = "tunl0"; onlink = true; gw = bgp_next_hop;`` (BIRD 2's route attributes), which installs the same
  kernel route ``via <node> dev tunl0 onlink proto bird``. Only BGP-learned routes get the
  tunnel: BIRD 2 would otherwise move the node's own blackhole onto tunl0.
- No BFD (calico-node's ``protocol bfd``/``bfd graceful``), no communities, no route
  reflectors, no global or node-specific peers: the node-to-node mesh only.
- ``log stderr`` instead of syslog: the log lands in the lab's state directory.
"""

from __future__ import annotations

import ipaddress

from netlab.model import Node, Topology

TEMPLATES = "https://github.com/projectcalico/calico/tree/v3.31.7/confd/etc/calico/confd/templates"


def mesh_name(ip: ipaddress.IPv4Address) -> str:
    """The mesh protocol's name for a peer: ``Mesh_192_168_1_12`` (bird.cfg.template)."""
    return "Mesh_" + str(ip).replace(".", "_")


def render(topology: Topology, node: Node) -> str:
    """bird.conf for ``node`` (cni calico)."""
    net = topology.network
    calico = net.calico
    me = topology.node_ip(node)
    subnet = topology.subnet_of(node).cidr
    blocks = topology.calico_blocks()[node.name]
    pool = net.pod_cidr
    lines = [
        f"# BIRD 2 configuration of Calico node {node.name}, written by netlab after calico-node's confd templates",
        f"# ({TEMPLATES}: bird.cfg.template, bird_aggr.cfg.template, bird_ipam.cfg.template)",
        "log stderr all;",
        f"router id {me};",
        "",
        "# bird_aggr.cfg.template: IP blocks for this host",
        "protocol static {",
        "  ipv4;",
        *[f"  route {block} blackhole;" for block in blocks],
        "}",
        "",
        "# Aggregation of routes on this host; export the block, nothing beneath it.",
        "function calico_aggr() {",
    ]
    for block in blocks:
        lines += [
            f"  # Block {block} is confirmed",
            f"  if ( net = {block} ) then {{ accept; }}",
            f"  if ( net ~ {block} ) then {{ reject; }}",
        ]
    lines += [
        "}",
        "",
        "# bird_ipam.cfg.template",
        "function reject_tunnel_routes() {",
        "  # Don't export tunnel routes to other nodes, Felix programs them.",
        "  if (defined(ifname)) then {",
        '    if ((ifname ~ "*.cali") || (ifname ~ "*.calico")) then { reject; }',
        "  }",
        "}",
        "",
        "filter calico_export_to_bgp_peers {",
        "  reject_tunnel_routes();",
        "  calico_aggr();",
        f"  if ( net ~ {pool} ) then {{ accept; }}",
        "  reject;",
        "}",
        "",
        "filter calico_kernel_programming {",
        "  if source = RTS_DEVICE then reject;  # BIRD 1.6's kernel protocol never exported device routes",
        f"  if ( net ~ {pool} ) then {{",
    ]
    if calico.vxlan_mode != "Never":
        lines += [
            "    if source != RTS_BGP then accept;  # the node's own blackhole (felix's, on a real node)",
            "    reject;  # Don't program VXLAN routes into the kernel - these are handled by Felix.",
        ]
    elif calico.ipip_mode == "Never":
        lines.append("    accept;  # ipipMode Never: the route as BGP learned it, via the node on eth0")
    else:
        lines.append("    if source != RTS_BGP then accept;  # the node's own blackhole stays a blackhole")
        if calico.ipip_mode == "CrossSubnet":
            lines.append(f"    if defined(bgp_next_hop) && ( bgp_next_hop ~ {subnet} ) then accept;  # same subnet: no tunnel")
        lines += [
            '    ifname = "tunl0";  # the BIRD 1 fork\'s krt_tunnel = "tunl0": via <node> dev tunl0 onlink',
            "    onlink = true;",
            "    gw = bgp_next_hop;  # the peer node itself, not the router that recursive resolution found",
            "    accept;",
        ]
    lines += [
        "  }",
        "  accept;",
        "}",
        "",
        "# We want to rely on underlay to provide default route.",
        "filter calico_import_from_bgp_peers {",
        "  if ( net = 0.0.0.0/0 ) then { reject; }",
        "  accept;",
        "}",
        "",
        "# bird.cfg.template: synchronization between routing tables and kernel",
        "protocol kernel {",
        "  learn;             # Learn all alien routes from the kernel",
        "  persist;           # Don't remove routes on bird shutdown",
        "  scan time 2;       # Scan kernel routing table every 2 seconds",
        "  ipv4 {",
        "    import all;",
        "    export filter calico_kernel_programming;",
        "  };",
        "  graceful restart;",
        "  merge paths on;",
        "  metric 0;          # BIRD 2 would write metric 32; calico-node's BIRD 1.6 writes none",
        "}",
        "",
        "protocol device {",
        "  scan time 2;",
        "}",
        "",
        "protocol direct {",
        "  ipv4;",
        '  interface -"cali*", -"kube-ipvs*", "*";',
        "}",
        "",
        "template bgp bgp_template {",
        '  description "Connection to BGP peer";',
        f"  local as {calico.as_number};",
        "  multihop;",
        "  ipv4 {",
        "    gateway recursive;",
        "    import filter calico_import_from_bgp_peers;",
        "    export filter calico_export_to_bgp_peers;  # Only want to export routes for workloads.",
        "    add paths on;",
        "  };",
        "  graceful restart;",
        "  connect delay time 2;",
        "  connect retry time 5;",
        "  error wait time 5,30;",
        "}",
        "",
        "# ------------- Node-to-node mesh -------------",
    ]
    for peer in topology.nodes:
        ip = topology.node_ip(peer)
        if peer.name == node.name:
            lines.append(f"# Skipping ourselves ({me})")
            continue
        lines += [
            f"protocol bgp {mesh_name(ip)} from bgp_template {{",
            f"  neighbor {ip} as {calico.as_number};",
            f"  source address {me};",
        ]
        if _above(ip, me):
            lines.append("  passive on; # Mesh is unidirectional, peer will connect to us.")
        lines += ["  graceful restart time 120;", "}"]
    return "\n".join(lines) + "\n"


def _above(peer: ipaddress.IPv4Address, me: ipaddress.IPv4Address) -> bool:
    """The template compares the addresses as strings (``gt $onode_ip $node_ip``)."""
    return str(peer) > str(me)


def expected_routes(topology: Topology, node: Node) -> list[str]:
    """The routes BIRD should put into ``node``'s main table, as ``ip route`` prints them."""
    mode = topology.network.calico.ipip_mode
    blocks = topology.calico_blocks()
    out = [f"blackhole {block} proto bird" for block in blocks[node.name]]
    if topology.network.calico.vxlan_mode != "Never":
        return out  # felix programs the VXLAN routes (the plan's operations)
    for peer in topology.nodes:
        if peer.name == node.name:
            continue
        via = topology.node_ip(peer)
        same = topology.subnet_of(peer) == topology.subnet_of(node)
        for block in blocks[peer.name]:
            if mode == "Always" or (mode == "CrossSubnet" and not same):
                out.append(f"{block} via {via} dev tunl0 proto bird onlink")
            else:
                out.append(f"{block} via {via} dev eth0 proto bird")
    return out


def plan_text(topology: Topology) -> str:
    """What ``netlab plan`` prints after the kernel operations of a Calico lab: each node's
    bird.conf, how BIRD is started, and the routes BGP is expected to produce."""
    out = []
    for node in topology.nodes:
        ns = f"{topology.name}-{node.name}"
        base = f"<state dir>/{topology.name}.bird/{node.name}"
        out += [
            f"# BIRD (calico-node's BGP daemon) in {node.name}, after the namespaces exist:",
            f"cat > {base}.conf <<'EOF'",
            *render(topology, node).rstrip("\n").splitlines(),
            "EOF",
            f"ip netns exec {ns} bird -f -c {base}.conf -s {base}.ctl",
            f"# routes BGP is expected to produce in {node.name} (ip -n {ns} route show proto bird):",
            *[f"#   {route}" for route in expected_routes(topology, node)],
        ]
    return "\n".join(out) + "\n"
