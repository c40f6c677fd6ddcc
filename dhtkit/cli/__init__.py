"""The ``dhtkit`` command (the console script runs :func:`main`).

:mod:`dhtkit.cli.args` holds what the commands share (errors, argument
parsers), :mod:`dhtkit.cli.commands` names every subcommand and its module,
and :mod:`dhtkit.cli.run` parses and runs a command line; each subcommand's
module is imported only when that subcommand is parsed.
"""

from __future__ import annotations

from dhtkit.cli.args import CommandFailed, UsageError, at_least, at_most, number, one_line
from dhtkit.cli.run import build_parser, execute, main

__all__ = [
    "CommandFailed",
    "UsageError",
    "at_least",
    "at_most",
    "build_parser",
    "execute",
    "main",
    "number",
    "one_line",
]
