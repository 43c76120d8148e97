"""What a running lab looks like in the kernel: interfaces, addresses, routes per namespace.

Read-only: it opens one netlink socket per namespace and closes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute

from netlab.kernel import netns
from netlab.state import LabState

_SCOPES = {0: "global", 253: "link", 254: "host"}


@dataclass
class Interface:
    name: str
    kind: str
    state: str
    mtu: int
    mac: str
    master: str | None
    addresses: list[str] = field(default_factory=list)


@dataclass
class Route:
    dst: str
    via: str | None
    dev: str | None
    scope: str
    table: int

    def __str__(self) -> str:
        text = self.dst
        if self.via:
            text += f" via {self.via}"
        if self.dev:
            text += f" dev {self.dev}"
        if self.scope != "global":
            text += f" scope {self.scope}"
        if self.table not in (254,):
            text += f" table {self.table}"
        return text


@dataclass
class NamespaceView:
    name: str
    ns: str
    kind: str
    present: bool
    interfaces: list[Interface] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)


def inspect_namespace(ns: str) -> tuple[list[Interface], list[Route]]:
    with IPRoute(use_socket=netns.netlink_socket(ns)) as ipr:
        links = ipr.get_links()
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        interfaces = {}
        for link in links:
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info else ("loopback" if link["index"] == 1 else "device")
            interfaces[link["index"]] = Interface(
                name=link.get_attr("IFLA_IFNAME"),
                kind=kind or "device",
                state=str(link.get_attr("IFLA_OPERSTATE")),
                mtu=int(link.get_attr("IFLA_MTU")),
                mac=str(link.get_attr("IFLA_ADDRESS") or ""),
                master=names.get(link.get_attr("IFLA_MASTER")),
            )
        for addr in ipr.get_addr(family=2):
            iface = interfaces.get(addr["index"])
            if iface:
                iface.addresses.append(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
        routes = []
        for table in (254,):
            for route in ipr.get_routes(family=2, table=table):
                dst = route.get_attr("RTA_DST")
                routes.append(
                    Route(
                        dst=f"{dst}/{route['dst_len']}" if dst else "default",
                        via=route.get_attr("RTA_GATEWAY"),
                        dev=names.get(route.get_attr("RTA_OIF")),
                        scope=_SCOPES.get(route["scope"], str(route["scope"])),
                        table=table,
                    )
                )
        return list(interfaces.values()), routes


def collect(state: LabState) -> list[NamespaceView]:
    views = []
    seen = set()
    for ep in state.host_objects():
        if ep.ns in seen:
            continue
        seen.add(ep.ns)
        view = NamespaceView(ep.name, ep.ns, ep.kind, netns.exists(ep.ns))
        if view.present:
            view.interfaces, view.routes = inspect_namespace(ep.ns)
        views.append(view)
    return views


def as_json(state: LabState, views: list[NamespaceView]) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "lab": state.lab,
        "cni": state.cni,
        "status": state.status,
        "source": state.source,
        "notes": state.notes,
        "endpoints": state.hosts,
        "namespaces": [asdict(v) for v in views],
    }
