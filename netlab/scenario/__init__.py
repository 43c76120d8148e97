"""Scenarios: several labs built side by side, steps run on them, results measured.

- :mod:`~netlab.scenario.spec`: the scenario file's schema and loading (validated, immutable);
- :mod:`~netlab.scenario.runner`: builds the labs, runs the steps, always tears down;
- :mod:`~netlab.scenario.measure`: RTT, request/response and throughput, with statistics;
- :mod:`~netlab.scenario.http_paths`: an ``http`` step's paths into a lab (where each connects,
  the client addresses its pods may report, its requests, its hops);
- :mod:`~netlab.scenario.results`: what a run produces (plain data; :mod:`netlab.cli` renders it);
- :mod:`~netlab.scenario.plots`: the run's files: report.json and PNG plots (matplotlib);
- :mod:`~netlab.scenario.cases`: the run as CI counts it, one case per step and lab, written by
  :mod:`~netlab.scenario.junit` (``--junit FILE``) and :mod:`~netlab.scenario.github_actions`
  (annotations and groups when ``GITHUB_ACTIONS=true``).

Nothing here imports :mod:`netlab.cli`: the command line renders a
:class:`~netlab.scenario.results.ScenarioReport`, the scenario never renders itself.
"""
