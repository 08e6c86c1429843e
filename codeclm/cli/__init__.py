"""The ``codeclm`` command, a thin layer over the Python API (``codeclm/api/``).

``parser.py`` builds the arguments from the config models, ``display.py`` draws progress and
results in the terminal, ``commands.py`` runs each subcommand (its table: ``COMMANDS``).
"""

from codeclm.cli.commands import console, main
from codeclm.cli.parser import build_parser

__all__ = ["build_parser", "console", "main"]
