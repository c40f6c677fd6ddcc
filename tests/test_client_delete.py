"""``dhtkit delete``, ``delete-signed``, ``put-encrypted``, ``get-encrypted``, and the client's."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import reactor

from dhtkit.client import ApiClient, Deleted
from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from tests.test_client import ApiNode, nodes, run

__all__ = ["nodes"]  # the fixture, used by name


def public_key_of(node: ApiNode) -> str:
    return Identity.from_file(node.data_dir / "identity.key").public_key.hex()


@pytest_twisted.ensureDeferred
async def test_delete_then_get_says_deleted(
    nodes: list[ApiNode], capsys: pytest.CaptureFixture[str]
) -> None:
    api = ("--api", nodes[0].url)
    assert await run(*api, "put", "greeting", "hello") == 0
    capsys.readouterr()
    assert await run(*api, "delete", "greeting") == 0
    assert capsys.readouterr().out.splitlines() == [
        "key {}".format(key_for("greeting").hex()),
        "replicas 3",
    ]
    assert await run("--api", nodes[1].url, "get", "greeting") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "dhtkit: the value under greeting was deleted by its publisher\n"


@pytest_twisted.ensureDeferred
async def test_another_node_cannot_delete_and_nothing_is_not_deletable(
    nodes: list[ApiNode], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("--api", nodes[0].url, "put", "mine", "v") == 0
    capsys.readouterr()
    assert await run("--api", nodes[1].url, "delete", "mine") == 1
    err = capsys.readouterr().err
    assert err.startswith("dhtkit: error: ") and "only the node that wrote" in err
    assert await run("--api", nodes[1].url, "delete", "nobody-put-this") == 1
    assert "no value is stored under nobody-put-this" in capsys.readouterr().err


@pytest_twisted.ensureDeferred
async def test_delete_signed_then_get_signed_says_deleted(
    nodes: list[ApiNode], capsys: pytest.CaptureFixture[str]
) -> None:
    api = ("--api", nodes[0].url)
    assert await run(*api, "put-signed", "profile", "v1") == 0
    capsys.readouterr()
    assert await run(*api, "delete-signed", "profile", "--json") == 0
    reply = json.loads(capsys.readouterr().out)
    assert (reply["seq"], reply["salt"]) == (2, "profile")
    public_key = public_key_of(nodes[0])
    assert await run("--api", nodes[2].url, "get-signed", public_key, "profile") == 1
    err = capsys.readouterr().err
    assert (
        err
        == "dhtkit: the value of {} under the salt 'profile' was deleted by its publisher"
        " (version 2)\n".format(public_key)
    )


@pytest_twisted.ensureDeferred
async def test_put_encrypted_is_read_by_the_recipient_only(
    nodes: list[ApiNode], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    sender, recipient = public_key_of(nodes[0]), public_key_of(nodes[1])
    put = ("--api", nodes[0].url, "put-encrypted", recipient, "note", "for you", "--json")
    assert await run(*put) == 0
    reply = json.loads(capsysbinary.readouterr().out)
    assert (reply["recipient"], reply["seq"]) == (recipient, 1)
    assert await run("--api", nodes[1].url, "get-encrypted", sender, "note") == 0
    assert capsysbinary.readouterr().out == b"for you"
    assert await run("--api", nodes[2].url, "get-encrypted", sender, "note") == 1
    err = capsysbinary.readouterr().err
    assert err.startswith(b"dhtkit: error: this node cannot open the value")
    assert len(err.splitlines()) == 1


@pytest_twisted.ensureDeferred
async def test_the_client_raises_deleted_with_the_version(nodes: list[ApiNode]) -> None:
    client = ApiClient(nodes[0].url, reactor=reactor)
    await client.put_signed("s", b"v")
    await client.delete_signed("s")
    with pytest.raises(Deleted) as raised:
        await client.get_signed(public_key_of(nodes[0]), "s")
    assert (raised.value.status, raised.value.seq) == (410, 2)
    await client.put("plain", b"v")
    assert (await client.delete("plain"))["replicas"] == 3
    with pytest.raises(Deleted):
        await client.get("plain")
