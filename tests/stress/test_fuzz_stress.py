"""The injection fuzz at stress size: the unit tier's hostile-string fuzz of every manifest and
topology field (tests/unit/services/test_injection_fuzz.py), with many more examples and a
seed of this run's (``--stress-seed``) instead of the unit tier's fixed derandomised set."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings

from tests.unit.services.test_injection_fuzz import MANIFESTS, TOPOLOGY, manifest_outcome, mutated, topology_outcome

pytestmark = pytest.mark.stress


def test_hostile_manifests_at_stress_size(request: pytest.FixtureRequest) -> None:
    examples = 2000 * int(request.config.getoption("--stress-scale"))

    @seed(int(request.config.getoption("--stress-seed")))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(mutated(MANIFESTS))
    def run(case: tuple[list[Any], list[str]]) -> None:
        manifest_outcome(*case)

    run()


def test_hostile_topologies_at_stress_size(request: pytest.FixtureRequest) -> None:
    examples = 1000 * int(request.config.getoption("--stress-scale"))

    @seed(int(request.config.getoption("--stress-seed")))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(mutated(TOPOLOGY))
    def run(case: tuple[dict[str, Any], list[str]]) -> None:
        topology_outcome(*case)

    run()
