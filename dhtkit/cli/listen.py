"""``dhtkit listen NAME`` and ``dhtkit listen-signed PUBLIC_KEY_HEX SALT``.

Each opens the node's event stream of a key (``GET /v1/listen/...``, see
:mod:`dhtkit.web.listen`) and prints each version as it arrives: the value
and a newline, or with ``--json`` one JSON object a line (the value in
base64), on standard output, flushed at once so that a pipe sees it; what
the command is doing and why it stopped goes to standard error (as for
the other client commands of :mod:`dhtkit.cli.api`). It runs
until interrupted, or until ``--count`` versions have come.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from typing import Any

from twisted.internet import defer

from dhtkit.cli.args import CommandFailed, add_api_options, at_least, public_key_hex
from dhtkit.cli.calls import call_api
from dhtkit.cli.commands import summary


class _Enough(Exception):
    """``--count`` versions have come: the stream is closed on purpose."""


def add_commands(commands: Any) -> None:
    """Add ``listen`` and ``listen-signed``."""

    def add(name: str, run: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=summary(name), description=summary(name) + " (until interrupted)"
        )
        add_api_options(parser, default=argparse.SUPPRESS)
        parser.add_argument(
            "--json",
            action="store_true",
            help="print each version as one JSON line (key, kind, seq, value in base64)",
        )
        parser.add_argument("--count", type=at_least(1), metavar="N", help="stop after N versions")
        parser.set_defaults(run=run, uses_reactor=True)
        return parser

    listen = add("listen", run_listen)
    listen.add_argument("name", metavar="NAME", help="a name, or a key of 40 hex digits")
    signed = add("listen-signed", run_listen_signed)
    signed.add_argument(
        "public_key",
        type=public_key_hex,
        metavar="PUBLIC_KEY_HEX",
        help="the signer's public key, 64 hex digits",
    )
    signed.add_argument("salt", metavar="SALT", help="the salt the value is put under")


class _Printer:
    """Writes each version to standard output; stops after ``count``."""

    def __init__(self, as_json: bool, count: int | None) -> None:
        self.as_json = as_json
        self.count = count
        self.printed = 0

    def __call__(self, version: dict[str, Any]) -> None:
        if self.as_json:
            out = json.dumps(version).encode("utf-8")
        elif version.get("deleted") is True:
            # Standard output carries values only; a delete is news, not a value.
            print("deleted (seq {})".format(version.get("seq")), file=sys.stderr)
            self._counted()
            return
        else:
            try:
                out = base64.b64decode(version.get("value", ""), validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise CommandFailed("the node sent a version whose value is not base64") from None
        sys.stdout.flush()
        sys.stdout.buffer.write(out + b"\n")
        sys.stdout.buffer.flush()
        self._counted()

    def _counted(self) -> None:
        self.printed += 1
        if self.count is not None and self.printed >= self.count:
            raise _Enough()


async def _listen(
    args: argparse.Namespace, reactor: Any, what: str, method: str, *call: Any
) -> int:
    printer = _Printer(args.json, args.count)
    print("listening to {}; Ctrl-C to stop".format(what), file=sys.stderr)
    try:
        await call_api(args, reactor, method, *call, printer)
    except _Enough:
        return 0
    raise CommandFailed("the node ended the stream; versions printed: {}".format(printer.printed))


def run_listen(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit listen NAME``."""
    return defer.Deferred.fromCoroutine(_listen(args, reactor, args.name, "listen", args.name))


def run_listen_signed(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit listen-signed PUBLIC_KEY_HEX SALT``."""
    what = "the value of {} under the salt {!r}".format(args.public_key, args.salt)
    return defer.Deferred.fromCoroutine(
        _listen(args, reactor, what, "listen_signed", args.public_key, args.salt)
    )
