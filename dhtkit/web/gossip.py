"""The HTTP API's gossip endpoints: publish, list and delete updates.

``POST /v1/gossip/{topic}`` signs and spreads an update with the node's own
key, ``GET /v1/gossip/{topic}[?limit=N][&since=SEQ]`` lists the newest live
updates of a topic the node holds (its own and those gossip brought; at
most :data:`MAX_LIMIT`, :data:`DEFAULT_LIMIT` unless asked, so a reply stays
far below a megabyte whatever the store holds), and ``DELETE
/v1/gossip/{topic}/{update_id}`` spreads a death certificate for an update
this node published. They serve the gossip that the daemon runs with
``--gossip``; without it they answer 404 and say so. Gossip needs no
lookup: publishing works before the node has contacts, and the update
spreads once it has some.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dhtkit.gossip.protocol import GossipProtocol
from dhtkit.gossip.service import GossipService
from dhtkit.gossip.state import GossipState
from dhtkit.gossip.update import MAX_SEQ, MAX_TOPIC_BYTES, Update, UpdateTooLarge
from dhtkit.web.call import ApiError, Call, Reply, json_reply, text
from dhtkit.web.limits import DEFAULT_LIMIT, MAX_LIMIT

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "NO_GOSSIP",
    "delete_update",
    "limit_from",
    "list_updates",
    "publish_update",
    "since_from",
    "topic_from",
    "ttl_from",
]

_HEX_ID = re.compile(r"[0-9a-fA-F]{40}")
_DIGITS = re.compile(r"[0-9]{1,20}")

#: What the gossip paths answer (404) on a node that runs no gossip.
NO_GOSSIP = "this node does not run gossip: start it with --gossip"


def _state(call: Call) -> GossipState:
    # The daemon hands over its GossipService; an embedding application may
    # hand over the bare protocol (as /metrics allows).
    gossip: Any = call.gossip
    if gossip is None:
        raise ApiError(404, NO_GOSSIP)
    if isinstance(gossip, GossipService):
        if not gossip.running:
            raise ApiError(503, "the node's gossip is not running")
        gossip = gossip.gossip
    if not isinstance(gossip, GossipProtocol):
        raise TypeError("the API's gossip is not a GossipService: {!r}".format(gossip))
    return gossip.state


def topic_from(segment: bytes) -> str:
    """A ``{topic}`` segment as text: 1 to 64 bytes of UTF-8, else 400."""
    topic = text(segment, "topic")
    size = len(topic.encode("utf-8"))
    if not 0 < size <= MAX_TOPIC_BYTES:
        raise ApiError(
            400, "the topic is {} bytes; give 1 to {} bytes".format(size, MAX_TOPIC_BYTES)
        )
    return topic


def ttl_from(query: Mapping[str, Sequence[str]]) -> float | None:
    """The ``ttl`` query argument in seconds, or None when absent; 400 unless positive."""
    given = query.get("ttl")
    if not given:
        return None
    try:
        ttl = float(given[0]) if len(given) == 1 else math.nan
    except ValueError:
        ttl = math.nan
    if not (math.isfinite(ttl) and ttl > 0):
        raise ApiError(400, "ttl must be one positive number of seconds")
    return ttl


def _one(query: Mapping[str, Sequence[str]], name: str) -> int | None:
    """The query argument ``name`` as a whole number (at most 20 digits), or None."""
    given = query.get(name)
    if not given:
        return None
    if len(given) != 1 or not _DIGITS.fullmatch(given[0]):
        raise ApiError(400, "{} must be given once, as a whole number".format(name))
    return int(given[0])


def limit_from(query: Mapping[str, Sequence[str]]) -> int:
    """``?limit=``: 1 to :data:`MAX_LIMIT` updates, :data:`DEFAULT_LIMIT` when absent."""
    limit = _one(query, "limit")
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "limit must be a whole number from 1 to {}".format(MAX_LIMIT))
    return limit


def since_from(query: Mapping[str, Sequence[str]]) -> int | None:
    """``?since=``: a sequence number (0 to 2**64); only later updates are listed."""
    since = _one(query, "since")
    if since is not None and since > MAX_SEQ:
        raise ApiError(400, "since must be a sequence number from 0 to {}".format(MAX_SEQ))
    return since


def _check_stored(state: GossipState, update: Update) -> None:
    # Signed but refused by our own full store: it would never spread.
    if not state.knows(update.update_id):
        raise ApiError(
            503,
            "the node holds as many gossip updates as it may ({}); "
            "try again when some expire".format(state.config.max_updates),
        )


def _described(update: Update) -> dict[str, Any]:
    return {
        "update_id": update.update_id.hex(),
        "topic": update.topic,
        "origin": update.origin.hex(),
        "seq": update.seq,
        "expires": update.expires,
    }


async def publish_update(call: Call) -> Reply:
    """``POST /v1/gossip/{topic}``: sign the body as an update and spread it.

    Answers ``{"update_id", "topic", "origin", "seq", "expires"}``;
    ``expires`` is in seconds of the node's clock (Unix time for a daemon).
    """
    topic = topic_from(call.params[0])
    ttl = ttl_from(call.query)
    state = _state(call)
    limit = state.config.max_update_bytes
    too_long = call.length is not None and call.length > limit
    if too_long or call.body is None:
        raise ApiError(
            413, "the data is larger than the {} bytes a gossip update may take".format(limit)
        )
    try:
        update = state.publish(topic, call.body, ttl)
    except UpdateTooLarge as e:
        raise ApiError(413, str(e)) from None
    except ValueError as e:  # a ttl beyond the node's max_ttl, or the like
        raise ApiError(400, str(e)) from None
    _check_stored(state, update)
    return json_reply(_described(update))


async def list_updates(call: Call) -> Reply:
    """``GET /v1/gossip/{topic}[?limit=N][&since=SEQ]``: the live updates of the topic held here.

    Newest first, in the order every node keeps (the origin's sequence
    number, which is its clock in microseconds, then the id); ``data`` is
    base64. Updates whose expiry has passed are left out even before the
    next gossip round forgets them. At most ``limit`` updates are listed
    (:data:`DEFAULT_LIMIT` by default, up to :data:`MAX_LIMIT`), only
    those with a sequence number above ``since`` when it is given; ``more``
    says whether older ones were left out.
    """
    topic = topic_from(call.params[0])
    limit = limit_from(call.query)
    since = since_from(call.query)
    state = _state(call)
    now = state.clock.seconds()
    live = [
        u
        for u in reversed(state.updates(topic))
        if u.expires > now and (since is None or u.seq > since)
    ]
    listed = [
        dict(_described(u), data=base64.b64encode(u.data).decode("ascii")) for u in live[:limit]
    ]
    return json_reply({"updates": listed, "more": len(live) > limit})


async def delete_update(call: Call) -> Reply:
    """``DELETE /v1/gossip/{topic}/{update_id}``: spread a death certificate.

    Only the node that published an update can delete it (403 otherwise);
    404 when no such update of the topic is held. Answers
    ``{"update_id": <the certificate's id>, "deletes": <the update's id>}``.
    """
    topic = topic_from(call.params[0])
    hex_id = call.params[1].decode("ascii", "replace")
    if not _HEX_ID.fullmatch(hex_id):
        raise ApiError(400, "the update id must be 40 hex digits")
    state = _state(call)
    update = state.store.get(bytes.fromhex(hex_id))
    if update is None or update.deletes is not None or update.topic != topic:
        raise ApiError(
            404, "this node holds no update {} of the topic {!r}".format(hex_id.lower(), topic)
        )
    if update.origin != state.identity.public_key:
        raise ApiError(
            403,
            "only the node that published an update can delete it; {} was published by {}".format(
                hex_id.lower(), update.origin.hex()
            ),
        )
    try:
        certificate = state.delete(update)
    except ValueError as e:  # what death_certificate refuses; checked above already
        raise ApiError(403, str(e)) from None
    _check_stored(state, certificate)
    return json_reply({"update_id": certificate.update_id.hex(), "deletes": update.update_id.hex()})
