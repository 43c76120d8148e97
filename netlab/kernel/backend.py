"""Backends apply plan operations to a kernel.

:class:`Backend` is the protocol :mod:`netlab.lab` drives. :class:`NetlinkBackend` talks
rtnetlink through pyroute2, one socket per namespace (opened from a helper thread, see
:mod:`netlab.kernel.netns`); iptables rules go in with one ``iptables-restore`` per namespace,
as kube-proxy does (:mod:`netlab.kernel.iptables`). Each operation type has one handler,
found in an explicit table (:attr:`NetlinkBackend.HANDLERS`). The fake is
:class:`netlab.kernel.fake.RecordingBackend`.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NUD_PERMANENT

from netlab.kernel import ipset, iptables, limits, netns, processes
from netlab.kernel.rtnl import Rtnl, sockets
from netlab.plan import (
    AddAddress,
    AddBridge,
    AddFdb,
    AddIpset,
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

MAX_OPEN_NAMESPACES = 16  # namespaces whose sockets stay open at once (2 descriptors each, 6 with IPRoute)
CREATE_AHEAD = 16  # namespaces created ahead (2 sockets each), at least; more where descriptors allow
RTNH_F_ONLINK = 4
RT_SCOPE_LINK = 253
RT_TABLE_MAIN = 254
IFA_F_NOPREFIXROUTE = 0x200


class Backend(Protocol):
    """The seam between a plan and a kernel: what :mod:`netlab.lab` needs to build and tear down.

    :class:`NetlinkBackend` is the real kernel; :class:`netlab.kernel.fake.RecordingBackend`
    records instead, so plans, journaling and rollback are tested without root. Every method
    may be interrupted by ``KeyboardInterrupt``; the lifecycle rolls back either way.
    """

    def prepare(self, operations: Sequence[Operation]) -> bool:
        """Get ready to apply ``operations`` (the caller has journaled their namespaces).

        Returns True when the backend creates the namespaces ahead, in the background (the
        real kernel does, in parallel), so that any of them may exist before :meth:`apply`
        reaches its :class:`CreateNamespace`. Errors are not raised here but by that
        :meth:`apply`, in plan order.
        """

    def apply(self, op: Operation) -> None:
        """Carry out one operation.

        Raises :class:`FileExistsError` when ``op`` creates a namespace whose name is taken
        (that namespace is someone else's: it is never removed afterwards),
        :class:`OSError` (``NetlinkError`` is one, with the kernel's errno) when the kernel
        refuses, and :class:`~netlab.errors.EnvironmentProblem` when a tool is missing.
        """

    def stop_processes(self, namespaces: Sequence[str]) -> list[int]:
        """Stop every process running inside ``namespaces`` (SIGTERM, then SIGKILL after a
        grace period); return the pids that needed SIGKILL. Never raises for a process that
        is already gone."""

    def remove_namespace(self, ns: str) -> bool:
        """Remove namespace ``ns`` and with it everything in it (links, routes, rules); True
        if it existed. A name that is already gone is not an error; a name :meth:`apply`
        found taken by someone else is left alone (False)."""

    def namespace_exists(self, ns: str) -> bool:
        """Does a namespace named ``ns`` exist (whoever made it)?"""

    def close(self) -> None:
        """Release sockets and helper threads. Idempotent; never raises."""


class NetlinkBackend:
    """Applies operations through netlink inside the lab's namespaces.

    The operations every lab repeats per pod (namespaces, veths, bridges, enslaving, link
    up, addresses, routes) go through :class:`netlab.rtnl.Rtnl`, a lean client on the
    sockets opened when the namespace was created (interface indexes by ioctl, cached).
    Rarer operations use pyroute2's ``IPRoute`` on another socket in the same namespace.

    Descriptors are bounded, not one set per namespace (a 15,000-namespace lab would run out
    of them): a namespace's sockets are closed after the prepared plan's last operation in
    it, and at most :data:`MAX_OPEN_NAMESPACES` stay open (least recently used closed first,
    reopened from a helper thread if needed again); namespaces are created ahead only as far as
    an eighth of the free descriptors allows. The soft ``RLIMIT_NOFILE`` is raised to the hard
    limit when the backend is created.
    """

    def __init__(self) -> None:
        limits.raise_nofile()
        self._ipr: dict[str, IPRoute] = {}
        self._rtnl: dict[str, Rtnl] = {}
        self._open: OrderedDict[str, None] = OrderedDict()  # namespaces with sockets, least recently used first
        self._index: dict[str, dict[str, int]] = {}  # interface indexes per namespace (they outlive the sockets)
        self._last: dict[str, int] = {}  # namespace -> number (1-based) of the prepared plan's last operation in it
        self._done = 0  # operations applied since prepare()
        self._creator: netns.Creator[Rtnl] | None = None  # creates the plan's namespaces ahead
        self._ahead: set[str] = set()  # the names it creates
        self._taken: set[str] = set()  # names someone else's namespace already had: never removed

    # ------------------------------------------------------------ plumbing
    def ipr(self, ns: str) -> IPRoute:
        handle = self._ipr.get(ns)
        if handle is None:
            handle = self._ipr[ns] = IPRoute(use_socket=netns.netlink_socket(ns))
            self._opened(ns)
        return handle

    def rtnl(self, ns: str) -> Rtnl:
        handle = self._rtnl.get(ns)
        if handle is None:
            handle = self._rtnl[ns] = Rtnl(*netns.run_in(ns, sockets))
            self._opened(ns)
        return handle

    def _opened(self, ns: str) -> None:
        """``ns`` has sockets now: it is the most recently used; close the least recently used beyond the bound."""
        self._open[ns] = None
        self._open.move_to_end(ns)
        while len(self._open) > MAX_OPEN_NAMESPACES:
            self._release(next(iter(self._open)))

    def _release(self, ns: str) -> None:
        """Close ``ns``'s sockets (its interface indexes stay known)."""
        self._open.pop(ns, None)
        handle = self._ipr.pop(ns, None)
        if handle is not None:
            handle.close()
        rtnl = self._rtnl.pop(ns, None)
        if rtnl is not None:
            rtnl.close()

    def index(self, ns: str, name: str) -> int:
        known = self._index.setdefault(ns, {})
        if name not in known:
            try:
                known[name] = self.rtnl(ns).link_index(name)
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    raise NetlinkError(errno.ENODEV, f"no interface {name!r} in namespace {ns}") from None
                raise
        return known[name]

    def close(self) -> None:
        self._stop_creating()
        for ns in list(self._open):
            self._release(ns)
        self._index.clear()

    def prepare(self, operations: Sequence[Operation]) -> bool:
        """Start creating every namespace of ``operations`` in helper threads, ahead of
        ``apply`` (the caller has journaled them all): namespace creation then runs on the
        other cores while this thread configures links. ``apply(CreateNamespace)`` waits for
        its namespace and reports how that went, in plan order."""

        def then() -> Rtnl:
            rtnl = Rtnl(*sockets())
            rtnl.set_link(index=1, up=True)
            return rtnl

        self._last = {op.ns: number for number, op in enumerate(operations, 1)}
        self._done = 0
        names = [op.ns for op in operations if isinstance(op, CreateNamespace)]
        if names:
            # ahead as far as an eighth of the free descriptors allows (2 sockets a namespace): far
            # enough that creating (mounting) is done before this thread opens the namespaces'
            # paths, which a mount in progress slows down
            ahead = max(CREATE_AHEAD, limits.descriptors_free() // 16)
            self._creator = netns.Creator(names, then, ahead=ahead)
            self._ahead = set(names)
        return True

    def _stop_creating(self) -> None:
        """Stop creating ahead (before removing anything); close what nobody took."""
        if self._creator is not None:
            for name, result in self._creator.stop().items():
                if isinstance(result, Rtnl):
                    result.close()
                elif isinstance(result, FileExistsError):
                    self._taken.add(name)  # someone else's namespace: never removed
            self._creator = None
            self._ahead = set()

    def namespace_exists(self, ns: str) -> bool:
        return netns.exists(ns)

    def remove_namespace(self, ns: str) -> bool:
        self._stop_creating()
        if ns in self._taken:
            return False
        self._release(ns)
        self._index.pop(ns, None)
        return netns.remove(ns)

    # ------------------------------------------------------------ operations
    def apply(self, op: Operation) -> None:
        if op.ns in self._open:
            self._open.move_to_end(op.ns)
        self.HANDLERS[type(op)](self, op)
        self._done += 1
        if self._last.get(op.ns) == self._done:  # the plan has nothing more to do in this namespace
            self._release(op.ns)

    def stop_processes(self, namespaces: Sequence[str]) -> list[int]:
        return processes.stop_in(namespaces)

    def _create_namespace(self, op: CreateNamespace) -> None:
        if self._creator is not None and op.ns in self._ahead:  # made ahead by prepare()
            try:
                rtnl = self._creator.take(op.ns)
            except FileExistsError:
                self._taken.add(op.ns)
                raise
            assert rtnl is not None
            self._rtnl[op.ns] = rtnl
            self._opened(op.ns)
            return
        socks = netns.create(op.ns, then=sockets)
        assert socks is not None
        rtnl = self._rtnl[op.ns] = Rtnl(*socks)
        self._opened(op.ns)
        rtnl.set_link(index=1, up=True)

    def _add_veth(self, op: AddVeth) -> None:
        fd = os.open(netns.path(op.peer_ns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.rtnl(op.ns).add_link(
                op.name, "veth", op.mtu, op.mac, peer=op.peer, peer_mtu=op.mtu, peer_mac=op.peer_mac, peer_netns_fd=fd
            )
        finally:
            os.close(fd)

    def _add_bridge(self, op: AddBridge) -> None:
        self.rtnl(op.ns).add_link(op.name, "bridge", op.mtu, op.mac)

    def _add_vxlan(self, op: AddVxlan) -> None:
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

    def _set_tunnel(self, op: SetTunnel) -> None:
        self.ipr(op.ns).link("set", index=self.index(op.ns, op.name), mtu=op.mtu)

    def _set_master(self, op: SetMaster) -> None:
        index = self.index(op.ns, op.name)
        self.rtnl(op.ns).set_link(index=index, master=self.index(op.ns, op.master))
        if op.hairpin:  # after enslaving: the port exists only then (bridge plugin: LinkSetMaster, LinkSetHairpin)
            self.rtnl(op.ns).set_hairpin(index)

    def _link_up(self, op: LinkUp) -> None:
        self.rtnl(op.ns).set_link(index=self.index(op.ns, op.dev), up=True)

    def _add_address(self, op: AddAddress) -> None:
        flags = IFA_F_NOPREFIXROUTE if op.noprefixroute else 0
        index = self.index(op.ns, op.dev)
        self.rtnl(op.ns).add_address(index, str(op.address.ip), op.address.network.prefixlen, flags)

    def _set_mac(self, op: SetMac) -> None:
        self.ipr(op.ns).link("set", index=self.index(op.ns, op.dev), address=op.mac)

    def _add_route(self, op: AddRoute) -> None:
        self.rtnl(op.ns).add_route(
            str(op.dst.network_address) if op.dst else None,
            op.dst.prefixlen if op.dst else 0,
            gateway=str(op.gateway) if op.gateway else None,
            oif=self.index(op.ns, op.dev) if op.dev else None,
            scope=RT_SCOPE_LINK if op.scope_link else 0,
            flags=RTNH_F_ONLINK if op.onlink else 0,
            table=op.table if op.table is not None else RT_TABLE_MAIN,
            local=op.local,
        )

    def _add_rule(self, op: AddRule) -> None:
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

    def _add_neighbour(self, op: AddNeighbour) -> None:
        self.ipr(op.ns).neigh(
            "add", dst=str(op.address), lladdr=op.lladdr, ifindex=self.index(op.ns, op.dev), state=NUD_PERMANENT
        )

    def _add_fdb(self, op: AddFdb) -> None:
        self.ipr(op.ns).fdb("add", ifindex=self.index(op.ns, op.dev), lladdr=op.lladdr, dst=str(op.dst))

    def _set_sysctl(self, op: SetSysctl) -> None:
        netns.run_in(op.ns, lambda: netns.write_sysctl(op.key, op.value))

    def _add_ipset(self, op: AddIpset) -> None:
        ipset.create_net(op.ns, op.name, op.entries)

    def _load_iptables(self, op: LoadIptables) -> None:
        iptables.restore(op.ns, op.rules)

    HANDLERS: ClassVar[dict[type, Callable[[NetlinkBackend, Any], None]]] = {
        CreateNamespace: _create_namespace,
        AddVeth: _add_veth,
        AddBridge: _add_bridge,
        AddVxlan: _add_vxlan,
        SetTunnel: _set_tunnel,
        SetMaster: _set_master,
        LinkUp: _link_up,
        AddAddress: _add_address,
        SetMac: _set_mac,
        AddRoute: _add_route,
        AddRule: _add_rule,
        AddNeighbour: _add_neighbour,
        AddFdb: _add_fdb,
        SetSysctl: _set_sysctl,
        AddIpset: _add_ipset,
        LoadIptables: _load_iptables,
    }

