"""The HTTP API's value endpoints.

``PUT``/``GET``/``DELETE /v1/values/{key}`` and ``PUT``/``DELETE
/v1/signed/{salt}`` / ``GET /v1/signed/{public_key}/{salt}`` over the node's
:class:`~dhtkit.node.DHTNode`. A read of a deleted key answers 410. Bad input
is answered with a 4xx :class:`~dhtkit.web.call.ApiError` before any traffic;
the network's own failures with 503 (:func:`~dhtkit.web.call.network_error`).
"""

from __future__ import annotations

from dhtkit.values import MAX_SEQ, NotPublisher, ValueDeleted, signed_key
from dhtkit.web.call import (
    ApiError,
    Call,
    Reply,
    json_reply,
    key_from,
    public_key_from,
    salt_from,
    sequence_from,
    value_from,
)


async def put_value(call: Call) -> Reply:
    """``PUT /v1/values/{key}``: store the body, last writer wins."""
    key, _ = key_from(call.params[0])
    value = value_from(call)
    replicas = await call.service.node.put(key, value)
    return json_reply({"key": key.hex(), "replicas": replicas})


async def get_value(call: Call) -> Reply:
    """``GET /v1/values/{key}``: the newest value, raw; 410 if it was deleted."""
    key, name = key_from(call.params[0])
    try:
        value = await call.service.node.get(key)
    except ValueDeleted as e:
        raise ApiError(
            410,
            "the value under {} was deleted by its publisher".format(name),
            {"Dhtkit-Seq": str(e.record.seq)},
        ) from None
    if value is None:
        raise ApiError(404, "no value is stored under {}".format(name))
    return Reply(200, value, "application/octet-stream")


async def delete_value(call: Call) -> Reply:
    """``DELETE /v1/values/{key}``: withdraw the plain value this node put there.

    404 when nothing is stored, 403 when another node wrote the value.
    """
    key, name = key_from(call.params[0])
    try:
        replicas = await call.service.node.delete(key)
    except NotPublisher as e:
        raise ApiError(403, "{} (under {})".format(e, name)) from None
    except LookupError:
        raise ApiError(404, "no value is stored under {}".format(name)) from None
    return json_reply({"key": key.hex(), "replicas": replicas})


async def signed_version(call: Call, salt: bytes, seq: int | None, cas: int | None) -> int:
    """``seq`` (from the query), or the next version of the node's value under ``salt``."""
    if seq is None:
        # Asked for here, so that the reply can say which version was stored.
        seq = await call.service.node.next_seq(call.service.identity.public_key, salt, cas)
        if seq > MAX_SEQ:
            raise ApiError(409, "the sequence number cannot go beyond {}".format(MAX_SEQ))
    return seq


def signed_reply(
    call: Call, salt: bytes, salt_text: str, seq: int, replicas: int, **more: str
) -> Reply:
    """What a write of the node's own signed value answers (with ``more`` fields)."""
    public_key = call.service.identity.public_key
    return json_reply(
        {
            "key": signed_key(public_key, salt).hex(),
            "public_key": public_key.hex(),
            "salt": salt_text,
            "seq": seq,
            "replicas": replicas,
            **more,
        }
    )


async def put_signed(call: Call) -> Reply:
    """``PUT /v1/signed/{salt}``: a new version of the node's own mutable value."""
    salt, salt_text = salt_from(call.params[0])
    seq = sequence_from(call.query, "seq")
    cas = sequence_from(call.query, "cas")
    value = value_from(call)
    seq = await signed_version(call, salt, seq, cas)
    replicas = await call.service.node.put_signed(value, salt, seq=seq, expected_seq=cas)
    return signed_reply(call, salt, salt_text, seq, replicas)


async def delete_signed(call: Call) -> Reply:
    """``DELETE /v1/signed/{salt}``: a signed tombstone above the node's own value."""
    salt, salt_text = salt_from(call.params[0])
    seq = sequence_from(call.query, "seq")
    cas = sequence_from(call.query, "cas")
    seq = await signed_version(call, salt, seq, cas)
    replicas = await call.service.node.delete_signed(salt, seq=seq, expected_seq=cas)
    return signed_reply(call, salt, salt_text, seq, replicas)


async def get_signed(call: Call) -> Reply:
    """``GET /v1/signed/{public_key}/{salt}``: the newest version, raw, with its seq."""
    public_key = public_key_from(call.params[0])
    salt, _ = salt_from(call.params[1])
    found = await call.service.node.get_signed(public_key, salt)
    if found is None:
        raise ApiError(
            404, "no value is stored under public key {} and this salt".format(public_key.hex())
        )
    return Reply(200, found.value, "application/octet-stream", {"Dhtkit-Seq": str(found.seq)})
