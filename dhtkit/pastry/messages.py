"""The ``pastry_*`` RPCs: their payloads, built and checked in full.

``pastry_route`` [key, count, row] -> [done, contacts, row contacts]
    One step of a route (:func:`~dhtkit.pastry.routing.route`): ``done``
    with the ``count`` nodes numerically closest to ``key``, or the next
    hops, best first. ``row`` >= 0 asks for that row of the routing table
    too (a joining node collects its rows so); -1 for none.
``pastry_leafset`` null -> contacts
    The leaf set (a joining node takes it from the numerically closest
    node; a repair from the farthest live leaf on the side of a dead one).
``pastry_row`` row -> contacts
    One row of the routing table (a repair looks for a dead entry's
    replacement in it).
``pastry_announce`` null -> true
    A node that joined tells the nodes of its new state it exists; they
    learn of it once the RPC layer proved its address.
``pastry_leave`` null -> null
    The sender leaves: forget it and repair at once.

Every parser raises :class:`MalformedPayload` on anything else; the
counts bound what one answer can make us hold.
"""

from __future__ import annotations

from typing import Any

import attrs

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.keyspace import check_id
from dhtkit.pastry.leafset import MAX_LEAF
from dhtkit.pastry.routing import FALLBACKS, Route
from dhtkit.rpcerrors import MalformedPayload

ROUTE = "pastry_route"
LEAFSET = "pastry_leafset"
ROW = "pastry_row"
ANNOUNCE = "pastry_announce"
LEAVE = "pastry_leave"
#: The methods whose answers may fill a datagram (see
#: :attr:`dhtkit.overlay.RoutingOverlayBase.large_answers`).
LARGE_ANSWERS = frozenset({ROUTE, LEAFSET, ROW})

#: The most nodes responsible for a key one answer names (the largest k).
MAX_COUNT = 8
#: The most contacts of a table row on the wire (a row of b = 4).
MAX_ROW = 16
#: The rows of the smallest digit size (b = 1).
MAX_ROWS = 160


@attrs.frozen
class RouteAnswer:
    """A checked ``pastry_route`` answer."""

    done: bool
    contacts: list[Contact]
    row: list[Contact]


def route_args(key: bytes, count: int, row: int = -1) -> list[Any]:
    """The arguments of ``pastry_route``."""
    return [key, count, row]


def parse_route_args(args: Any, rows: int) -> tuple[bytes, int, int]:
    """``(key, count, row)`` of ``pastry_route`` arguments for a table of ``rows`` rows."""
    if type(args) is not list or len(args) != 3:
        raise MalformedPayload("pastry_route takes [key, count, row]")
    key, count, row = args
    if type(key) is not bytes or type(count) is not int or type(row) is not int:
        raise MalformedPayload("pastry_route takes [bytes, int, int]")
    try:
        check_id(key)
    except ValueError as e:
        raise MalformedPayload(str(e)) from None
    if not 1 <= count <= MAX_COUNT:
        raise MalformedPayload("count is between 1 and {}".format(MAX_COUNT))
    if not -1 <= row < rows:
        raise MalformedPayload("row is between -1 and {}".format(rows - 1))
    return key, count, row


def route_answer(found: Route, row: list[Contact]) -> list[Any]:
    """The ``pastry_route`` answer for a route and a table row."""
    return [found.done, wire.encode_contacts(found.contacts), wire.encode_contacts(row)]


def parse_route_answer(answer: Any, count: int) -> RouteAnswer:
    """A checked ``pastry_route`` answer to a query for ``count`` nodes."""
    if type(answer) is not list or len(answer) != 3 or type(answer[0]) is not bool:
        raise MalformedPayload("a pastry_route answer is [done, contacts, row]")
    done = answer[0]
    try:
        contacts = wire.decode_contacts(answer[1], limit=count if done else FALLBACKS)
        row = wire.decode_contacts(answer[2], limit=MAX_ROW)
    except wire.MalformedMessage as e:
        raise MalformedPayload(str(e)) from None
    if done and not contacts:
        raise MalformedPayload("a done answer names at least one node")
    if len({c.node_id for c in contacts}) != len(contacts):
        raise MalformedPayload("an answer names a node twice")
    return RouteAnswer(done, contacts, row)


def parse_row_args(args: Any, rows: int) -> int:
    """The row index of ``pastry_row`` arguments."""
    if type(args) is not int or not 0 <= args < rows:
        raise MalformedPayload("pastry_row takes a row between 0 and {}".format(rows - 1))
    return args


def parse_contacts(answer: Any, limit: int) -> list[Contact]:
    """A checked list of at most ``limit`` distinct contacts."""
    try:
        contacts = wire.decode_contacts(answer, limit=limit)
    except wire.MalformedMessage as e:
        raise MalformedPayload(str(e)) from None
    if len({c.node_id for c in contacts}) != len(contacts):
        raise MalformedPayload("an answer names a node twice")
    return contacts


def parse_leafset(answer: Any) -> list[Contact]:
    """A checked ``pastry_leafset`` answer."""
    return parse_contacts(answer, 2 * MAX_LEAF)


def parse_row(answer: Any) -> list[Contact]:
    """A checked ``pastry_row`` answer."""
    return parse_contacts(answer, MAX_ROW)


def parse_nothing(args: Any) -> None:
    """Arguments of the RPCs that take none."""
    if args is not None:
        raise MalformedPayload("this RPC takes no arguments")
