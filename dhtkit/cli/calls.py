"""Calling a running node's HTTP API from a command: finding the node, waiting for it.

What the commands of :mod:`dhtkit.cli.api`, :mod:`dhtkit.cli.gossip` and
:mod:`dhtkit.cli.listen` share. The node is found through its data
directory: the daemon writes its API's URL to ``api.url`` there, and its
bearer token to ``api.token`` when it listens beyond loopback. ``--api URL``
reaches a node whose directory is elsewhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from twisted.internet import task

from dhtkit.cli.args import WAIT, CommandFailed
from dhtkit.client import ApiClient, ApiError, ConnectionRefused, check_api_url
from dhtkit.datadir import API_FILE, TOKEN_FILE, default_data_dir, read_api_url, read_token

#: How the API says that its node has not joined a network yet.
_NOT_JOINED = "the node has no contacts yet"


class NodeNotFound(CommandFailed):
    """The data directory names no running node (no api.url)."""


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
