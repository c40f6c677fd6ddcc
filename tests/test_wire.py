import socket
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhtkit import wire
from dhtkit.bounded import BoundedDict
from dhtkit.contact import Contact
from dhtkit.identity import Identity

ALICE = Identity(b"\1" * 32)
BOB = Identity(b"\2" * 32)

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.binary(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


def datagram(
    kind: int,
    payload: Any,
    *,
    signed: bool = False,
    sender: Identity = ALICE,
    receiver: Identity = BOB,
    txid: int = 7,
    method: str = "ping",
    seq: int = 1,
) -> bytes:
    body = wire.encode_body(kind, txid, method, payload, sender, seq)
    auth = (
        wire.sign(body, sender)
        if signed
        else wire.mac(body, wire.session_key(sender, receiver.public_key))
    )
    return wire.seal(body, auth)


def test_session_key_is_the_same_on_both_sides_and_differs_per_pair() -> None:
    carol = Identity(b"\3" * 32)
    k_ab = wire.session_key(ALICE, BOB.public_key)
    assert k_ab == wire.session_key(BOB, ALICE.public_key)
    assert len(k_ab) == 32
    assert k_ab != wire.session_key(ALICE, carol.public_key)
    assert k_ab != wire.session_key(carol, BOB.public_key)


@given(st.sampled_from(wire.KINDS), plain, st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
def test_round_trip_of_every_kind(kind: int, payload: Any, txid: int, seq: int) -> None:
    data = datagram(kind, payload, txid=txid, seq=seq)
    message = wire.decode(data)
    assert (message.kind, message.txid, message.payload, message.seq) == (kind, txid, payload, seq)
    assert message.sender_key == ALICE.public_key
    assert message.sender_id == ALICE.node_id
    assert not message.signed
    wire.verify(message, wire.session_key(BOB, ALICE.public_key))


@given(plain)
def test_signed_queries_verify_without_a_session(payload: Any) -> None:
    message = wire.decode(datagram(wire.QUERY, payload, signed=True))
    assert message.signed
    wire.verify(message, None)


@given(st.binary(max_size=1500))
def test_any_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    try:
        wire.decode(data)
    except wire.WireError:
        pass


@given(st.data())
def test_corrupted_datagrams_decode_or_raise_wire_error_and_never_verify(
    data: st.DataObject,
) -> None:
    original = datagram(wire.QUERY, {"target": b"\0" * 20})
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(original) - 1), st.integers(1, 255)),
            min_size=1,
            max_size=4,
        )
    )
    corrupted = bytearray(original)
    for position, mask in flips:
        corrupted[position] ^= mask
    if bytes(corrupted) == original:
        return
    key = wire.session_key(BOB, ALICE.public_key)
    with pytest.raises(wire.WireError):
        message = wire.decode(bytes(corrupted))
        wire.verify(message, key)


@given(plain)
def test_any_cbor_value_as_a_datagram_is_a_wire_error(value: Any) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(cbor2.dumps(value))


def test_a_mac_under_another_key_is_refused() -> None:
    message = wire.decode(datagram(wire.QUERY, None))
    with pytest.raises(wire.BadAuthenticator):
        wire.verify(message, wire.session_key(BOB, Identity(b"\3" * 32).public_key))
    with pytest.raises(wire.BadAuthenticator):
        wire.verify(message, None)


def test_a_signature_by_another_key_is_refused() -> None:
    mallory = Identity(b"\4" * 32)
    body = wire.encode_body(wire.QUERY, 1, "ping", None, ALICE, 1)
    message = wire.decode(wire.seal(body, wire.sign(body, mallory)))
    with pytest.raises(wire.BadAuthenticator):
        wire.verify(message, None)


def test_a_node_id_that_is_not_the_hash_of_the_key_is_refused() -> None:
    body = cbor2.dumps(
        [wire.VERSION, wire.QUERY, 1, "ping", None, ALICE.public_key, BOB.node_id, 1]
    )
    with pytest.raises(wire.BadNodeId):
        wire.decode(wire.seal(body, wire.sign(body, ALICE)))


def test_replies_must_carry_a_mac_not_a_signature() -> None:
    body = wire.encode_body(wire.RESPONSE, 1, "", None, ALICE, 1)
    with pytest.raises(wire.MalformedMessage):
        wire.decode(wire.seal(body, wire.sign(body, ALICE)))


def test_oversized_datagrams_are_refused_both_ways() -> None:
    with pytest.raises(wire.MessageTooLarge):
        datagram(wire.QUERY, b"x" * 1400)
    small = datagram(wire.QUERY, b"x" * 100)
    with pytest.raises(wire.MessageTooLarge):
        wire.decode(small, max_size=len(small) - 1)
    assert wire.decode(small, max_size=len(small)).payload == b"x" * 100


@pytest.mark.parametrize(
    "fields",
    [
        [2, 0, 1, "ping", None, ALICE.public_key, ALICE.node_id, 1],  # version
        [1, 4, 1, "ping", None, ALICE.public_key, ALICE.node_id, 1],  # kind
        [1, 0, -1, "ping", None, ALICE.public_key, ALICE.node_id, 1],  # txid
        [1, 0, 2**32, "ping", None, ALICE.public_key, ALICE.node_id, 1],  # txid
        [1, 0, 1, b"ping", None, ALICE.public_key, ALICE.node_id, 1],  # method type
        [1, 0, 1, "m" * 65, None, ALICE.public_key, ALICE.node_id, 1],  # method length
        [1, 0, 1, "ping", None, ALICE.public_key[:31], ALICE.node_id, 1],  # key length
        [1, 0, 1, "ping", None, ALICE.public_key, ALICE.node_id[:19], 1],  # id length
        [1, 0, 1, "ping", None, ALICE.public_key, ALICE.node_id, -1],  # seq
        [1, 0, 1, "ping", None, ALICE.public_key, ALICE.node_id, 1.0],  # seq type
        [True, 0, 1, "ping", None, ALICE.public_key, ALICE.node_id, 1],  # bool version
        [1, 0, 1, "ping", None, ALICE.public_key, ALICE.node_id],  # too short
    ],
)
def test_structurally_wrong_bodies_are_malformed(fields: list[Any]) -> None:
    body = cbor2.dumps(fields)
    with pytest.raises(wire.MalformedMessage):
        wire.decode(wire.seal(body, b"\0" * 16))


@pytest.mark.parametrize(
    "payload",
    [
        cbor2.CBORTag(1, 1_700_000_000),  # a datetime
        cbor2.CBORTag(258, [1, 2]),  # a set
        cbor2.CBORTag(35, "a+"),  # a regular expression
        cbor2.CBORTag(4444, b"unknown tag"),
    ],
)
def test_tagged_payloads_are_refused(payload: Any) -> None:
    body = cbor2.dumps([1, 0, 1, "ping", payload, ALICE.public_key, ALICE.node_id, 1])
    with pytest.raises(wire.MalformedMessage):
        wire.decode(wire.seal(body, wire.sign(body, ALICE)))


@pytest.mark.parametrize(
    "number",
    [2**64, -(2**64) - 1, 10**400, -(10**400)],
    ids=["2**64", "-2**64-1", "10**400", "-10**400"],
)
def test_integers_beyond_64_bits_are_refused_at_decoding(number: int) -> None:
    # They travel as tagged bignums; a ttl or seq of 10**400 broke reads once.
    with pytest.raises(wire.MalformedMessage):
        wire.decode(datagram(wire.QUERY, [b"k", number]))


def test_a_tag_is_refused_before_its_value_is_built() -> None:
    # A regular expression (tag 35) that does not compile: a decoder that
    # builds it fails with re.error inside cbor2; refusing the tag first
    # means the pattern is never looked at, so the refusal names the tag.
    body = cbor2.dumps(
        [1, 0, 1, "ping", cbor2.CBORTag(35, "(" * 500), ALICE.public_key, ALICE.node_id, 1]
    )
    with pytest.raises(wire.MalformedMessage) as refused:
        wire.decode(wire.seal(body, wire.sign(body, ALICE)))
    assert "tag" in str(refused.value)


def test_cyclic_payloads_from_shared_references_are_refused() -> None:
    # tag 28 marks a shareable value, tag 29 refers back to it: [[...]]
    cyclic = bytes([0xD8, 0x1C, 0x81, 0xD8, 0x1D, 0x00])
    body = cbor2.dumps([1, 0, 1, "ping", None, ALICE.public_key, ALICE.node_id, 1])
    body = body.replace(b"\xf6", cyclic, 1)  # None -> the cyclic list
    with pytest.raises(wire.MalformedMessage):
        wire.decode(wire.seal(body, wire.sign(body, ALICE)))


def test_deep_nesting_is_refused() -> None:
    payload: Any = []
    for _ in range(wire.MAX_PAYLOAD_DEPTH + 2):
        payload = [payload]
    with pytest.raises(wire.MalformedMessage):
        wire.decode(datagram(wire.QUERY, payload))


def test_unencodable_payload_is_a_wire_error() -> None:
    with pytest.raises(wire.MalformedMessage):
        wire.encode_body(wire.QUERY, 1, "x", object(), ALICE, 1)


def test_a_public_key_that_is_not_a_curve_point_cannot_make_a_session() -> None:
    with pytest.raises(wire.BadAuthenticator):
        wire.session_key(ALICE, b"\0" * 32)


def family(ip: Any) -> int:
    return socket.AF_INET if ip.version == 4 else socket.AF_INET6


@given(
    st.lists(
        st.tuples(
            st.binary(min_size=32, max_size=32),
            st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
            st.integers(1, 65535),
        ),
        max_size=20,
    )
)
def test_contacts_round_trip_and_ids_are_derived(rows: list[tuple[bytes, Any, int]]) -> None:
    # Addresses in the form the socket layer prints them (inet_ntop).
    contacts = [
        Contact.from_key(key, (socket.inet_ntop(family(ip), ip.packed), port))
        for key, ip, port in rows
    ]
    decoded = wire.decode_contacts(cbor2.loads(cbor2.dumps(wire.encode_contacts(contacts))))
    assert decoded == contacts


@pytest.mark.parametrize(
    "value",
    [
        None,
        [b"k" * 31 + b"\x7f\0\0\1\0\1"],  # short key
        [b"k" * 32 + b"\x7f\0\0\0\1"],  # short address
        [b"k" * 32 + b"\x7f\0\0\1\0\0"],  # port 0
        [b"k" * 32 + b"\0" * 16 + b"\1"],  # 17-byte address
        [[b"k" * 32, b"\x7f\0\0\1", 1]],  # not a byte string
        [b"k" * 32 + b"\x7f\0\0\1\0\1"] * 65,  # too many
        ["k" * 32 + "\x7f\0\0\1\0\1"],  # text
    ],
)
def test_bad_contacts_are_malformed(value: Any) -> None:
    with pytest.raises(wire.MalformedMessage):
        wire.decode_contacts(value)


def test_twenty_contacts_fit_in_one_datagram() -> None:
    contacts = [
        Contact.from_key(Identity(bytes([i]) * 32).public_key, ("2001:db8::1", 65535))
        for i in range(20)
    ]
    data = datagram(wire.RESPONSE, wire.encode_contacts(contacts), method="")
    assert len(data) <= wire.MAX_DATAGRAM


def test_encoding_a_host_that_is_not_an_ip_is_malformed() -> None:
    with pytest.raises(wire.MalformedMessage):
        wire.encode_address(("example.org", 80))


@pytest.mark.parametrize("value", [None, b"", b"\x7f\0\0\1\0", b"\x7f\0\0\1\0\0", "127.0.0.1:80"])
def test_bad_addresses_are_malformed(value: Any) -> None:
    with pytest.raises(wire.MalformedMessage):
        wire.decode_address(value)


def test_addresses_round_trip() -> None:
    for address in [("127.0.0.1", 1), ("::1", 65535), ("2001:db8::5", 4000)]:
        assert wire.decode_address(wire.encode_address(address)) == address


@pytest.mark.parametrize(
    "data",
    [
        b"\x81" * 1399 + b"\x00",  # arrays nested 1,399 deep
        b"\xbf" * 1399 + b"\xff",  # indefinite maps, unterminated
        b"\xc2\x59\x05\x00" + b"\xff" * 1280,  # a 10,000-bit bignum
        b"\x82\x59\xff\xff" + b"\x00" * 100,  # a byte string claiming 65,535 bytes
        b"\x9b" + b"\xff" * 8,  # an array claiming 2**64 - 1 items
    ],
)
def test_hostile_cbor_is_malformed(data: bytes) -> None:
    with pytest.raises(wire.MalformedMessage):
        wire.decode(data)


@given(
    st.sampled_from(wire.KINDS),
    st.integers(0, 2**32 - 1) | st.sampled_from([0, 2**16, 2**32 - 1]),
    st.text(max_size=30) | st.sampled_from(["", "ping", "find_node", "é"]),
    plain,
    st.integers(0, 2**64 - 1) | st.sampled_from([2**32, 2**64 - 1, 1_700_000_000_000_000]),
)
def test_bodies_are_the_cbor_of_their_fields(
    kind: int, txid: int, method: str, payload: Any, seq: int
) -> None:
    # The body is written out by hand for the usual shapes: byte for byte
    # what a CBOR encoder makes of the eight fields, or peers would disagree.
    body = wire.encode_body(kind, txid, method, payload, ALICE, seq)
    fields = [wire.VERSION, kind, txid, method, payload, ALICE.public_key, ALICE.node_id, seq]
    assert body == cbor2.dumps(fields)


@given(st.binary(max_size=1400), st.binary(min_size=16, max_size=16) | st.binary(max_size=70))
def test_the_envelope_is_the_cbor_of_body_and_authenticator(body: bytes, auth: bytes) -> None:
    assert wire.seal(body, auth, max_size=10_000) == cbor2.dumps([body, auth])


def test_envelopes_in_other_cbor_forms_decode_the_same() -> None:
    # The envelope is read without a CBOR decoder when it has the form seal()
    # writes; any other form must still decode (or fail) as CBOR says.
    data = datagram(wire.QUERY, b"x" * 40, txid=70_000, seq=2**40)
    message = wire.decode(data)
    body, auth = message.body, message.auth
    long_heads = b"\x82\x5a" + len(body).to_bytes(4, "big") + body + b"\x58\x10" + auth
    assert wire.decode(long_heads) == message
    indefinite = b"\x82\x5f" + cbor2.dumps(body[:10]) + cbor2.dumps(body[10:]) + b"\xff"
    assert wire.decode(indefinite + cbor2.dumps(auth)) == message
    with pytest.raises(wire.MalformedMessage):
        wire.decode(data[:-1])  # an authenticator one byte short
    with pytest.raises(wire.MalformedMessage):
        wire.decode(data[:-17] + b"\x41\x00")  # too short to be a MAC


@given(st.sampled_from(wire.KINDS), plain, st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
def test_encode_is_seal_of_the_maced_body(kind: int, payload: Any, txid: int, seq: int) -> None:
    key = wire.session_key(ALICE, BOB.public_key)
    body = wire.encode_body(kind, txid, "find_node", payload, ALICE, seq)
    expected = wire.seal(body, wire.mac(body, key), max_size=10_000)
    assert wire.encode(kind, txid, "find_node", payload, ALICE, seq, key, 10_000) == expected
    if len(expected) > wire.MAX_DATAGRAM:
        with pytest.raises(wire.MessageTooLarge):
            wire.encode(kind, txid, "find_node", payload, ALICE, seq, key)


def test_a_session_key_agreed_by_one_side_serves_the_other_in_the_same_process() -> None:
    carol, dave = Identity.generate(), Identity.generate()
    first = wire.session_key(carol, dave.public_key)
    # The very same object: the second agreement was not made again.
    assert wire.session_key(dave, carol.public_key) is first
    assert wire.session_key(carol, dave.public_key) is first


def test_remembered_session_keys_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "_SESSION_KEYS", BoundedDict(16))
    me = Identity.generate()
    peers = [Identity.generate() for _ in range(20)]
    keys = [wire.session_key(me, peer.public_key) for peer in peers]
    assert len(wire._SESSION_KEYS) == 16
    # The oldest were forgotten; agreed again, they are the same keys.
    assert wire.session_key(peers[0], me.public_key) == keys[0]


def _fields_by_cbor2(body: bytes) -> Any:
    fields = cbor2.loads(body)
    return tuple(fields[1:]) if type(fields) is list and len(fields) == 8 else None


@given(
    st.sampled_from(wire.KINDS),
    st.integers(2**16, 2**32 - 1),
    st.text(st.characters(max_codepoint=127), max_size=23),
    st.none() | st.binary(max_size=255),
    st.integers(2**32, 2**64 - 1),
)
def test_usual_bodies_are_read_without_cbor2_as_cbor2_reads_them(
    kind: int, txid: int, method: str, payload: Any, seq: int
) -> None:
    # The shapes of pings, FIND_NODE queries and the like take the short
    # way in: it must see exactly the fields the full decoder sees.
    body = wire.encode_body(kind, txid, method, payload, ALICE, seq)
    assert wire._read_usual_body(body) == _fields_by_cbor2(body)
    message = wire.decode(wire.seal(body, bytes(wire.MAC_BYTES)))
    assert message[:7] == (kind, txid, method, payload, ALICE.public_key, ALICE.node_id, seq)


@given(st.data())
def test_a_usual_body_altered_anywhere_is_read_as_cbor2_reads_it_or_left_to_it(
    data: st.DataObject,
) -> None:
    payload = data.draw(st.none() | st.binary(max_size=40) | st.binary(min_size=24, max_size=40))
    body = bytearray(wire.encode_body(wire.QUERY, 2**31, "find_node", payload, ALICE, 2**60))
    for _ in range(data.draw(st.integers(1, 3))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, 3))
    altered = bytes(body[: len(body) - cut] if cut else body)
    usual = wire._read_usual_body(altered)
    if usual is not None:  # accepted: then the full decoder agrees, field by field
        assert usual == _fields_by_cbor2(altered)
    # Either way, decode's verdict is the full decoder's, which reads the
    # same body in an envelope of another CBOR form (a 4-byte length).
    mac = bytes(wire.MAC_BYTES)
    assert _verdict(wire.seal(altered, mac)) == _verdict(
        b"\x82\x5a" + len(altered).to_bytes(4, "big") + altered + b"\x50" + mac
    )


def _verdict(datagram: bytes) -> Any:
    try:
        return wire.decode(datagram)
    except wire.WireError as e:
        return type(e)


def test_pings_and_find_node_queries_take_the_short_way_in() -> None:
    for payload in (None, b"t" * 20, wire.encode_address(("127.0.0.1", 4000))):
        body = wire.encode_body(wire.QUERY, 2**31, "find_node", payload, ALICE, 2**60)
        assert wire._read_usual_body(body) is not None


def test_a_usual_body_with_a_forged_node_id_is_refused() -> None:
    body = wire.encode_body(wire.QUERY, 2**31, "ping", None, ALICE, 2**60)
    forged = body[:-29] + BOB.node_id + body[-9:]
    assert wire._read_usual_body(forged) is not None
    with pytest.raises(wire.BadNodeId):
        wire.decode(wire.seal(forged, bytes(wire.MAC_BYTES)))


def test_bodies_of_identities_taking_turns_carry_each_ones_key_and_id() -> None:
    # The key and id part of a body is written once per identity.
    for sender in (ALICE, BOB, ALICE, Identity.generate(), BOB):
        body = wire.encode_body(wire.RESPONSE, 2**31, "", b"x", sender, 2**60)
        fields = [1, 1, 2**31, "", b"x", sender.public_key, sender.node_id, 2**60]
        assert body == cbor2.dumps(fields)


@given(plain, st.integers(0, wire.MAX_DATAGRAM))
def test_a_padded_datagram_has_the_size_asked_and_decodes_the_same(payload: Any, size: int) -> None:
    key = wire.session_key(ALICE, BOB.public_key)
    try:
        data = wire.encode(wire.QUERY, 70_000, "find_node", payload, ALICE, 2**40, key)
    except wire.MessageTooLarge:
        return
    padded = wire.pad(data, size)
    assert max(size, len(data)) <= len(padded) <= max(size + 1, len(data))
    assert wire.decode(padded) == wire.decode(data)
    wire.verify(wire.decode(padded), key)  # raises if the MAC does not hold
    if padded != data:
        outer = cbor2.loads(padded)
        assert outer[:2] == cbor2.loads(data) and set(outer[2]) <= {0}


def test_padding_in_other_cbor_forms_decodes_the_same_and_bad_padding_is_malformed() -> None:
    data = datagram(wire.QUERY, b"x" * 40, txid=70_000, seq=2**40)
    message = wire.decode(data)
    body, auth = message.body, message.auth
    for padding in (b"", b"\0" * 23, b"\1" * 24, b"\2" * 300):
        assert wire.decode(cbor2.dumps([body, auth, padding])) == message
    long_pad = b"\x83" + cbor2.dumps(body) + cbor2.dumps(auth) + b"\x5a\0\0\0\x02ab"
    assert wire.decode(long_pad) == message
    for bad in (
        cbor2.dumps([body, auth, "text"]),
        cbor2.dumps([body, auth, 7]),
        cbor2.dumps([body, auth, b"", b""]),
        wire.pad(data, 400)[:-1],  # the padding one byte short
        wire.pad(data, 400) + b"\0",  # one byte beyond it
        b"\x83" + data[1:],  # no padding at all
    ):
        with pytest.raises(wire.MalformedMessage):
            wire.decode(bad)
