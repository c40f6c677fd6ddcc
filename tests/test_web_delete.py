"""The HTTP API's deletes and encrypted values, over real nodes and sockets."""

from __future__ import annotations

import pytest_twisted

from dhtkit.keyspace import key_for
from dhtkit.sealed import OVERHEAD
from dhtkit.values import SignedValue, signed_key
from tests.test_web import Cluster, cluster, error_of, three

__all__ = ["cluster"]  # the fixture, used by name


# -- delete ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_deleted_plain_value_answers_410(cluster: Cluster) -> None:
    apis = await three(cluster)
    await apis[0].call("PUT", "/v1/values/greeting", b"hello")
    deleted = await apis[0].call("DELETE", "/v1/values/greeting")
    assert deleted.code == 200
    assert deleted.json() == {"key": key_for("greeting").hex(), "replicas": 3}
    got = await apis[2].call("GET", "/v1/values/greeting")
    assert error_of(got, 410) == "the value under greeting was deleted by its publisher"
    assert got.header("dhtkit-seq") is not None


@pytest_twisted.ensureDeferred
async def test_only_the_writer_deletes_a_plain_value(cluster: Cluster) -> None:
    apis = await three(cluster)
    await apis[0].call("PUT", "/v1/values/mine", b"v")
    message = error_of(await apis[1].call("DELETE", "/v1/values/mine"), 403)
    assert "only the node that wrote a plain value can delete it" in message
    assert (await apis[2].call("GET", "/v1/values/mine")).body == b"v"


@pytest_twisted.ensureDeferred
async def test_deleting_nothing_is_404(cluster: Cluster) -> None:
    apis = await three(cluster)
    message = error_of(await apis[0].call("DELETE", "/v1/values/never-stored"), 404)
    assert message == "no value is stored under never-stored"


@pytest_twisted.ensureDeferred
async def test_a_deleted_signed_value_answers_410_and_a_later_put_comes_after(
    cluster: Cluster,
) -> None:
    apis = await three(cluster)
    owner = cluster.services[0].identity
    await apis[0].call("PUT", "/v1/signed/profile", b"v1")
    deleted = await apis[0].call("DELETE", "/v1/signed/profile")
    assert deleted.code == 200
    assert deleted.json() == {
        "key": signed_key(owner.public_key, b"profile").hex(),
        "public_key": owner.public_key.hex(),
        "salt": "profile",
        "seq": 2,
        "replicas": 3,
    }
    path = "/v1/signed/{}/profile".format(owner.public_key.hex())
    got = await apis[1].call("GET", path)
    assert "deleted" in error_of(got, 410)
    assert got.header("dhtkit-seq") == "2"
    stored = cluster.services[2].node.store.get(signed_key(owner.public_key, b"profile"))
    assert stored is not None and stored.record == SignedValue.tombstone(owner, 2, b"profile")
    again = await apis[0].call("PUT", "/v1/signed/profile", b"v3")
    assert again.json()["seq"] == 3
    assert (await apis[2].call("GET", path)).body == b"v3"


@pytest_twisted.ensureDeferred
async def test_a_signed_delete_checks_seq_and_cas(cluster: Cluster) -> None:
    apis = await three(cluster)
    await apis[0].call("PUT", "/v1/signed/s", b"v1")
    assert "seq" in error_of(await apis[0].call("DELETE", "/v1/signed/s?seq=-1"), 400)
    assert "compare-and-swap" in error_of(await apis[0].call("DELETE", "/v1/signed/s?cas=7"), 409)
    assert (await apis[0].call("DELETE", "/v1/signed/s?cas=1")).json()["seq"] == 2


# -- encrypted --------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_encrypted_value_is_read_only_by_its_recipient(cluster: Cluster) -> None:
    apis = await three(cluster)
    sender, recipient = cluster.services[0].identity, cluster.services[1].identity
    put = await apis[0].call(
        "PUT", "/v1/encrypted/note?to={}".format(recipient.public_key.hex()), b"secret"
    )
    assert put.code == 200, put.body
    assert put.json()["recipient"] == recipient.public_key.hex()
    assert put.json()["seq"] == 1
    key = signed_key(sender.public_key, b"note")
    for svc in cluster.services:
        entry = svc.node.store.get(key)
        assert entry is not None and b"secret" not in entry.record.value
        assert len(entry.record.value) == len(b"secret") + OVERHEAD
    path = "/v1/encrypted/{}/note".format(sender.public_key.hex())
    got = await apis[1].call("GET", path)
    assert (got.code, got.body, got.header("dhtkit-seq")) == (200, b"secret", "1")
    assert "cannot open" in error_of(await apis[2].call("GET", path), 403)
    missing = "/v1/encrypted/{}/other".format(sender.public_key.hex())
    assert (await apis[1].call("GET", missing)).code == 404


@pytest_twisted.ensureDeferred
async def test_encrypted_puts_check_the_recipient_and_the_size(cluster: Cluster) -> None:
    apis = await three(cluster)
    assert "recipient" in error_of(await apis[0].call("PUT", "/v1/encrypted/n", b"x"), 400)
    bad = "/v1/encrypted/n?to=" + "zz" * 32
    assert "recipient" in error_of(await apis[0].call("PUT", bad, b"x"), 400)
    not_a_point = "/v1/encrypted/n?to=" + "ff" * 32
    assert "Ed25519" in error_of(await apis[0].call("PUT", not_a_point, b"x"), 400)
    to = "/v1/encrypted/n?to=" + cluster.services[1].identity.public_key.hex()
    message = error_of(await apis[0].call("PUT", to, b"x" * (1001 - OVERHEAD)), 413)
    assert "at most {} bytes".format(1000 - OVERHEAD) in message
