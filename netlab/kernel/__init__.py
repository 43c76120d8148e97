"""The only code that talks to the kernel: namespaces, rtnetlink, iptables, tc, IPVS, processes.

- :mod:`.netns` (namespaces, entered only from helper threads), :mod:`.rtnl` (lean rtnetlink);
- :mod:`.backend` (the :class:`~.backend.Backend` protocol and the netlink backend that applies
  plan operations), :mod:`.fake` (a recording backend for tests);
- :mod:`.iptables`, :mod:`.nft`, :mod:`.tc`, :mod:`.ipvs` (rules, nftables, qdiscs and IPVS tables in a namespace);
- :mod:`.processes` (start, watch and stop processes in namespaces), :mod:`.probes` (feature
  probes in a scratch namespace), :mod:`.inspect` (a read-only view of links, addresses and
  routes, shared by ``status`` and ``trace``).

Everything above this package describes what to build or what to look at; this package does
it. It alone imports pyroute2 and ctypes (an import contract in ``pyproject.toml`` keeps it so),
and it imports nothing heavy at package level: ``import netlab.kernel.netns`` stays cheap, which
keeps process start and the helpers that run inside pods fast.
"""
