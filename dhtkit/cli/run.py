"""The ``dhtkit`` command: its parser, and running a command line.

Each subcommand's module adds its parser (an ``add`` function named in
:mod:`dhtkit.cli.commands`) and runs it (``run_...``, taking the parsed
arguments, and the reactor if it sets ``uses_reactor``, and returning the
exit status or a Deferred of it): the clients of a running node's HTTP API
in :mod:`dhtkit.cli.api`, :mod:`dhtkit.cli.gossip` and
:mod:`dhtkit.cli.listen`, ``keygen`` in :mod:`dhtkit.cli.keygen`, ``demo``
in :mod:`dhtkit.cli.demo` and ``sim`` in :mod:`dhtkit.cli.sim`. A command
line is parsed in two steps, so that only the module of the command that
runs is imported. Every error is one line on stderr: exit status 2 for bad
arguments, 1 for anything else, and never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from dhtkit._version import __version__
from dhtkit.cli.args import (
    EXIT_FAILURE,
    EXIT_USAGE,
    CommandFailed,
    Parser,
    UsageError,
    add_api_options,
    one_line,
)
from dhtkit.cli.commands import COMMANDS


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of the ``dhtkit`` command.

    It lists every subcommand with its summary, but knows the arguments of
    ``command`` only (and of the other subcommands of its module): the
    others' modules are not imported. Without ``command``, it is the parser
    that finds which subcommand a command line names (``parse_known_args``)
    and that prints ``dhtkit --help``.
    """
    parser = Parser(
        prog="dhtkit",
        description="Distributed hash tables and gossip for Twisted: talk to a running "
        "node (started with `twistd -n dhtkit`), make keys, run a local demo network, "
        "or simulate thousands of nodes.",
    )
    parser.add_argument("--version", action="version", version="dhtkit " + __version__)
    add_api_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = COMMANDS[command].add if command is not None else None
    for name, (add, summary) in COMMANDS.items():
        if add != chosen:
            # Takes any arguments, --help included, without knowing them.
            commands.add_parser(name, help=summary, add_help=False)
        elif name not in commands.choices:
            # The module adds all of its commands at once, ``name`` among them.
            module, function = add.split(":")
            getattr(importlib.import_module(module), function)(commands)
    return parser


def _report(e: BaseException | None) -> int:
    """Say in one line on stderr why the command failed; its exit status."""
    status = EXIT_FAILURE
    if isinstance(e, UsageError):
        message, status = str(e), EXIT_USAGE
    elif isinstance(e, CommandFailed):
        message = str(e)
    elif isinstance(e, KeyboardInterrupt):
        message = "interrupted"
    elif isinstance(e, BrokenPipeError):
        message = "the output was closed before everything was written"
    else:
        message = _describe(e)
        if _refused_arguments(e):
            status = EXIT_USAGE
    print("dhtkit: error: {}".format(one_line(message)), file=sys.stderr)
    return status


#: The API's statuses for a request that the command's own arguments made
#: wrong (a key, a salt or a public key malformed, a value too large): the
#: node checks them, and the command exits as for any bad argument.
_BAD_ARGUMENTS = frozenset({400, 413})


def _refused_arguments(e: BaseException | None) -> bool:
    from dhtkit.client import ApiError

    return isinstance(e, ApiError) and e.status in _BAD_ARGUMENTS


def _describe(e: BaseException | None) -> str:
    # Imported here, on the way out: the client loads treq and twisted.web.
    from dhtkit.client import ApiError
    from dhtkit.startup import describe  # a port in use, a damaged file...

    if isinstance(e, ApiError):
        return e.message
    known = describe(e) if e is not None else None
    if known is not None:
        return known
    return "internal error, please report it: {}: {}".format(type(e).__name__, e)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace | int:
    # First which command, from a parser that knows no command's arguments;
    # then its arguments, from a parser that knows only that command's.
    try:
        known, _ = build_parser().parse_known_args(argv)
        return build_parser(known.command).parse_args(argv)
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
