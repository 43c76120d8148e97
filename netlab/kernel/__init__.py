"""The only code that talks to the kernel: namespaces, rtnetlink, iptables, tc, IPVS, processes.

Everything above this package describes what to build or what to look at; this package does
it. It alone imports pyroute2 and ctypes (an import contract in ``pyproject.toml`` keeps it so),
and it imports nothing heavy at package level: ``import netlab.kernel.netns`` stays cheap, which
keeps process start and the helpers that run inside pods fast.
"""
