"""The ``netlab`` command line: the only place that knows about argv, exit codes and rich.

- :mod:`.app`: :func:`main` (parse, check what the command needs, run it, exit code);
- :mod:`.parser`: the table of commands (handler, help, arguments, needs root, needs a
  running lab) and the argparse parser built from it;
- :mod:`.commands`: the handlers, grouped by area (lab, observe, services, tools);
- :mod:`.render`: every table and bar rich draws; the rest of netlab returns plain data.

``netlab`` (the console script) and ``python -m netlab.cli`` both run :func:`main_entry`.
"""

from netlab.cli.app import main, main_entry

__all__ = ["main", "main_entry"]
