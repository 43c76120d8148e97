"""Scenarios: several labs built side by side, steps run on them, results measured.

- :mod:`~netlab.scenario.spec`: the scenario file's schema and loading (validated, immutable);
- :mod:`~netlab.scenario.runner`: builds the labs, runs the steps, always tears down;
- :mod:`~netlab.scenario.measure`: RTT, request/response and throughput, with statistics.
"""
