"""``dhtkit put``, ``get``, ``delete``, the signed and encrypted ones, ``status``, ``contacts``.

Each is a client of a running node's HTTP API (:mod:`dhtkit.client`). The
node is found through its data directory: the daemon writes its API's URL
to ``api.url`` there, and its bearer token to ``api.token`` when it listens
beyond loopback. ``--api URL`` reaches a node whose directory is elsewhere.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from dhtkit.cli import CommandFailed, at_least
from dhtkit.client import ApiClient, ApiError, ConnectionRefused, Deleted, check_api_url
from dhtkit.datadir import API_FILE, TOKEN_FILE, default_data_dir, read_api_url, read_token

_PUBLIC_KEY = re.compile("[0-9a-fA-F]{64}")

#: Seconds a command waits for a node that is starting, by default.
WAIT = 10.0
#: How the API says that its node has not joined a network yet.
_NOT_JOINED = "the node has no contacts yet"


class NodeNotFound(CommandFailed):
    """The data directory names no running node (no api.url)."""


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
    try:
        return check_api_url(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _public_key_hex(text: str) -> str:
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


def add_commands(commands: Any) -> None:
    """Add the client subcommands of the HTTP API."""

    def add(name: str, run: Any, summary: str, json_option: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=summary, description=summary
        )
        add_api_options(parser, default=argparse.SUPPRESS)
        if json_option:
            parser.add_argument("--json", action="store_true", help="print the reply's JSON")
        parser.set_defaults(run=run, uses_reactor=True)
        return parser

    put = add("put", run_put, "store VALUE under the key of NAME, last writer wins")
    put.add_argument("name", metavar="NAME", help="a name, or a key of 40 hex digits")
    put.add_argument("value", metavar="VALUE", help="the value; - reads it from stdin")
    get = add("get", run_get, "print the value stored under NAME (raw bytes)", False)
    get.add_argument("name", metavar="NAME", help="a name, or a key of 40 hex digits")
    signed = add("put-signed", run_put_signed, "store VALUE signed with the node's key, under SALT")
    signed.add_argument("salt", metavar="SALT", help="names the value among the key's (<= 64 B)")
    signed.add_argument("value", metavar="VALUE", help="the value; - reads it from stdin")
    signed.add_argument("--seq", type=at_least(0), metavar="N", help="the sequence number")
    signed.add_argument(
        "--cas", type=at_least(0), metavar="N", help="store only where the present seq is N"
    )
    get_signed = add(
        "get-signed", run_get_signed, "print the newest signed value of a key and salt", False
    )
    get_signed.add_argument(
        "public_key",
        type=_public_key_hex,
        metavar="PUBLIC_KEY_HEX",
        help="the signer's public key, 64 hex digits (put-signed and keygen print it)",
    )
    get_signed.add_argument("salt", metavar="SALT", help="the salt the value was put under")
    delete = add("delete", run_delete, "delete the plain value this node put under NAME")
    delete.add_argument("name", metavar="NAME", help="a name, or a key of 40 hex digits")
    delete_signed = add(
        "delete-signed", run_delete_signed, "delete the node's signed value under SALT"
    )
    delete_signed.add_argument("salt", metavar="SALT", help="the salt the value was put under")
    delete_signed.add_argument("--seq", type=at_least(0), metavar="N", help="the delete's seq")
    delete_signed.add_argument(
        "--cas", type=at_least(0), metavar="N", help="delete only where the present seq is N"
    )
    sealed = add(
        "put-encrypted",
        run_put_encrypted,
        "store VALUE sealed for RECIPIENT, signed with the node's key, under SALT",
    )
    sealed.add_argument(
        "recipient",
        type=_public_key_hex,
        metavar="RECIPIENT_PUBLIC_KEY_HEX",
        help="the public key of the node that may read it, 64 hex digits",
    )
    sealed.add_argument("salt", metavar="SALT", help="names the value among the key's (<= 64 B)")
    sealed.add_argument("value", metavar="VALUE", help="the value; - reads it from stdin")
    opened = add(
        "get-encrypted",
        run_get_encrypted,
        "print the value a key sealed for this node under SALT, opened",
        False,
    )
    opened.add_argument(
        "public_key",
        type=_public_key_hex,
        metavar="PUBLIC_KEY_HEX",
        help="the sender's public key, 64 hex digits",
    )
    opened.add_argument("salt", metavar="SALT", help="the salt the value was put under")
    add("status", run_status, "show the node's id, protocol, address, contacts and values")
    add("contacts", run_contacts, "list the node's routing contacts: node id and address")


def client_for(args: argparse.Namespace, reactor: Any) -> tuple[ApiClient, Path | None]:
    """The client of the node that ``--api`` and ``--data-dir`` name, and the token file it uses.

    :raises CommandFailed: no URL is known, or the data directory cannot be read.
    """
    data_dir = Path(args.data_dir) if args.data_dir is not None else default_data_dir()
    try:
        recorded = read_api_url(data_dir)
        if recorded is not None:
            recorded = check_api_url(recorded)
    except OSError as e:
        raise CommandFailed("cannot read {}: {}".format(e.filename, e.strerror or e)) from None
    except ValueError as e:
        if args.api is None:
            raise CommandFailed("{} holds a bad URL: {}".format(data_dir / API_FILE, e)) from None
        recorded = None
    url = args.api if args.api is not None else recorded
    if url is None:
        start = "twistd -n dhtkit" + (
            "" if args.data_dir is None else " --data-dir {}".format(args.data_dir)
        )
        raise NodeNotFound(
            "no running node found in {}: start one with `{}`, or give --api URL".format(
                data_dir, start
            )
        )
    token, token_file = None, None
    # The token is a secret of the node of this directory: it is not sent
    # to whatever other URL --api names.
    if args.api is None or args.data_dir is not None or args.api == recorded:
        try:
            token = read_token(data_dir)
        except OSError as e:
            raise CommandFailed("cannot read {}: {}".format(e.filename, e.strerror or e)) from None
        token_file = data_dir / TOKEN_FILE if token is not None else None
    return ApiClient(url, reactor=reactor, token=token), token_file


def _starting(error: Exception) -> bool:
    # Nothing was done: no node yet, nothing listening yet, or not joined yet.
    return isinstance(error, (NodeNotFound, ConnectionRefused)) or (
        isinstance(error, ApiError)
        and error.status == 503
        and error.message.startswith(_NOT_JOINED)
    )


async def call_api(args: argparse.Namespace, reactor: Any, method: str, *call: Any) -> Any:
    """``ApiClient.method(*call)`` on the node ``args`` name; a 401 says which token was sent.

    A node that is starting (no ``api.url`` yet, its port not open yet, or
    not joined yet) is waited for, ``--wait`` seconds at most, with a word
    on standard error; so a command right after ``twistd ... &`` works.
    """
    wait = getattr(args, "wait", None)
    deadline = reactor.seconds() + (WAIT if wait is None else wait)
    told = False
    while True:
        try:
            return await _call_once(args, reactor, method, *call)
        except (CommandFailed, ApiError) as e:
            if not _starting(e) or reactor.seconds() >= deadline:
                raise
            if not told:
                where = args.api or args.data_dir or default_data_dir()
                print(
                    "waiting for the node of {} to start and join (up to {:.0f} s; "
                    "--wait 0 not to wait)".format(where, deadline - reactor.seconds()),
                    file=sys.stderr,
                )
                told = True
            await task.deferLater(reactor, 0.25, lambda: None)


async def _call_once(args: argparse.Namespace, reactor: Any, method: str, *call: Any) -> Any:
    client, token_file = client_for(args, reactor)
    try:
        return await getattr(client, method)(*call)
    except ApiError as e:
        if e.status != 401:
            raise
        if token_file is not None:
            hint = "the token sent was the one in {}".format(token_file)
        else:
            hint = "no token was sent: give the --data-dir whose api.token the node uses"
        raise ApiError("{} ({})".format(e.message.rstrip("."), hint), 401) from None


def read_value(text: str) -> bytes:
    """A VALUE argument as bytes; ``-`` reads standard input."""
    if text == "-":
        return sys.stdin.buffer.read()
    return text.encode("utf-8", "surrogateescape")


def print_fields(reply: dict[str, Any], names: tuple[str, ...]) -> None:
    """One ``name value`` line per field of a JSON reply."""
    for name in names:
        print("{} {}".format(name, reply.get(name, "?")))


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
        print_fields(reply, ("node_id", "protocol", "address", "contacts", "values"))
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
