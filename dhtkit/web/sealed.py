"""The HTTP API's encrypted values: sealed for one recipient, signed by this node.

``PUT /v1/encrypted/{salt}?to={recipient_public_key}`` seals the body for the
recipient and stores it as this node's signed value under ``salt`` (answers
as ``PUT /v1/signed/{salt}`` does, plus ``recipient``); ``GET
/v1/encrypted/{public_key}/{salt}`` reads the value that key sealed for this
node and answers it opened (403 when it is not sealed for this node, 410
when it was deleted). See :mod:`dhtkit.sealed`.
"""

from __future__ import annotations

from dhtkit.sealed import OVERHEAD, NotSealedForUs, unseal
from dhtkit.web.call import (
    ApiError,
    Call,
    Reply,
    public_key_from,
    salt_from,
    sequence_from,
    value_from,
)
from dhtkit.web.values import signed_reply, signed_version

__all__ = ["get_encrypted", "put_encrypted"]


def _recipient(call: Call) -> bytes:
    given = call.query.get("to")
    if not given or len(given) != 1:
        raise ApiError(400, "give the recipient: ?to= and its public key, 64 hex digits")
    try:
        return public_key_from(given[0].encode("ascii", "replace"))
    except ApiError:
        raise ApiError(400, "the recipient (?to=) must be a public key of 64 hex digits") from None


async def put_encrypted(call: Call) -> Reply:
    """``PUT /v1/encrypted/{salt}?to=HEX``: the body sealed for the recipient, signed by us."""
    salt, salt_text = salt_from(call.params[0])
    recipient = _recipient(call)
    seq = sequence_from(call.query, "seq")
    cas = sequence_from(call.query, "cas")
    value = value_from(call)
    limit = call.service.node.max_value_size - OVERHEAD
    if len(value) > limit:
        raise ApiError(
            413,
            "the value is {} bytes; sealed for a recipient it may be at most {} bytes".format(
                len(value), limit
            ),
        )
    seq = await signed_version(call, salt, seq, cas)
    node = call.service.node
    replicas = await node.put_encrypted(value, recipient, salt, seq=seq, expected_seq=cas)
    return signed_reply(call, salt, salt_text, seq, replicas, recipient=recipient.hex())


async def get_encrypted(call: Call) -> Reply:
    """``GET /v1/encrypted/{public_key}/{salt}``: the value sealed for this node, opened."""
    public_key = public_key_from(call.params[0])
    salt, _ = salt_from(call.params[1])
    found = await call.service.node.get_signed(public_key, salt)
    if found is None:
        raise ApiError(
            404, "no value is stored under public key {} and this salt".format(public_key.hex())
        )
    try:
        value = unseal(found.value, public_key, call.service.identity)
    except NotSealedForUs as e:
        raise ApiError(403, "this node cannot open the value: {}".format(e)) from None
    return Reply(200, value, "application/octet-stream", {"Dhtkit-Seq": str(found.seq)})
