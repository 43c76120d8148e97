"""A lab's Services and Ingresses (``netlab status``) and the tally of ``netlab requests``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table


def services_table(mode: str, rows: Sequence[dict[str, Any]]) -> Table:
    """One row per Service, as :func:`netlab.services.cluster.describe_services` describes it."""
    table = Table("service", "type", "cluster-ip", "external-ip", "ports", "affinity", "endpoints", title=f"services (kube-proxy {mode})", title_justify="left")
    for row in rows:
        kind = row["type"] + (f" ({row['externalTrafficPolicy']})" if row["externalTrafficPolicy"] == "Local" else "")
        external = row.get("externalIP", "") if row["type"] != "ExternalName" else ""
        cells = (row["service"], kind, row["clusterIP"] or "", external, " ".join(row["ports"]), row["affinity"], "\n".join(row["endpoints"]) or "<none>")
        table.add_row(*(escape(text) for text in cells))
    return table


def load_balancers_table(rows: Sequence[dict[str, Any]]) -> Table | None:
    """LoadBalancer Services: address, pool, the node answering ARP for it and the election order."""
    balancers = [r for r in rows if r["type"] == "LoadBalancer" and "nlb" not in (r.get("loadBalancer") or {})]
    if not balancers:
        return None
    table = Table("external-ip", "service", "pool", "leader", "candidates (election order)", "who may lead",
                  title="load balancers (MetalLB layer 2)", title_justify="left")
    for row in balancers:
        lb = row.get("loadBalancer") or {}
        policy = row.get("externalTrafficPolicy") or "Cluster"
        why = lb.get("pending") or (
            f"{policy}: " + ("nodes with an endpoint" if policy == "Local" else "every node")
            if lb.get("leader") else "no ready endpoint: nobody answers ARP"
        )
        cells = (row.get("externalIP", ""), row["service"], lb.get("pool") or "", lb.get("leader") or "<none>",
                 ", ".join(lb.get("candidates") or []), why)
        table.add_row(*(escape(text) for text in cells))
    return table


def nlb_tables(rows: Sequence[dict[str, Any]]) -> list[Table]:
    """The emulated AWS NLBs: one table each, its target groups' targets as
    ``aws elbv2 describe-target-health`` shows them."""
    out = []
    for row in rows:
        nlb = (row.get("loadBalancer") or {}).get("nlb")
        if not nlb:
            continue
        title = (f"AWS NLB {nlb['name']} ({nlb['scheme']}, target type {nlb['targetType']}) for {row['service']}: "
                 f"{nlb['dns']} -> {nlb['address']}")
        table = Table("target group", "listener", "target", "port", "health-check port", "state", "reason", "description",
                      title=escape(title), title_justify="left")
        for group in nlb["targetGroups"]:
            hc = group["healthCheck"]
            listener = (f"{group['port']}/{group['protocol']} client IP {'preserved' if group['preserveClientIp'] else 'not preserved'}, "
                        f"{hc['protocol']} check every {hc['interval']} s ({hc['healthy']} up, {hc['unhealthy']} down), "
                        f"deregistration delay {group['deregistrationDelay']} s, "
                        f"proxy protocol v2 {'on' if group.get('proxyProtocolV2') else 'off'}")
            targets = group["TargetHealthDescriptions"] or [{}]
            for target in targets:
                health = target.get("TargetHealth", {})
                cells = (group["name"], listener, str(target.get("Target", {}).get("Id", "<no targets>")),
                         str(target.get("Target", {}).get("Port", "")), str(target.get("HealthCheckPort", "")),
                         health.get("State", ""), health.get("Reason", ""), health.get("Description", ""))
                table.add_row(*(escape(text) for text in cells))
                listener = ""
        for note in nlb.get("ignored", []):
            table.add_row("[yellow]ignored[/]", escape(note))
        out.append(table)
    return out


def dns_table(dns: dict[str, Any]) -> Table | None:
    """What ExternalDNS published in the internet's authoritative DNS."""
    if not dns["records"] and not dns["notes"]:
        return None
    title = f"external DNS (zones {', '.join(dns['zones'])}, served at {dns['nameserver'] or '-'})"
    table = Table("name", "type", "ttl", "value", title=title, title_justify="left")
    for record in dns["records"]:
        table.add_row(*(escape(str(record[k])) for k in ("name", "type", "ttl", "value")))
    for note in dns["notes"]:
        table.add_row("[yellow]note[/]", "", "", escape(note))
    return table


FIELD_ORDER = ("path", "host", "client", "proxy-protocol", "x-forwarded-for", "x-real-ip", "x-forwarded-proto")  # the rest: --json


def _values(seen: dict[str, int]) -> str:
    """A field's values as one pod saw them: the value, or each with its count when they differ."""
    if len(seen) == 1:
        return escape(next(iter(seen)))
    return "\n".join(f"{escape(v)} ({n})" for v, n in sorted(seen.items(), key=lambda kv: -kv[1]))


def requests_table(result: dict[str, Any], count: int, source: str, url: str) -> Table:
    """Which pod answered how many of ``count`` requests, what each saw (the path, Host, client
    address and forwarding headers its answer reported), and the errors (the request client's JSON)."""
    fields: dict[str, dict[str, dict[str, int]]] = result.get("fields", {})
    present = {key for seen in fields.values() for key in seen}
    columns = [k for k in FIELD_ORDER if k in present]
    table = Table("answered by", "requests", "share", *columns, title=escape(f"{count} requests {source} -> {url}"), title_justify="left")
    for who, answered in result["answers"].items():
        seen = fields.get(who, {})
        table.add_row(escape(str(who)), str(answered), f"{100 * answered / count:.1f}%", *(_values(seen.get(k, {})) for k in columns))
    if result["errors"]:
        table.add_row("[red]errors[/]", str(result["errors"]), escape(", ".join(map(str, result["error_kinds"]))))
    return table


def ingress_table(info: dict[str, Any]) -> Table:
    """The controller and each Ingress's routes, as :func:`netlab.services.ingress.describe` gives them."""
    ctl = info.get("controller")
    title = "ingresses (no controller)"
    if ctl:
        nginx = f"nginx pid {ctl['nginx_pid']}" if ctl["nginx_pid"] else "[red]nginx not running[/]"
        title = f"ingresses (ingress-nginx controller {ctl['namespace']}/{ctl['pod']}, {nginx}, config {escape(ctl['config'])})"
    table = Table("ingress", "class", "hosts", "address", "tls", "routes: host path -> service -> upstream (pod IPs)", title=title, title_justify="left")
    for row in info.get("ingresses", []):
        routes = "\n".join(escape(r) for r in row["routes"]) if row["served"] else f"[yellow]not served: {escape(row['why_not'])}[/]"
        table.add_row(escape(row["ingress"]), escape(row["class"] or "<none>"), escape(" ".join(row["hosts"])),
                      escape(",".join(row.get("address", []))), escape("\n".join(row["tls"])), routes)
    return table
