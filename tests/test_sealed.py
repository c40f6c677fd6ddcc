"""Sealed values: only the recipient opens them, and only from their sealer."""

from __future__ import annotations

import pytest

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.sealed import OVERHEAD, BadRecipient, NotSealedForUs, seal, unseal
from dhtkit.values import SignedValue, ValueDeleted, ValueTooLarge, signed_key
from tests.valuenet import Cluster

ALICE = Identity(b"\1" * 32)
BOB = Identity(b"\2" * 32)
MALLORY = Identity(b"\3" * 32)


def test_only_the_recipient_opens_a_sealed_value() -> None:
    sealed = seal(b"for bob", ALICE.public_key, BOB.public_key, 1000)
    assert len(sealed) == len(b"for bob") + OVERHEAD
    assert b"for bob" not in sealed
    assert unseal(sealed, ALICE.public_key, BOB) == b"for bob"
    with pytest.raises(NotSealedForUs, match="not sealed for the key"):
        unseal(sealed, ALICE.public_key, MALLORY)


def test_a_sealed_value_copied_under_another_signer_is_refused() -> None:
    sealed = seal(b"for bob", ALICE.public_key, BOB.public_key, 1000)
    with pytest.raises(NotSealedForUs, match="sealed by"):
        unseal(sealed, MALLORY.public_key, BOB)


@pytest.mark.parametrize("damaged", [b"", b"x" * 10, b"x" * 100])
def test_damaged_ciphertext_is_a_clear_error(damaged: bytes) -> None:
    with pytest.raises(NotSealedForUs):
        unseal(damaged, ALICE.public_key, BOB)


def test_a_bad_recipient_key_is_refused() -> None:
    with pytest.raises(BadRecipient):
        seal(b"v", ALICE.public_key, b"\xff" * 32, 1000)
    with pytest.raises(BadRecipient):
        seal(b"v", ALICE.public_key, b"short", 1000)


def test_the_size_limit_counts_the_sealing() -> None:
    seal(b"x" * (1000 - OVERHEAD), ALICE.public_key, BOB.public_key, 1000)
    with pytest.raises(ValueTooLarge, match="at most {} bytes".format(1000 - OVERHEAD)):
        seal(b"x" * (1001 - OVERHEAD), ALICE.public_key, BOB.public_key, 1000)


# -- through the DHT ---------------------------------------------------------------


def test_put_encrypted_stores_ciphertext_only_the_recipient_reads() -> None:
    net = Cluster(4)
    sender, recipient, other = net.client(), net.client(), net.nodes[0]
    secret = b"the launch code is 0000"
    assert net.wait(sender.put_encrypted(secret, recipient.identity.public_key, b"note")) == 4
    key = signed_key(sender.identity.public_key, b"note")
    for node in net.holders(key):
        record = node.store.get(key).record
        assert isinstance(record, SignedValue)
        assert secret not in record.value and len(record.value) == len(secret) + OVERHEAD
    opened = net.wait(recipient.get_encrypted(sender.identity.public_key, b"note"))
    assert opened == secret
    with pytest.raises(NotSealedForUs):
        net.wait(other.get_encrypted(sender.identity.public_key, b"note"))
    assert net.wait(recipient.get_encrypted(sender.identity.public_key, b"none")) is None


def test_an_encrypted_value_is_a_signed_value_and_deletes_like_one() -> None:
    net = Cluster(3)
    sender, recipient = net.nodes[0], net.nodes[1]
    net.wait(sender.put_encrypted(b"v1", recipient.identity.public_key))
    net.wait(sender.put_encrypted(b"v2", recipient.identity.public_key))
    assert net.wait(recipient.get_encrypted(sender.identity.public_key)) == b"v2"
    net.wait(sender.delete_signed())
    with pytest.raises(ValueDeleted):
        net.wait(recipient.get_encrypted(sender.identity.public_key))


def test_put_encrypted_refuses_bad_input_before_any_traffic() -> None:
    net = Cluster(2)
    node = net.nodes[0]
    with pytest.raises(BadRecipient):
        net.wait(node.put_encrypted(b"v", b"\xff" * 32))
    with pytest.raises(ValueTooLarge):
        net.wait(node.put_encrypted(b"x" * 1000, ALICE.public_key))
    assert net.holders(key_for("anything")) == []
    assert node.stats().get("puts", 0) == 0
