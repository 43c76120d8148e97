"""netlab's pytest plugin, for netlab's own tests and anyone's (README "Python API and pytest plugin").

- :mod:`~netlab.testing.plugin`: the fixtures ``netlab_lab`` (and ``_module``/``_session``),
  ``netlab_capture``, the reports on failure (``--netlab-artifacts``, ``--netlab-keep-failed``);
  installed as a ``pytest11`` entry point, so ``pip install netlab`` is all a project needs;
- :mod:`~netlab.testing.vmtier`: the ``netlab_requires`` marker (``requires`` in netlab's own
  suite) and the VM tier that runs such tests in a stock-kernel VM;
- :mod:`~netlab.testing.leftovers`: what a lab may leave behind, and the host's own namespace
  before and after, so every fixture proves that nothing was left and nothing changed.
"""
