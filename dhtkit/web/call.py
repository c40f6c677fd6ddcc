"""What any endpoint of the HTTP API sees and answers.

A :class:`Call` is one request as an endpoint sees it, a :class:`Reply` its
answer, and an :class:`ApiError` an answer with an error status. The
helpers read path segments, query arguments and bodies, answering 400 or
413 before any traffic; :func:`network_error` maps the value layer's
failures to their status (503 for the network's own failures: no contacts
while it should have some, too few replicas, lookups that found no way), so
that a client can tell "fix your request" from "try again later".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dhtkit.keyspace import key_for
from dhtkit.node import NotJoined, PutFailed
from dhtkit.overlay import LookupFailed
from dhtkit.rpc import RPCError
from dhtkit.sealed import BadRecipient, NotSealedForUs
from dhtkit.service import OverlayService
from dhtkit.values import (
    MAX_SALT_SIZE,
    MAX_SEQ,
    CASMismatch,
    NotPublisher,
    ValueDeleted,
    ValueRefused,
    ValueTooLarge,
)

_HEX_ID = re.compile(r"[0-9a-fA-F]{40}")
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_DIGITS = re.compile(r"[0-9]+")


@attrs.frozen
class Reply:
    """An endpoint's answer: status, body, content type and extra headers."""

    code: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)


class ApiError(Exception):
    """An answer with an error status and a sentence for the user."""

    def __init__(self, code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@attrs.frozen
class Call:
    """One request as an endpoint sees it.

    :ivar params: the path segments the route captured, percent-decoded.
    :ivar query: the URL's query arguments (never the body's).
    :ivar body: the request body, or None when it was longer than the API keeps.
    :ivar length: the body's length as the ``Content-Length`` header declared it.
    :ivar http: the API's connection counters, for ``/metrics`` (None when unknown).
    :ivar metrics: the site's Prometheus registry, for ``/metrics`` (None when unknown).
    """

    service: OverlayService
    gossip: Any
    params: Sequence[bytes]
    query: Mapping[str, Sequence[str]]
    body: bytes | None
    length: int | None = None
    http: Any = None
    metrics: Any = None


def text(segment: bytes, what: str) -> str:
    """``segment`` decoded as UTF-8; 400 if it is not."""
    try:
        return segment.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the {} is not valid UTF-8".format(what)) from None


def key_from(segment: bytes) -> tuple[bytes, str]:
    """The id a ``{key}`` segment names, and the segment as the user wrote it."""
    name = text(segment, "key")
    if not name:
        raise ApiError(400, "the key is empty: give a name or 40 hex digits")
    if _HEX_ID.fullmatch(name):
        return bytes.fromhex(name), name
    return key_for(name), name


def salt_from(segment: bytes) -> tuple[bytes, str]:
    """A ``{salt}`` segment as bytes and text; 400 beyond 64 bytes."""
    salt = text(segment, "salt")
    raw = salt.encode("utf-8")
    if len(raw) > MAX_SALT_SIZE:
        raise ApiError(400, "the salt is {} bytes; at most {}".format(len(raw), MAX_SALT_SIZE))
    return raw, salt


def sequence_from(query: Mapping[str, Sequence[str]], name: str) -> int | None:
    """The query argument ``name`` as a sequence number, or None when absent."""
    given = query.get(name)
    if not given:
        return None
    # Its length is checked before it is made a number: Python refuses to
    # convert thousands of digits, and would spend time on it.
    too_long = len(given) == 1 and len(given[0]) > len(str(MAX_SEQ))
    if len(given) != 1 or too_long or not _DIGITS.fullmatch(given[0]) or int(given[0]) > MAX_SEQ:
        raise ApiError(400, "{} must be one integer from 0 to {}".format(name, MAX_SEQ))
    return int(given[0])


def value_from(call: Call) -> bytes:
    """The body as a value; 413 when it is longer than the node accepts."""
    limit = call.service.node.max_value_size
    too_long = call.length is not None and call.length > limit
    if too_long or call.body is None or len(call.body) > limit:
        raise ApiError(413, "the value is larger than the {} bytes a node accepts".format(limit))
    return call.body


def json_reply(obj: Any, code: int = 200) -> Reply:
    """``obj`` as a JSON reply."""
    return Reply(code, json.dumps(obj).encode("utf-8") + b"\n")


def network_error(error: BaseException) -> ApiError | None:
    """The answer to a failure of the value layer, or None if it is unexpected."""
    if isinstance(error, ValueDeleted):
        return ApiError(410, str(error), {"Dhtkit-Seq": str(error.record.seq)})
    if isinstance(error, NotSealedForUs):
        return ApiError(403, "this node cannot open the value: {}".format(error))
    if isinstance(error, BadRecipient):
        return ApiError(400, str(error))
    if isinstance(error, NotPublisher):
        return ApiError(403, "the nodes refused the delete: {}".format(error))
    if isinstance(error, CASMismatch):
        return ApiError(409, "compare-and-swap failed: {}".format(error))
    if isinstance(error, ValueTooLarge):
        return ApiError(413, str(error))
    if isinstance(error, ValueRefused):
        return ApiError(409, "the nodes refused the value: {}".format(error))
    if isinstance(error, (NotJoined, PutFailed)):
        return ApiError(503, str(error))
    if isinstance(error, RPCError):
        return ApiError(503, "the network did not answer in time: {}".format(error))
    if isinstance(error, LookupFailed):
        return ApiError(503, "no way to the nodes responsible was found: {}".format(error))
    return None


def public_key_from(segment: bytes) -> bytes:
    """A ``{public_key}`` segment as 32 bytes; 400 unless it is 64 hex digits."""
    hex_key = segment.decode("ascii", "replace")
    if not _HEX_KEY.fullmatch(hex_key):
        raise ApiError(400, "the public key must be 64 hex digits")
    return bytes.fromhex(hex_key)
