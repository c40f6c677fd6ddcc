"""The ``dhtkit`` command (the console script runs :func:`main`)."""

from __future__ import annotations

from dhtkit.cli.run import (
    CommandFailed,
    UsageError,
    at_least,
    at_most,
    build_parser,
    execute,
    main,
    number,
    one_line,
)

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
