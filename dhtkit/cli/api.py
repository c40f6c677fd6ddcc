"""``dhtkit put``, ``get``, ``delete``, the signed and encrypted ones, ``status``, ``contacts``.

Each is a client of a running node's HTTP API (:mod:`dhtkit.client`),
found and called through :mod:`dhtkit.cli.calls`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from twisted.internet import defer

from dhtkit.cli.args import add_api_options, at_least, public_key_hex
from dhtkit.cli.calls import call_api, print_fields, read_value
from dhtkit.cli.commands import summary
from dhtkit.client import Deleted


def add_commands(commands: Any) -> None:
    """Add the client subcommands of the HTTP API."""

    def add(name: str, run: Any, json_option: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=summary(name), description=summary(name)
        )
        add_api_options(parser, default=argparse.SUPPRESS)
        if json_option:
            parser.add_argument("--json", action="store_true", help="print the reply's JSON")
        parser.set_defaults(run=run, uses_reactor=True)
        return parser

    put = add("put", run_put)
    put.add_argument("name", metavar="NAME", help="a name, or a key of 40 hex digits")
    put.add_argument("value", metavar="VALUE", help="the value; - reads it from stdin")
    get = add("get", run_get, False)
    get.add_argument("name", metavar="NAME", help="a name, or a key of 40 hex digits")
    signed = add("put-signed", run_put_signed)
    signed.add_argument("salt", metavar="SALT", help="names the value among the key's (<= 64 B)")
    signed.add_argument("value", metavar="VALUE", help="the value; - reads it from stdin")
    signed.add_argument("--seq", type=at_least(0), metavar="N", help="the sequence number")
    signed.add_argument(
        "--cas", type=at_least(0), metavar="N", help="store only where the present seq is N"
    )
    get_signed = add("get-signed", run_get_signed, False)
    get_signed.add_argument(
        "public_key",
        type=public_key_hex,
        metavar="PUBLIC_KEY_HEX",
        help="the signer's public key, 64 hex digits (put-signed and keygen print it)",
    )
    get_signed.add_argument("salt", metavar="SALT", help="the salt the value was put under")
    delete = add("delete", run_delete)
    delete.add_argument("name", metavar="NAME", help="a name, or a key of 40 hex digits")
    delete_signed = add("delete-signed", run_delete_signed)
    delete_signed.add_argument("salt", metavar="SALT", help="the salt the value was put under")
    delete_signed.add_argument("--seq", type=at_least(0), metavar="N", help="the delete's seq")
    delete_signed.add_argument(
        "--cas", type=at_least(0), metavar="N", help="delete only where the present seq is N"
    )
    sealed = add("put-encrypted", run_put_encrypted)
    sealed.add_argument(
        "recipient",
        type=public_key_hex,
        metavar="RECIPIENT_PUBLIC_KEY_HEX",
        help="the public key of the node that may read it, 64 hex digits",
    )
    sealed.add_argument("salt", metavar="SALT", help="names the value among the key's (<= 64 B)")
    sealed.add_argument("value", metavar="VALUE", help="the value; - reads it from stdin")
    opened = add("get-encrypted", run_get_encrypted, False)
    opened.add_argument(
        "public_key",
        type=public_key_hex,
        metavar="PUBLIC_KEY_HEX",
        help="the sender's public key, 64 hex digits",
    )
    opened.add_argument("salt", metavar="SALT", help="the salt the value was put under")
    add("status", run_status)
    add("contacts", run_contacts)


def run_put(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit put NAME VALUE``."""

    async def put() -> int:
        reply = await call_api(args, reactor, "put", args.name, read_value(args.value))
        if args.json:
            print(json.dumps(reply))
        else:
            print_fields(reply, ("key", "replicas"))
        return 0

    return defer.Deferred.fromCoroutine(put())


def _write_value(value: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(value)
    sys.stdout.buffer.flush()


def run_get(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit get NAME``: the raw value on stdout."""

    async def get() -> int:
        try:
            value = await call_api(args, reactor, "get", args.name)
        except Deleted:
            return _deleted("the value under {}".format(args.name))
        if value is None:
            print("dhtkit: no value is stored under {}".format(args.name), file=sys.stderr)
            return 1
        _write_value(value)
        return 0

    return defer.Deferred.fromCoroutine(get())


def run_put_signed(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit put-signed SALT VALUE [--seq N] [--cas N]``."""

    async def put_signed() -> int:
        value = read_value(args.value)
        reply = await call_api(args, reactor, "put_signed", args.salt, value, args.seq, args.cas)
        if args.json:
            print(json.dumps(reply))
        else:
            print_fields(reply, ("key", "public_key", "salt", "seq", "replicas"))
        return 0

    return defer.Deferred.fromCoroutine(put_signed())


def run_get_signed(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit get-signed PUBLIC_KEY_HEX SALT``: the raw value on stdout."""

    return defer.Deferred.fromCoroutine(_print_signed(args, reactor, "get_signed"))


async def _print_signed(args: argparse.Namespace, reactor: Any, method: str) -> int:
    """The signed (or opened encrypted) value of ``args.public_key`` and ``args.salt``."""
    what = "the value of {} under the salt {!r}".format(args.public_key, args.salt)
    try:
        found = await call_api(args, reactor, method, args.public_key, args.salt)
    except Deleted as e:
        return _deleted(what, e.seq)
    if found is None:
        print(
            "dhtkit: no value is signed by {} under the salt {!r}".format(
                args.public_key, args.salt
            ),
            file=sys.stderr,
        )
        return 1
    _write_value(found.value)
    return 0


def _deleted(what: str, seq: int | None = None) -> int:
    version = "" if seq is None else " (version {})".format(seq)
    print("dhtkit: {} was deleted by its publisher{}".format(what, version), file=sys.stderr)
    return 1


def run_get_encrypted(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit get-encrypted PUBLIC_KEY_HEX SALT``: the opened value on stdout."""
    return defer.Deferred.fromCoroutine(_print_signed(args, reactor, "get_encrypted"))


def _print_reply(args: argparse.Namespace, reply: dict[str, Any], names: tuple[str, ...]) -> int:
    if args.json:
        print(json.dumps(reply))
    else:
        print_fields(reply, names)
    return 0


def run_delete(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit delete NAME``."""

    async def delete() -> int:
        reply = await call_api(args, reactor, "delete", args.name)
        return _print_reply(args, reply, ("key", "replicas"))

    return defer.Deferred.fromCoroutine(delete())


def run_delete_signed(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit delete-signed SALT [--seq N] [--cas N]``."""

    async def delete_signed() -> int:
        reply = await call_api(args, reactor, "delete_signed", args.salt, args.seq, args.cas)
        return _print_reply(args, reply, ("key", "public_key", "salt", "seq", "replicas"))

    return defer.Deferred.fromCoroutine(delete_signed())


def run_put_encrypted(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit put-encrypted RECIPIENT_PUBLIC_KEY_HEX SALT VALUE``."""

    async def put_encrypted() -> int:
        value = read_value(args.value)
        reply = await call_api(args, reactor, "put_encrypted", args.salt, args.recipient, value)
        names = ("key", "public_key", "recipient", "salt", "seq", "replicas")
        return _print_reply(args, reply, names)

    return defer.Deferred.fromCoroutine(put_encrypted())


def _uptime(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    minutes, s = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    clock = "{:02d}:{:02d}:{:02d}".format(hours, minutes, s)
    return "{}d {}".format(days, clock) if days else clock


def run_status(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit status``."""

    async def status() -> int:
        reply = await call_api(args, reactor, "status")
        if args.json:
            print(json.dumps(reply))
            return 0
        names = ("node_id", "public_key", "protocol", "address", "contacts", "values")
        print_fields(reply, names)
        print("uptime {}".format(_uptime(reply.get("uptime_s"))))
        print("version {}".format(reply.get("version", "?")))
        return 0

    return defer.Deferred.fromCoroutine(status())


def run_contacts(args: argparse.Namespace, reactor: Any) -> defer.Deferred[int]:
    """Run ``dhtkit contacts``: one line per contact, node id then address."""

    async def contacts() -> int:
        found = await call_api(args, reactor, "contacts")
        if args.json:
            print(json.dumps({"contacts": found}))
            return 0
        for contact in found:
            print("{} {}".format(contact.get("node_id", "?"), contact.get("address", "?")))
        if not found:
            print("the node has no contacts yet", file=sys.stderr)
        return 0

    return defer.Deferred.fromCoroutine(contacts())
