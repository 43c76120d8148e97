"""The http step and scenario labs that apply manifests: validation names the file and the
field (exit 2, nothing built); the table, the CIs and the client-address checks are pure."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from netlab import cli
from netlab.errors import TopologyError
from netlab.scenario import measure
from netlab.scenario.http_paths import Seen, Target, check
from netlab.scenario.results import StepResult, http_rows, markdown
from netlab.scenario.spec import HttpStep, load_scenario

ROOT = Path(__file__).resolve().parents[3]
TOPO = ROOT / "topologies" / "north-south.yaml"
MANIFEST = ROOT / "topologies" / "manifests" / "north-south.yaml"


def scenario(tmp_path: Path, paths: str, apply: str = f"[{MANIFEST}]", extra: str = "") -> Path:
    path = tmp_path / "ns.yaml"
    path.write_text(
        f"name: t\nlabs:\n  - {{file: {TOPO}, name: nss-unit, apply: {apply}}}\n"
        f"steps:\n  - http:\n      from: internet\n{extra}      paths:\n{paths}"
    )
    return path


def error(path: Path) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        load_scenario(path)
    return info.value


GOOD = "        - {name: NodePort, service: default/web-np, expect: {client: node}}\n"


def test_shipped_north_south_loads_with_its_manifests() -> None:
    spec, labs = load_scenario(ROOT / "scenarios" / "north-south.yaml")
    step = spec.steps[0].spec
    assert isinstance(step, HttpStep)
    assert [p.name for p in step.paths] == [
        "NodePort", "NLB instance Cluster", "NLB instance Local", "NLB ip", "NLB ip preserve", "Ingress", "Gateway",
    ]
    assert [Path(m).resolve() for m in labs[0].manifests] == [MANIFEST.resolve()]
    assert labs[0].topology.network.cni == "vpc-native"
    assert {p.expect.client for p in step.paths} == {
        "node", "internet", "load-balancer", "service:ingress-nginx/ingress-nginx-controller", "service:default/web-gw-nginx",
    }


@pytest.mark.parametrize(
    ("paths", "field", "words"),
    [
        ("        - {name: a, url: 'ftp://x.example.test/'}\n", "steps[0].http.paths[0]", "http(s)://HOST"),
        ("        - {name: a, url: 'http://X.example.test/'}\n", "steps[0].http.paths[0]", "lowercase host"),
        ("        - {name: a, url: 'http://x.test:70000/'}\n", "steps[0].http.paths[0]", "http(s)://HOST"),
        ("        - {name: a, url: 'http://x.test/', service: default/web}\n", "steps[0].http.paths[0]", "not both"),
        ("        - {name: a}\n", "steps[0].http.paths[0]", "give url or service"),
        ("        - {name: a, url: 'http://x.test/', node: node1}\n", "steps[0].http.paths[0]", "go with service"),
        ("        - {name: a, service: web}\n", "steps[0].http.paths[0]", "NAMESPACE/NAME"),
        ("        - {name: a, service: default/web, headers: ['Host web']}\n", "steps[0].http.paths[0]", "'Name: value'"),
        ("        - {name: a, service: default/web, headers: [\"Host: a\\r\\nX: b\"]}\n", "steps[0].http.paths[0]", "'Name: value'"),
        ("        - {name: a, service: default/web, path: 'no-slash'}\n", "steps[0].http.paths[0]", "must start with /"),
        ("        - {name: '[bold]x', service: default/web}\n", "steps[0].http.paths[0]", "1-40 letters"),
        ("        - {name: a, service: default/web, expect: {client: 'Not A Host'}}\n", "steps[0].http.paths[0].expect", "expected node"),
        ("        - {name: a, service: default/web, expect: {client: nobody}}\n", "steps[0].http.paths[0].expect.client", "no node or pod named 'nobody'"),
        ("        - {name: a, service: default/web, expect: {x-forwarded-for: 'service:web'}}\n", "steps[0].http.paths[0].expect", "NAMESPACE/NAME"),
        ("        - {name: a, service: default/web, node: node9}\n", "steps[0].http.paths[0].node", "no node 'node9'"),
        ("        - {name: a, service: default/web, port: 0}\n", "steps[0].http.paths[0].port", "greater than or equal to 1"),
        ("        - {name: a, service: default/web, verb: POST}\n", "steps[0].http.paths[0].verb", "unknown key 'verb'"),
        (GOOD + GOOD, "steps[0].http", "same name (NodePort)"),
    ],
)
def test_bad_path_names_the_file_and_field(tmp_path: Path, paths: str, field: str, words: str) -> None:
    exc = error(scenario(tmp_path, paths))
    assert exc.source == str(tmp_path / "ns.yaml")
    assert exc.field == field, exc
    assert words in str(exc), exc


def test_bad_step_fields(tmp_path: Path) -> None:
    exc = error(scenario(tmp_path, GOOD, extra="      requests: 5\n"))
    assert exc.field == "steps[0].http.requests" and "greater than or equal to 10" in str(exc)
    exc = error(scenario(tmp_path, GOOD, extra="      baseline: Ingress\n"))
    assert exc.field == "steps[0].http" and "'Ingress' is not a path's name" in str(exc)
    path = scenario(tmp_path, GOOD)
    path.write_text(path.read_text().replace("from: internet", "from: nobody"))
    exc = error(path)
    assert exc.field == "steps[0].http.from" and "no node or pod named 'nobody'" in str(exc)


def test_apply_names_the_missing_manifest(tmp_path: Path) -> None:
    exc = error(scenario(tmp_path, GOOD, apply="[missing.yaml]"))
    assert exc.field == "labs[0].apply[0]" and "no such file" in str(exc) and "missing.yaml" in str(exc)


def test_apply_names_the_bad_manifest_and_its_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: Web_1}\nspec: {ports: [{port: 80}]}\n")
    exc = error(scenario(tmp_path, GOOD, apply=f"[{bad}]"))
    assert exc.field == "labs[0].apply[0]"
    assert str(bad) in exc.message and "metadata.name" in exc.message, exc


def test_run_exits_2_on_a_bad_scenario_before_building(tmp_path: Path) -> None:
    path = scenario(tmp_path, "        - {name: a, url: 'gopher://x/'}\n")
    buf = io.StringIO()
    code = cli.main(["run", str(path)], console=Console(file=buf, width=300))
    assert code == 2, buf.getvalue()
    assert str(path) in buf.getvalue() and "steps[0].http.paths[0]" in buf.getvalue()


def test_percentile_ci_brackets_the_percentile() -> None:
    rounds = [[float(v) for v in range(100 * r, 100 * r + 100)] for r in range(5)]
    p50, (low, high) = measure.percentile_ci(rounds, 50)
    assert p50 == pytest.approx(249.5)
    assert low <= p50 <= high and high - low > 0
    p99, (low99, high99) = measure.percentile_ci(rounds, 99)
    assert p99 > p50 and low99 <= p99 <= high99


def target(expected: dict[str, tuple[str, set[str]]]) -> Target:
    return Target("NodePort", "http://192.168.1.11:30081/", "192.168.1.11", 30081, [], expected)


def answer(client: str, xff: str | None = None, n: int = 3) -> dict[str, object]:
    fields: dict[str, dict[str, int]] = {"client": {client: n}}
    if xff:
        fields["x-forwarded-for"] = {xff: n}
    return {"answers": {"web-1": n}, "errors": 0, "error_kinds": {}, "fields": {"web-1": fields}}


def test_check_accepts_the_expected_client_and_names_a_wrong_one() -> None:
    seen = Seen()
    seen.add(answer("192.168.1.11"))
    assert check(target({"client": ("node", {"192.168.1.11", "192.168.1.12"})}), seen) == []
    seen.add(answer("203.0.113.1"))
    (problem,) = check(target({"client": ("node", {"192.168.1.11", "192.168.1.12"})}), seen)
    assert problem == "client 203.0.113.1 is not node (192.168.1.11, 192.168.1.12)"


def test_check_wants_x_forwarded_for_and_counts_errors() -> None:
    seen = Seen()
    seen.add(answer("10.0.0.5", xff="203.0.113.1, 10.0.0.9"))
    assert seen.forwarded == {"203.0.113.1": 3}  # the first address: who connected to the proxy
    assert check(target({"x-forwarded-for": ("internet", {"203.0.113.1"})}), seen) == []
    plain = Seen()
    plain.add(answer("10.0.0.5"))
    plain.add({"answers": {}, "error_kinds": {"TimeoutError timed out": 2}, "fields": {}})
    problems = check(target({"x-forwarded-for": ("internet", {"203.0.113.1"})}), plain)
    assert problems == ["2 request(s) failed: TimeoutError timed out x2", "x-forwarded-for - is not internet (203.0.113.1)"]


def test_table_rows_and_markdown() -> None:
    data = {
        "url": "http://x/", "connect": "192.168.1.253:80", "clients": {"192.168.1.11": 5, "192.168.1.12": 5}, "x_forwarded_for": {},
        "expect": {"client": {"role": "node", "addresses": ["192.168.1.11", "192.168.1.12"]}},
        "stats": {"n": 10, "p50": 700.4, "p99": 3000.0}, "p50_ci": [650.0, 760.0], "p99_ci": [2000.0, 4000.0],
        "hops": None, "baseline": "NodePort",
        "vs_baseline": {"diff_p50": 42.0, "diff_ci": [-3.0, 80.0], "ratio_p50": 1.06, "ratio_ci": [1.0, 1.1]},
    }
    (row,) = http_rows([StepResult(0, "http", "NLB instance Cluster", "http internet -> NLB", "pass", "", data)])
    assert row["pod saw (client)"] == "192.168.1.11, 192.168.1.12 = node ✓"
    assert row["X-Forwarded-For"] == "-" and row["hops"] == "?"
    assert row["p50 µs [95% CI]"] == "700 [650, 760]" and row["p50 vs baseline [95% CI]"] == "+42 [-3, +80] x1.06"
    text = markdown([row], baseline="NodePort")
    assert text.splitlines()[0].endswith("| p50 vs NodePort [95% CI] |")
    assert "| NLB instance Cluster | 192.168.1.253:80 |" in text


def test_the_request_client_times_each_answered_request() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from netlab.services import client

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = f"web-1\nclient: {self.client_address[0]}:{self.client_address[1]}\nx-forwarded-for: {self.headers.get('X-Forwarded-For', '')}\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://web.example.test:{server.server_port}/"
        options = client.Options(["X-Forwarded-For: 203.0.113.1"], [f"web.example.test:{server.server_port}:127.0.0.1"])
        result = client.run(url, 4, 2.0, options, latencies=True)
        plain = client.run(url, 1, 2.0, options)
    finally:
        server.shutdown()
        server.server_close()
    latencies = result["latencies_us"]
    assert isinstance(latencies, list) and len(latencies) == 4 and all(v > 0 for v in latencies)
    assert "latencies_us" not in plain
    seen = Seen()
    seen.add(result)
    assert seen.answers == {"web-1": 4} and seen.clients == {"127.0.0.1": 4} and seen.forwarded == {"203.0.113.1": 4}


def test_the_runner_interleaves_paths_checks_clients_and_compares_with_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The http step without a kernel: paths sampled in rounds, the warm-up forgotten, a wrong
    client address fails its path only, p50/p99 CIs and the comparison with the first path."""
    import ipaddress

    from netlab.plan import Host
    from netlab.scenario import http_paths
    from netlab.scenario.runner import Runner

    spec, labs = load_scenario(ROOT / "scenarios" / "north-south.yaml")
    step = spec.steps[0].spec
    assert isinstance(step, HttpStep)
    step = step.model_copy(update={"paths": step.paths[:3], "warmup": 5})
    clients = {"NodePort": "192.168.1.11", "NLB instance Cluster": "192.168.1.12", "NLB instance Local": "192.168.1.11"}  # Local: wrong
    base = {"NodePort": 600.0, "NLB instance Cluster": 650.0, "NLB instance Local": 610.0}
    calls: list[tuple[str, int]] = []

    def resolve(state: object, ns: str, path: object) -> Target:
        name = path.name  # type: ignore[attr-defined]
        role = path.expect.client  # type: ignore[attr-defined]
        allowed = {"node": {"192.168.1.11", "192.168.1.12"}, "internet": {"203.0.113.1"}}[role]
        return Target(name, f"http://{name}/", "192.168.1.253", 80, [], {"client": (role, allowed)})

    def sampler(ns: str, target: Target, seen: Seen, timeout: float):  # type: ignore[no-untyped-def]
        def take(n: int) -> list[float]:
            calls.append((target.name, n))
            seen.add(answer(clients[target.name], n=n))
            return [base[target.name] + i % 7 for i in range(n)]

        return take

    monkeypatch.setattr(http_paths, "resolve_target", resolve)
    monkeypatch.setattr(http_paths, "sampler", sampler)
    monkeypatch.setattr(http_paths, "count_hops", lambda *a: (None, "the trace stops at nlb"))
    runner = Runner(spec, labs, "ns.yaml", samples=50)
    runner.up = {"ns": object()}  # type: ignore[dict-item]
    monkeypatch.setattr(runner, "_ep", lambda lab, name: Host(name, "internet", "ns-internet", ipaddress.IPv4Address("203.0.113.1")))
    results = runner._step_http(0, step, ["ns"])

    assert calls[:3] == [("NodePort", 5), ("NLB instance Cluster", 5), ("NLB instance Local", 5)]  # the warm-up
    assert [n for name, n in calls[3:] if name == "NodePort" and n] == [10] * 5  # 50 requests: 5 rounds of 10
    assert [r.lab for r in results] == ["NodePort", "NLB instance Cluster", "NLB instance Local"]
    assert [r.status for r in results] == ["pass", "pass", "fail"]
    assert "client 192.168.1.11 is not internet (203.0.113.1)" in results[2].detail and "hops ?" in results[2].detail
    first, second = results[0].data, results[1].data
    assert first["clients"] == {"192.168.1.11": 50}, "the warm-up's answers are not counted"
    assert first["stats"]["n"] == 50 and first["p50_ci"][0] <= first["stats"]["p50"] <= first["p50_ci"][1]
    assert "vs_baseline" not in first and second["baseline"] == "NodePort"
    assert second["vs_baseline"]["diff_p50"] == pytest.approx(50.0)
