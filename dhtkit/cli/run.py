"""The ``dhtkit`` command.

One function adds each subcommand's parser (``add_...``) and one runs it
(``run_...``, taking the parsed arguments, and the reactor if it sets
``uses_reactor``, and returning the exit status or a Deferred of it).
``keygen`` is here; the clients of a running node's HTTP API (``put``,
``get``, ``status``, ``publish``...) are in :mod:`dhtkit.apicli` and
:mod:`dhtkit.gossipcli`, ``sim`` in :mod:`dhtkit.simcli` and ``demo`` in
:mod:`dhtkit.demo`. Every error is one line on stderr: exit status 2 for
bad arguments, 1 for anything else, and never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from twisted.internet import defer
from twisted.python.failure import Failure

from dhtkit.client import ApiError
from dhtkit.identity import Identity

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Arguments that do not make sense: reported in one line, exit status 2."""


class CommandFailed(Exception):
    """A command that could not do its work: reported in one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
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


# -- dhtkit keygen -----------------------------------------------------------------


def add_keygen(commands: Any) -> None:
    """``dhtkit keygen PATH``: a new node identity in a key file."""
    parser = commands.add_parser(
        "keygen",
        help="write a new node identity (Ed25519 key) to a file",
        description="Write a new Ed25519 identity to PATH (mode 0600) and print its node id "
        "and public key. A node uses the identity.key of its data directory.",
    )
    parser.add_argument("path", metavar="PATH", help="the key file to write")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.set_defaults(run=run_keygen)


def run_keygen(args: argparse.Namespace) -> int:
    """Run ``dhtkit keygen``."""
    path = Path(args.path)
    if path.is_dir():
        raise CommandFailed("{} is a directory; give the path of the key file".format(path))
    if path.exists() and not args.force:
        raise CommandFailed("{} exists; give --force to replace it".format(path))
    if not path.parent.is_dir():
        raise CommandFailed("no directory {} to write the key in".format(path.parent))
    identity = Identity.generate()
    try:
        identity.save(path)
    except OSError as e:
        raise CommandFailed("cannot write {}: {}".format(path, e.strerror or e)) from None
    print("node_id {}".format(identity.node_id.hex()))
    print("public_key {}".format(identity.public_key.hex()))
    return 0


# -- the command ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    # Imported here: those modules import this one's parsers and errors.
    from dhtkit._version import __version__
    from dhtkit.cli.api import add_api_options, add_commands
    from dhtkit.cli.demo import add_demo
    from dhtkit.cli.gossip import add_gossip_commands
    from dhtkit.cli.listen import add_listen_commands
    from dhtkit.simcli import add_sim

    parser = _Parser(
        prog="dhtkit",
        description="Distributed hash tables and gossip for Twisted: talk to a running "
        "node (started with `twistd -n dhtkit`), make keys, run a local demo network, "
        "or simulate thousands of nodes.",
    )
    parser.add_argument("--version", action="version", version="dhtkit " + __version__)
    add_api_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_commands(commands)
    add_gossip_commands(commands)
    add_listen_commands(commands)
    add_keygen(commands)
    add_demo(commands)
    add_sim(commands)
    return parser


def _report(e: BaseException | None) -> int:
    """Say in one line on stderr why the command failed; its exit status."""
    status = EXIT_FAILURE
    if isinstance(e, UsageError):
        message, status = str(e), EXIT_USAGE
    elif isinstance(e, ApiError):
        message = e.message
    elif isinstance(e, CommandFailed):
        message = str(e)
    elif isinstance(e, KeyboardInterrupt):
        message = "interrupted"
    elif isinstance(e, BrokenPipeError):
        message = "the output was closed before everything was written"
    else:
        from dhtkit.startup import describe  # a port in use, a damaged file...

        known = describe(e) if e is not None else None
        if known is not None:
            message = known
        else:
            message = "internal error, please report it: {}: {}".format(type(e).__name__, e)
    print("dhtkit: error: {}".format(one_line(message)), file=sys.stderr)
    return status


def _parse(argv: Sequence[str] | None) -> argparse.Namespace | int:
    try:
        return build_parser().parse_args(argv)
    except UsageError as e:
        return _report(e)
    except SystemExit as e:  # --help and --version exit from inside argparse
        return e.code if isinstance(e.code, int) else 0


def _start(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    if getattr(args, "uses_reactor", False):
        return defer.maybeDeferred(args.run, args, reactor)
    return defer.maybeDeferred(args.run, args)


def _status(outcome: int | Failure) -> int:
    return _report(outcome.value) if isinstance(outcome, Failure) else outcome


def execute(argv: Sequence[str], reactor: Any) -> defer.Deferred[int]:
    """Parse and run ``argv`` on ``reactor``, which is already running.

    Fires with the exit status, never fails: errors are reported on stderr.
    """
    args = _parse(argv)
    if isinstance(args, int):
        return defer.succeed(args)
    return _start(args, reactor).addBoth(_status)


def _react(args: argparse.Namespace) -> int:
    # Like twisted.internet.task.react, but returns the status instead of
    # exiting, so that main() stays callable (and testable) as a function.
    from twisted.internet import reactor
    from twisted.internet.error import ReactorNotRunning

    outcome: list[int | Failure] = []
    interrupted: list[bool] = []

    def shutting_down() -> None:
        # Not our own stop: Ctrl-C or a signal. The connections it closes
        # fail the command, but that is not what went wrong.
        if not outcome:
            interrupted.append(True)

    def finish(result: int | Failure) -> None:
        if interrupted:
            return
        outcome.append(result)
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
    reactor.callWhenRunning(lambda: _start(args, reactor).addBoth(finish))
    reactor.run()
    if not outcome:
        return _report(KeyboardInterrupt())
    return _status(outcome[0])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` by default); the exit status."""
    args = _parse(argv)
    if isinstance(args, int):
        return args
    if getattr(args, "uses_reactor", False):
        return _react(args)
    outcome: list[int | Failure] = []
    _start(args, None).addBoth(outcome.append)  # fires at once: no reactor
    return _status(outcome[0])
