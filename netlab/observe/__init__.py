"""Looking at a lab: capture, decode, expectations, reachability checks, status and trace.

Nothing here builds anything: it reads the kernel through :mod:`netlab.kernel` and the lab's
record through :mod:`netlab.state`, sends probes, and returns plain data that
:mod:`netlab.cli` renders.
"""
