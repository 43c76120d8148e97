"""Backends apply plan operations to a kernel.

:class:`NetlinkBackend` talks rtnetlink through pyroute2, one socket per namespace
(opened from a helper thread, see :mod:`netlab.kernel.netns`); iptables rules go in with one
``iptables-restore`` per namespace, as kube-proxy does. :class:`RecordingBackend` is the
fake: it records operations and can fail on demand, so plans, journaling and rollback are
tested without root.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Sequence
from typing import Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NUD_PERMANENT

from netlab.errors import EnvironmentProblem
from netlab.kernel import netns
from netlab.kernel.rtnl import Rtnl, sockets
from netlab.plan import (
    AddAddress,
    AddBridge,
    AddFdb,
    AddNeighbour,
    AddRoute,
    AddRule,
    AddVeth,
    AddVxlan,
    CreateNamespace,
    LinkUp,
    LoadIptables,
    Operation,
    SetMac,
    SetMaster,
    SetSysctl,
    SetTunnel,
)

RTNH_F_ONLINK = 4
RT_SCOPE_LINK = 253
RT_TABLE_MAIN = 254
IFA_F_NOPREFIXROUTE = 0x200


class Backend(Protocol):
    def apply(self, op: Operation) -> None: ...

    def remove_namespace(self, ns: str) -> None: ...

    def close(self) -> None: ...


class RecordingBackend:
    """A fake kernel: records what would be done; ``fail_at`` makes operation N raise."""

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None) -> None:
        self.applied: list[Operation] = []
        self.namespaces: set[str] = set()
        self.removed: list[str] = []
        self.fail_at = fail_at
        self.error = error or OSError(errno.EPERM, "injected failure")
        self.closed = False

    def apply(self, op: Operation) -> None:
        if self.fail_at is not None and len(self.applied) == self.fail_at:
            raise self.error
        if isinstance(op, CreateNamespace):
            if op.ns in self.namespaces:
                raise FileExistsError(op.ns)
            self.namespaces.add(op.ns)
        self.applied.append(op)

    def remove_namespace(self, ns: str) -> None:
        self.namespaces.discard(ns)
        self.removed.append(ns)

    def close(self) -> None:
        self.closed = True


class NetlinkBackend:
    """Applies operations through netlink inside the lab's namespaces.

    The operations every lab repeats per pod (namespaces, veths, bridges, enslaving, link
    up, addresses, routes) go through :class:`netlab.rtnl.Rtnl`, a lean client on the
    sockets opened when the namespace was created (interface indexes by ioctl, cached).
    Rarer operations use pyroute2's ``IPRoute`` on another socket in the same namespace.
    """

    def __init__(self) -> None:
        self._ipr: dict[str, IPRoute] = {}
        self._rtnl: dict[str, Rtnl] = {}
        self._index: dict[tuple[str, str], int] = {}
        self._creator: netns.Creator[Rtnl] | None = None  # creates the plan's namespaces ahead
        self._taken: set[str] = set()  # names someone else's namespace already had: never removed

    # ------------------------------------------------------------ plumbing
    def ipr(self, ns: str) -> IPRoute:
        handle = self._ipr.get(ns)
        if handle is None:
            handle = self._ipr[ns] = IPRoute(use_socket=netns.netlink_socket(ns))
        return handle

    def rtnl(self, ns: str) -> Rtnl:
        handle = self._rtnl.get(ns)
        if handle is None:
            handle = self._rtnl[ns] = Rtnl(*netns.run_in(ns, sockets))
        return handle

    def index(self, ns: str, name: str) -> int:
        key = (ns, name)
        if key not in self._index:
            try:
                self._index[key] = self.rtnl(ns).link_index(name)
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    raise NetlinkError(errno.ENODEV, f"no interface {name!r} in namespace {ns}") from None
                raise
        return self._index[key]

    def close(self) -> None:
        self._stop_creating()
        for handle in self._ipr.values():
            handle.close()
        for rtnl in self._rtnl.values():
            rtnl.close()
        self._ipr.clear()
        self._rtnl.clear()
        self._index.clear()

    def prepare(self, operations: Sequence[Operation]) -> list[str]:
        """Start creating every namespace of ``operations`` in helper threads, ahead of
        ``apply`` (the caller has journaled them all): namespace creation then runs on the
        other cores while this thread configures links. ``apply(CreateNamespace)`` waits for
        its namespace and reports how that went, in plan order. Returns the names known to
        be taken by someone else's namespace (none yet: those errors come in order too)."""

        def then() -> Rtnl:
            rtnl = Rtnl(*sockets())
            rtnl.set_link(index=1, up=True)
            return rtnl

        names = [op.ns for op in operations if isinstance(op, CreateNamespace)]
        if names:
            self._creator = netns.Creator(names, then)
        return []

    def _stop_creating(self) -> None:
        """Stop creating ahead (before removing anything); close what nobody took."""
        if self._creator is not None:
            for result in self._creator.stop().values():
                if isinstance(result, Rtnl):
                    result.close()
            self._creator = None

    def remove_namespace(self, ns: str) -> None:
        self._stop_creating()
        if ns in self._taken:
            return
        handle = self._ipr.pop(ns, None)
        if handle is not None:
            handle.close()
        rtnl = self._rtnl.pop(ns, None)
        if rtnl is not None:
            rtnl.close()
        self._index = {k: v for k, v in self._index.items() if k[0] != ns}
        netns.remove(ns)

    # ------------------------------------------------------------ operations
    def apply(self, op: Operation) -> None:
        handler: Callable[[Operation], None] = getattr(self, "_" + type(op).__name__)
        handler(op)

    def _CreateNamespace(self, op: CreateNamespace) -> None:  # noqa: N802 - named after the op
        if self._creator is not None and op.ns in self._creator.names:  # made ahead by prepare()
            try:
                rtnl = self._creator.take(op.ns)
            except FileExistsError:
                self._taken.add(op.ns)
                raise
            assert rtnl is not None
            self._rtnl[op.ns] = rtnl
            return
        socks = netns.create(op.ns, then=sockets)
        assert socks is not None
        rtnl = self._rtnl[op.ns] = Rtnl(*socks)
        rtnl.set_link(index=1, up=True)

    def _AddVeth(self, op: AddVeth) -> None:  # noqa: N802
        fd = os.open(netns.path(op.peer_ns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.rtnl(op.ns).add_link(
                op.name, "veth", op.mtu, op.mac, peer=op.peer, peer_mtu=op.mtu, peer_mac=op.peer_mac, peer_netns_fd=fd
            )
        finally:
            os.close(fd)

    def _AddBridge(self, op: AddBridge) -> None:  # noqa: N802
        self.rtnl(op.ns).add_link(op.name, "bridge", op.mtu, op.mac)

    def _AddVxlan(self, op: AddVxlan) -> None:  # noqa: N802
        self.ipr(op.ns).link(
            "add",
            ifname=op.name,
            kind="vxlan",
            address=op.mac,
            mtu=op.mtu,
            vxlan_id=op.vni,
            vxlan_local=str(op.local),
            vxlan_link=self.index(op.ns, op.dev),
            vxlan_port=op.port,
            vxlan_learning=1 if op.learning else 0,
        )

    def _SetTunnel(self, op: SetTunnel) -> None:  # noqa: N802
        self.ipr(op.ns).link("set", index=self.index(op.ns, op.name), mtu=op.mtu)

    def _SetMaster(self, op: SetMaster) -> None:  # noqa: N802
        self.rtnl(op.ns).set_link(index=self.index(op.ns, op.name), master=self.index(op.ns, op.master))

    def _LinkUp(self, op: LinkUp) -> None:  # noqa: N802
        self.rtnl(op.ns).set_link(index=self.index(op.ns, op.dev), up=True)

    def _AddAddress(self, op: AddAddress) -> None:  # noqa: N802
        flags = IFA_F_NOPREFIXROUTE if op.noprefixroute else 0
        index = self.index(op.ns, op.dev)
        self.rtnl(op.ns).add_address(index, str(op.address.ip), op.address.network.prefixlen, flags)

    def _SetMac(self, op: SetMac) -> None:  # noqa: N802
        self.ipr(op.ns).link("set", index=self.index(op.ns, op.dev), address=op.mac)

    def _AddRoute(self, op: AddRoute) -> None:  # noqa: N802
        self.rtnl(op.ns).add_route(
            str(op.dst.network_address) if op.dst else None,
            op.dst.prefixlen if op.dst else 0,
            gateway=str(op.gateway) if op.gateway else None,
            oif=self.index(op.ns, op.dev) if op.dev else None,
            scope=RT_SCOPE_LINK if op.scope_link else 0,
            flags=RTNH_F_ONLINK if op.onlink else 0,
            table=op.table if op.table is not None else RT_TABLE_MAIN,
        )

    def _AddRule(self, op: AddRule) -> None:  # noqa: N802
        match: dict[str, object] = {}
        if op.src is not None:
            match.update(src=str(op.src.network_address), src_len=op.src.prefixlen)
        if op.dst is not None:
            match.update(dst=str(op.dst.network_address), dst_len=op.dst.prefixlen)
        if op.fwmark is not None:
            match.update(fwmark=op.fwmark)
            if op.fwmask is not None:
                match.update(fwmask=op.fwmask)
        self.ipr(op.ns).rule("add", table=op.table, priority=op.priority, **match)

    def _AddNeighbour(self, op: AddNeighbour) -> None:  # noqa: N802
        self.ipr(op.ns).neigh(
            "add", dst=str(op.address), lladdr=op.lladdr, ifindex=self.index(op.ns, op.dev), state=NUD_PERMANENT
        )

    def _AddFdb(self, op: AddFdb) -> None:  # noqa: N802
        self.ipr(op.ns).fdb("add", ifindex=self.index(op.ns, op.dev), lladdr=op.lladdr, dst=str(op.dst))

    def _SetSysctl(self, op: SetSysctl) -> None:  # noqa: N802
        netns.run_in(op.ns, lambda: netns.write_sysctl(op.key, op.value))

    def _LoadIptables(self, op: LoadIptables) -> None:  # noqa: N802
        run_iptables_restore(op.ns, op.rules)


def run_iptables_restore(ns: str, rules: str) -> None:
    """Load ``rules`` (iptables-save format) atomically into namespace ``ns``."""
    argv = ["nsenter", f"--net={netns.path(ns)}", "iptables-restore", "--noflush", "-w"]
    try:
        done = subprocess.run(argv, input=rules, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise EnvironmentProblem(
            f"{exc.filename} is not installed: run ./setup.sh (it installs iptables and util-linux)"
        ) from None
    if done.returncode != 0:
        raise OSError(errno.EINVAL, f"iptables-restore in {ns} failed: {done.stderr.strip()}")
