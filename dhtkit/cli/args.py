"""What every ``dhtkit`` command shares: its errors and its argument parsers.

The floor below the commands: :mod:`dhtkit.cli.run` and each command's
module import from here, and this module imports none of them (nor the
node, the overlays or the HTTP client), so that building the parser stays
light.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

from dhtkit.datadir import default_data_dir

EXIT_FAILURE = 1
EXIT_USAGE = 2
#: Seconds a command waits for a node that is starting, by default.
WAIT = 10.0

_PUBLIC_KEY = re.compile("[0-9a-fA-F]{64}")


class UsageError(Exception):
    """Arguments that do not make sense: reported in one line, exit status 2."""


class CommandFailed(Exception):
    """A command that could not do its work: reported in one line, exit status 1."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises :class:`UsageError` instead of exiting."""

    # argparse prints the usage and exits from deep inside parse_args; an
    # exception lets main() report one line and return a status instead.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def at_least(low: int) -> Callable[[str], int]:
    """A parser of whole numbers from ``low`` up."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("{!r} is not a whole number".format(text)) from None
        if value < low:
            raise argparse.ArgumentTypeError("{} is below the minimum of {}".format(value, low))
        return value

    return parse


def at_most(low: int, high: int) -> Callable[[str], int]:
    """A parser of whole numbers from ``low`` to ``high``."""
    parse_low = at_least(low)

    def parse(text: str) -> int:
        value = parse_low(text)
        if value > high:
            raise argparse.ArgumentTypeError("{} is above the maximum of {}".format(value, high))
        return value

    return parse


def number(low: float, high: float = math.inf) -> Callable[[str], float]:
    """A parser of finite numbers from ``low`` to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("{!r} is not a number".format(text)) from None
        if not (math.isfinite(value) and low <= value <= high):
            bounds = (
                "at least {:g}".format(low)
                if high == math.inf
                else "between {:g} and {:g}".format(low, high)
            )
            raise argparse.ArgumentTypeError("{} is not {}".format(text, bounds))
        return value

    return parse


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, newlines included, as one space."""
    return " ".join(text.split())


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(
            "{!r} is not a number of seconds from 0 to 3600".format(text)
        )
    return value


def _api_url(text: str) -> str:
    # Here, not above: dhtkit.client loads treq and twisted.web, which
    # `dhtkit --version` or `dhtkit sim` do not need.
    from dhtkit.client import check_api_url

    try:
        return check_api_url(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def public_key_hex(text: str) -> str:
    """A public key argument: 64 hex digits, returned in lower case."""
    if not _PUBLIC_KEY.fullmatch(text):
        raise argparse.ArgumentTypeError("{!r} is not a public key of 64 hex digits".format(text))
    return text.lower()


def add_api_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """``--api`` and ``--data-dir``, before the subcommand or (default SUPPRESS) after it."""
    parser.add_argument(
        "--api",
        type=_api_url,
        default=default,
        metavar="URL",
        help="the node's HTTP API, e.g. http://127.0.0.1:4001 (default: the api.url "
        "its daemon wrote in the data directory)",
    )
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=default,
        metavar="SECONDS",
        help="how long to wait for a node that is starting or joining (default: "
        "{:g}; 0 does not wait)".format(WAIT),
    )
    parser.add_argument(
        "-d",
        "--data-dir",
        default=default,
        metavar="DIR",
        help="the node's data directory, where api.url and api.token are read "
        "(default: {}); the token is sent only to the URL recorded there, or when "
        "--data-dir is given".format(default_data_dir()),
    )
