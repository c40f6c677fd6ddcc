"""The payloads of the ``gossip`` RPC: one exchange, both directions.

A request is a map with any of::

    "u": [encoded update, ...]   updates pushed to the peer
    "d": [update id, ...]        a digest: ids the caller holds
    "r": [low, high]             the digest names every update the caller
                                 holds with low < (seq, id) <= high; a bound
                                 is [seq, id], or null for no bound
    "p": true                    pull: send me what I lack
    "w": true                    tell me which ids of my digest you lack

and the reply a map with any of::

    "k": [bool, ...]             per pushed update: did you know it already
    "u": [encoded update, ...]   updates for the caller (pull)
    "w": [update id, ...]        ids of the caller's digest the peer lacks

Everything is checked here before the protocol looks at it; a payload of the
wrong shape raises :class:`MalformedPayload`. Each encoded update inside is
checked on its own later (size, structure, signature), so one bad update does
not spoil the others. :data:`PAYLOAD_BUDGET` is what fits in one datagram.
"""

from __future__ import annotations

from typing import Any

import attrs

from dhtkit import wire
from dhtkit.gossip.store import Key, Window
from dhtkit.gossip.update import ID_BYTES, MAX_SEQ, Update
from dhtkit.rpcerrors import MalformedPayload

#: The RPC method every exchange uses.
METHOD = "gossip"
#: Bytes of the datagram taken by the RPC envelope around a gossip payload,
#: with room to spare: a signed query with this method name needs 150.
ENVELOPE_RESERVE = 160
#: Bytes a gossip payload may take.
PAYLOAD_BUDGET = wire.MAX_DATAGRAM - ENVELOPE_RESERVE
#: The most ids one digest carries (what fits in a datagram beside the flags).
MAX_DIGEST = 56
#: The most updates one message carries (small updates; one datagram anyway).
MAX_UPDATES = 64

#: Bytes a window takes at most: a one-letter key, and two [seq, id] bounds.
WINDOW_BYTES = 3 + 2 * (1 + 9 + 2 + ID_BYTES)

# Bytes of a one-letter key and a boolean, of a one-letter key and an array
# header, and of the map header.
_FLAG_BYTES = 3
_LIST_BYTES = 4
_MAP_BYTES = 1


def bytes_size(length: int) -> int:
    """CBOR bytes taken by a byte string of ``length`` bytes."""
    if length < 24:
        return 1 + length
    if length < 256:
        return 2 + length
    return 3 + length


ID_SIZE = bytes_size(ID_BYTES)


def fit(updates: list[Update | None], budget: int) -> list[Update]:
    """The leading updates whose encodings fit in a list of ``budget`` bytes.

    One too large is skipped, so that smaller ones after it may still go;
    None entries (updates gone meanwhile) are skipped too.
    """
    out = []
    budget -= _LIST_BYTES
    for update in updates:
        if update is None:
            continue
        size = bytes_size(len(update.encoded))
        if size <= budget:
            out.append(update)
            budget -= size
            if len(out) >= MAX_UPDATES:
                break
    return out


def list_size(items: list[bytes]) -> int:
    """Bytes taken by ``items`` under a one-letter key."""
    return _LIST_BYTES + sum(bytes_size(len(i)) for i in items)


@attrs.frozen
class ExchangeRequest:
    """A parsed gossip request."""

    updates: list[bytes] = attrs.Factory(list)
    digest: list[bytes] = attrs.Factory(list)
    #: The key range the digest covers exactly (None: it is only a hint).
    window: Window | None = None
    pull: bool = False
    want: bool = False

    def to_payload(self) -> dict[str, Any]:
        """The map sent on the wire (empty fields left out)."""
        out: dict[str, Any] = {}
        if self.updates:
            out["u"] = self.updates
        if self.digest or self.pull or self.want:
            out["d"] = self.digest
        if self.window is not None:
            out["r"] = [None if b is None else [b[0], b[1]] for b in self.window]
        if self.pull:
            out["p"] = True
        if self.want:
            out["w"] = True
        return out


@attrs.frozen
class ExchangeReply:
    """A parsed gossip reply."""

    known: list[bool] = attrs.Factory(list)
    updates: list[bytes] = attrs.Factory(list)
    wanted: list[bytes] = attrs.Factory(list)

    def to_payload(self) -> dict[str, Any]:
        """The map sent on the wire (empty fields left out)."""
        out: dict[str, Any] = {}
        if self.known:
            out["k"] = self.known
        if self.updates:
            out["u"] = self.updates
        if self.wanted:
            out["w"] = self.wanted
        return out


def request_overhead(flags: int, window: bool = False) -> int:
    """Bytes of a request's map header, ``flags`` flags and maybe a window."""
    return _MAP_BYTES + _FLAG_BYTES * flags + (WINDOW_BYTES if window else 0)


def parse_request(payload: Any) -> ExchangeRequest:
    """Check and parse a request payload."""
    if type(payload) is not dict or not set(payload) <= {"u", "d", "r", "p", "w"}:
        raise MalformedPayload("a gossip request is a map of u, d, r, p, w")
    return ExchangeRequest(
        _updates(payload.get("u")),
        _ids(payload.get("d")),
        _window(payload.get("r")),
        _flag(payload.get("p")),
        _flag(payload.get("w")),
    )


def parse_reply(payload: Any) -> ExchangeReply:
    """Check and parse a reply payload."""
    if payload is None:
        return ExchangeReply()
    if type(payload) is not dict or not set(payload) <= {"k", "u", "w"}:
        raise MalformedPayload("a gossip reply is a map of k, u, w")
    known = payload.get("k", [])
    if (
        type(known) is not list
        or len(known) > MAX_UPDATES
        or any(type(b) is not bool for b in known)
    ):
        raise MalformedPayload("k is a list of booleans")
    return ExchangeReply(known, _updates(payload.get("u")), _ids(payload.get("w")))


def _flag(value: Any) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise MalformedPayload("a flag is a boolean")
    return value


def _updates(value: Any) -> list[bytes]:
    if value is None:
        return []
    if type(value) is not list or len(value) > MAX_UPDATES:
        raise MalformedPayload("updates are a list of at most {}".format(MAX_UPDATES))
    for item in value:
        # Sizes are checked per update later, so that one is counted as
        # oversized rather than the whole message as malformed.
        if type(item) is not bytes:
            raise MalformedPayload("an update is a byte string")
    return value


def _window(value: Any) -> Window | None:
    if value is None:
        return None
    if type(value) is not list or len(value) != 2:
        raise MalformedPayload("a window is [low, high]")
    low, high = (_bound(b) for b in value)
    if low is not None and high is not None and not low < high:
        raise MalformedPayload("a window's low bound is below its high bound")
    return (low, high)


def _bound(value: Any) -> Key | None:
    if value is None:
        return None
    if (
        type(value) is not list
        or len(value) != 2
        or type(value[0]) is not int
        or not 0 <= value[0] < MAX_SEQ
        or type(value[1]) is not bytes
        or len(value[1]) != ID_BYTES
    ):
        raise MalformedPayload("a window bound is [seq, update id]")
    return (value[0], value[1])


def _ids(value: Any) -> list[bytes]:
    if value is None:
        return []
    if type(value) is not list or len(value) > MAX_DIGEST:
        raise MalformedPayload("a digest is a list of at most {} ids".format(MAX_DIGEST))
    for item in value:
        if type(item) is not bytes or len(item) != ID_BYTES:
            raise MalformedPayload("an update id is {} bytes".format(ID_BYTES))
    return value
