"""The gossip RPC's payloads: shapes, hostile input, and the datagram budget."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhtkit import wire
from dhtkit.gossip import messages
from dhtkit.gossip.messages import (
    MAX_DIGEST,
    METHOD,
    PAYLOAD_BUDGET,
    ExchangeReply,
    ExchangeRequest,
    parse_reply,
    parse_request,
)
from dhtkit.gossip.update import MAX_UPDATE_BYTES, make_update
from dhtkit.identity import Identity
from dhtkit.rpcerrors import MalformedPayload

ID = b"i" * 20


def test_a_request_round_trips() -> None:
    request = ExchangeRequest([b"update"], [ID], window=((1, ID), None), pull=True, want=True)
    assert parse_request(request.to_payload()) == request
    assert parse_request({}) == ExchangeRequest()
    whole = ExchangeRequest([], [ID], window=(None, None))
    assert parse_request(whole.to_payload()) == whole


def test_a_reply_round_trips() -> None:
    reply = ExchangeReply([True, False], [b"update"], [ID])
    assert parse_reply(reply.to_payload()) == reply
    assert parse_reply(None) == ExchangeReply() == parse_reply({})


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "gossip",
        {"x": 1},
        {"u": b"not a list"},
        {"u": ["text"]},
        {"u": [b"x"] * (messages.MAX_UPDATES + 1)},
        {"d": [b"short"]},
        {"d": [ID] * (MAX_DIGEST + 1)},
        {"d": ID},
        {"p": 1},
        {"r": "all"},
        {"r": [None]},
        {"r": [[1, ID], [1, ID]]},
        {"r": [[2, ID], [1, ID]]},
        {"r": [[-1, ID], None]},
        {"r": [None, [2**64, ID]]},
        {"r": [None, [1, b"short"]]},
        {"r": [None, [1.0, ID]]},
        {"c": True},
        {"w": None, "p": []},
    ],
)
def test_malformed_requests_are_refused(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        parse_request(payload)


@pytest.mark.parametrize(
    "payload",
    [[], "ok", {"k": [1]}, {"k": True}, {"u": [1]}, {"w": [b"short"]}, {"z": 1}],
)
def test_malformed_replies_are_refused(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        parse_reply(payload)


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=30) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("udrpwkz"), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(plain)
def test_any_payload_parses_or_is_malformed(payload: Any) -> None:
    for parse in (parse_request, parse_reply):
        try:
            parse(payload)
        except MalformedPayload:
            pass


def test_a_payload_within_the_budget_fits_a_signed_datagram() -> None:
    identity = Identity(b"\3" * 32)
    filler = b"x" * (PAYLOAD_BUDGET - len(cbor2.dumps({"u": [b"x" * 1200]})) + 1200)
    payload = {"u": [filler]}
    assert len(cbor2.dumps(payload)) == PAYLOAD_BUDGET
    body = wire.encode_body(wire.QUERY, 2**32 - 1, METHOD, payload, identity, 2**64 - 1)
    wire.seal(body, wire.sign(body, identity))  # raises if it exceeds the datagram


def test_the_largest_update_fits_the_budget_beside_the_flags() -> None:
    identity = Identity(b"\3" * 32)
    empty = make_update(identity, "t" * 64, b"", seq=2**63, expires=2**40)
    # The data's CBOR length header grows from 1 byte to 3.
    data = b"x" * (MAX_UPDATE_BYTES - len(empty.encoded) - 2)
    largest = make_update(identity, "t" * 64, data, seq=2**63, expires=2**40)
    assert len(largest.encoded) == MAX_UPDATE_BYTES
    request = ExchangeRequest([largest.encoded], [], None, pull=True, want=True).to_payload()
    assert len(cbor2.dumps(request)) <= PAYLOAD_BUDGET
    reply = ExchangeReply([True] * 8, [largest.encoded], []).to_payload()
    assert len(cbor2.dumps(reply)) <= PAYLOAD_BUDGET


def test_a_window_and_the_digest_it_leaves_room_for_fit_the_budget() -> None:
    window = ((2**64 - 2, ID), (2**64 - 1, ID))
    room = PAYLOAD_BUDGET - messages.request_overhead(2, window=True) - messages.list_size([])
    request = ExchangeRequest(
        [], [ID] * (room // messages.ID_SIZE), window, True, True
    ).to_payload()
    assert len(cbor2.dumps(request)) <= PAYLOAD_BUDGET
    assert room // messages.ID_SIZE >= 50


@pytest.mark.parametrize("length", [0, 23, 24, 255, 256, 1200])
def test_bytes_size_is_the_cbor_length(length: int) -> None:
    assert messages.bytes_size(length) == len(cbor2.dumps(b"x" * length))
    assert messages.list_size([b"x" * length]) >= len(cbor2.dumps({"u": [b"x" * length]})) - 1


def test_fit_takes_what_fits_and_skips_what_does_not() -> None:
    identity = Identity(b"\3" * 32)
    small = make_update(identity, "t", b"s", seq=1, expires=10)
    large = make_update(identity, "t", b"x" * 1000, seq=2, expires=10)
    budget = messages.list_size([small.encoded, small.encoded]) + 10
    assert messages.fit([small, None, large, small], budget) == [small, small]
    assert messages.fit([large], messages.list_size([large.encoded])) == [large]
    assert messages.fit([small] * 100, 10**6) == [small] * messages.MAX_UPDATES
