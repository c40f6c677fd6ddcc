"""``dhtkit publish``, ``updates`` and ``unpublish``: gossip through a running node.

Clients of the gossip endpoints of a node's HTTP API
(:mod:`dhtkit.web.gossip`), which a daemon started with ``--gossip`` serves.
The node is found as for the other API commands (:mod:`dhtkit.cli.calls`):
``--api URL``, or the ``api.url`` of its data directory.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
from typing import Any

from twisted.internet import defer

from dhtkit.cli.args import CommandFailed, add_api_options, at_least, at_most, number
from dhtkit.cli.calls import call_api, print_fields, read_value
from dhtkit.cli.commands import summary
from dhtkit.web.limits import MAX_LIMIT

#: How many hex digits of an id ``dhtkit updates`` shows: enough to tell
#: apart the updates of a topic, and what ``unpublish`` accepts at least.
SHORT_ID = 12

_HEX = re.compile("[0-9a-fA-F]+")


def _update_id(text: str) -> str:
    if not (_HEX.fullmatch(text) and SHORT_ID <= len(text) <= 40):
        raise argparse.ArgumentTypeError(
            "{!r} is not an update id: give its 40 hex digits, or at least the first {} "
            "that `dhtkit updates` shows".format(text, SHORT_ID)
        )
    return text.lower()


def add_commands(commands: Any) -> None:
    """Add ``publish``, ``updates`` and ``unpublish``."""

    def add(name: str, run: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=summary(name), description=summary(name) + " (the node runs with --gossip)"
        )
        add_api_options(parser, default=argparse.SUPPRESS)
        parser.add_argument("--json", action="store_true", help="print the reply's JSON")
        parser.add_argument("topic", metavar="TOPIC", help="the topic, 1 to 64 bytes of UTF-8")
        parser.set_defaults(run=run, uses_reactor=True)
        return parser

    publish = add("publish", run_publish)
    publish.add_argument("data", metavar="DATA", help="the data; - reads it from stdin")
    publish.add_argument(
        "--ttl",
        type=number(0.001),
        metavar="S",
        help="seconds until the update expires (default: the node's)",
    )
    updates = add("updates", run_updates)
    updates.add_argument(
        "--limit", type=at_most(1, MAX_LIMIT), metavar="N", help="at most N updates (default 100)"
    )
    updates.add_argument(
        "--since", type=at_least(0), metavar="SEQ", help="only updates whose seq is above SEQ"
    )
    unpublish = add("unpublish", run_unpublish)
    unpublish.add_argument(
        "update_id",
        type=_update_id,
        metavar="UPDATE_ID",
        help="the update's id (40 hex digits), or the first {} or more of them".format(SHORT_ID),
    )


def run_publish(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit publish TOPIC DATA [--ttl S]``: prints the update's id."""

    async def publish() -> int:
        reply = await call_api(
            args, reactor, "publish", args.topic, read_value(args.data), args.ttl
        )
        print(json.dumps(reply) if args.json else reply.get("update_id", "?"))
        return 0

    return defer.Deferred.fromCoroutine(publish())


def shown(data: bytes) -> str:
    """``data`` as text if it is printable UTF-8, else ``<N bytes>``."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        decoded = None
    if decoded is not None and decoded.isprintable():
        return decoded
    return "<{} bytes>".format(len(data))


def _line(update: dict[str, Any]) -> str:
    try:
        data = shown(base64.b64decode(str(update.get("data", "")), validate=True))
    except binascii.Error:
        data = "<undecodable>"
    return "{} {} {} {}".format(
        str(update.get("update_id", "?"))[:SHORT_ID],
        str(update.get("origin", "?"))[:SHORT_ID],
        update.get("seq", "?"),
        data,
    )


def run_updates(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit updates TOPIC``: one line per update, newest first.

    Each line: the update id's first digits, the origin's (its public key),
    the sequence number, and the data.
    """

    async def updates() -> int:
        found = await call_api(args, reactor, "updates", args.topic, args.limit, args.since)
        if args.json:
            print(json.dumps({"updates": found}))
            return 0
        for update in found:
            print(_line(update))
        return 0

    return defer.Deferred.fromCoroutine(updates())


async def _full_id(args: argparse.Namespace, reactor: Any) -> str:
    if len(args.update_id) == 40:
        return str(args.update_id)
    # The newest MAX_LIMIT updates: an older one is named by its whole id.
    found = await call_api(args, reactor, "updates", args.topic, MAX_LIMIT)
    ids = [str(u.get("update_id", "")) for u in found]
    matching = sorted({i for i in ids if i.lower().startswith(args.update_id)})
    if not matching:
        raise CommandFailed(
            "the node holds no update of the topic {!r} whose id starts with {}".format(
                args.topic, args.update_id
            )
        )
    if len(matching) > 1:
        raise CommandFailed(
            "{} updates of the topic {!r} have ids starting with {}: give more digits".format(
                len(matching), args.topic, args.update_id
            )
        )
    return matching[0]


def run_unpublish(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit unpublish TOPIC UPDATE_ID``: spreads a death certificate."""

    async def unpublish() -> int:
        update_id = await _full_id(args, reactor)
        reply = await call_api(args, reactor, "unpublish", args.topic, update_id)
        if args.json:
            print(json.dumps(reply))
        else:
            print_fields(reply, ("update_id", "deletes"))
        return 0

    return defer.Deferred.fromCoroutine(unpublish())
