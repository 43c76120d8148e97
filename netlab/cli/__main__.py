"""``python -m netlab.cli``: the same as the ``netlab`` command."""

from netlab.cli.app import main_entry

main_entry()
