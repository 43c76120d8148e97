"""The ``netlab`` command line: the only place that knows about argv, exit codes and rich."""

from netlab.cli.app import main, main_entry

__all__ = ["main", "main_entry"]
