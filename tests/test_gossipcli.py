"""``dhtkit publish``, ``updates`` and ``unpublish`` against a real node with gossip."""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from dhtkit import cli
from dhtkit.cli.gossip import shown
from dhtkit.client import ApiClient
from dhtkit.datadir import write_api_url
from dhtkit.gossip.config import GossipConfig
from dhtkit.service import GossipService, KademliaService
from dhtkit.web import make_site


@attrs.define
class GossipNode:
    service: KademliaService
    gossip: GossipService | None
    port: Any
    url: str
    data_dir: Path

    @property
    def origin(self) -> str:
        return self.service.identity.public_key.hex()


async def start_node(data_dir: Path, gossip: bool = True) -> GossipNode:
    svc = KademliaService(0, "127.0.0.1", data_dir, [], rpc_options={"timeout": 0.5})
    svc.startService()
    rider = None
    if gossip:
        rider = GossipService.riding_on(
            svc, svc.overlay.contacts, config=GossipConfig(period=0.05, jitter=0.5)
        )
        rider.startService()
    await svc.when_joined()
    port = reactor.listenTCP(0, make_site(svc, gossip=rider), interface="127.0.0.1")
    url = "http://127.0.0.1:{}".format(port.getHost().port)
    write_api_url(data_dir, url)
    return GossipNode(svc, rider, port, url, data_dir)


async def stop_node(node: GossipNode) -> None:
    await node.port.stopListening()
    if node.gossip is not None and node.gossip.running:
        await node.gossip.stopService()
    await node.service.stopService()


@pytest_twisted.async_yield_fixture
async def node(tmp_path: Path) -> AsyncIterator[GossipNode]:
    started = await start_node(tmp_path / "node")
    yield started
    await stop_node(started)


async def run(*argv: str) -> int:
    status: int = await cli.execute(list(argv), reactor)
    return status


@pytest_twisted.ensureDeferred
async def test_publish_prints_the_id_and_updates_lists_it(
    node: GossipNode, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("--data-dir", str(node.data_dir), "publish", "news/en", "hello world") == 0
    out, err = capsys.readouterr()
    update_id = out.strip()
    assert len(update_id) == 40 and int(update_id, 16) >= 0
    assert err == ""
    assert node.gossip is not None
    held = node.gossip.gossip.state.updates("news/en")
    assert [u.update_id.hex() for u in held] == [update_id]
    assert await run("updates", "news/en", "--api", node.url) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "{} {} {} hello world".format(update_id[:12], node.origin[:12], held[0].seq)
    ]
    assert err == ""


@pytest_twisted.ensureDeferred
async def test_data_that_is_not_printable_text_is_shown_as_its_size(
    node: GossipNode,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(bytes(range(256)))))
    assert await run("--api", node.url, "publish", "t", "-") == 0
    assert await run("--api", node.url, "publish", "t", "two\nlines") == 0
    capsys.readouterr()
    assert await run("--api", node.url, "updates", "t") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == ["<9 bytes>", "<256 bytes>"]


def test_shown_keeps_printable_utf8_and_sizes_the_rest() -> None:
    assert shown("héllo wörld".encode()) == "héllo wörld"
    assert shown(b"") == ""
    assert shown(b"\xff\xfe") == "<2 bytes>"
    assert shown(b"tab\there") == "<8 bytes>"


@pytest_twisted.ensureDeferred
async def test_json_output_and_ttl(node: GossipNode, capsys: pytest.CaptureFixture[str]) -> None:
    before = reactor.seconds()
    assert await run("--api", node.url, "publish", "t", "v", "--ttl", "60", "--json") == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["topic"] == "t" and reply["origin"] == node.origin
    assert before + 60 <= reply["expires"] <= reactor.seconds() + 61
    assert await run("--api", node.url, "updates", "t", "--json") == 0
    (listed,) = json.loads(capsys.readouterr().out)["updates"]
    assert listed == dict(reply, data="dg==")


@pytest_twisted.ensureDeferred
async def test_unpublish_by_full_id_or_by_the_prefix_updates_shows(
    node: GossipNode, capsys: pytest.CaptureFixture[str]
) -> None:
    api = ("--api", node.url)
    ids = []
    for data in ("one", "two"):
        assert await run(*api, "publish", "t", data) == 0
        ids.append(capsys.readouterr().out.strip())
    assert await run(*api, "unpublish", "t", ids[0].upper()) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "deletes {}".format(ids[0])
    assert lines[0].startswith("update_id ") and len(lines[0].split()[1]) == 40
    assert await run(*api, "updates", "t") == 0
    prefix = capsys.readouterr().out.split()[0]
    assert prefix == ids[1][:12]
    assert await run(*api, "unpublish", "t", prefix, "--json") == 0
    assert json.loads(capsys.readouterr().out)["deletes"] == ids[1]
    assert await run(*api, "updates", "t") == 0
    assert capsys.readouterr().out == ""


@pytest_twisted.ensureDeferred
async def test_unpublish_of_an_unknown_id_fails_in_one_line(
    node: GossipNode, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("--api", node.url, "unpublish", "t", "ab" * 20) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "dhtkit: error: this node holds no update {} of the topic 't'\n".format("ab" * 20)
    assert await run("--api", node.url, "unpublish", "t", "ab" * 6) == 1
    err = capsys.readouterr().err
    assert err == (
        "dhtkit: error: the node holds no update of the topic 't' whose id starts with "
        "abababababab\n"
    )


@pytest_twisted.ensureDeferred
async def test_an_ambiguous_prefix_is_refused(
    node: GossipNode, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two ids sharing 12 digits cannot be made on purpose: the listing is faked.
    fake = [{"update_id": "0123456789ab" + c * 28} for c in "cd"]
    monkeypatch.setattr(ApiClient, "updates", lambda self, topic, *_: defer.succeed(fake))
    assert await run("--api", node.url, "unpublish", "t", "0123456789AB") == 1
    assert "2 updates of the topic 't' have ids starting with 0123456789ab: give more digits" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "argv, says",
    [
        (["unpublish", "t", "xyz"], "is not an update id"),
        (["unpublish", "t", "abc"], "is not an update id"),
        (["unpublish", "t", "a" * 41], "is not an update id"),
        (["publish", "t", "v", "--ttl", "0"], "is not at least"),
        (["publish", "t", "v", "--ttl", "soon"], "is not a number"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_arguments_are_usage_errors(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("--api", "http://127.0.0.1:9", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dhtkit: error: ") and says in err and err.count("\n") == 1


@pytest_twisted.ensureDeferred
async def test_a_node_without_gossip_says_how_to_start_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = await start_node(tmp_path / "plain", gossip=False)
    try:
        for argv in (["publish", "t", "v"], ["updates", "t"], ["unpublish", "t", "ab" * 20]):
            assert await run("--data-dir", str(plain.data_dir), *argv) == 1
            assert capsys.readouterr() == (
                "",
                "dhtkit: error: this node does not run gossip: start it with --gossip\n",
            )
    finally:
        await stop_node(plain)


@pytest_twisted.ensureDeferred
async def test_updates_takes_a_limit_and_a_since(
    node: GossipNode, capsys: pytest.CaptureFixture[str]
) -> None:
    for data in ("one", "two", "three"):
        assert await run("--api", node.url, "publish", "t", data) == 0
    capsys.readouterr()
    assert await run("--api", node.url, "updates", "t", "--limit", "2", "--json") == 0
    newest = json.loads(capsys.readouterr().out)["updates"]
    assert [base64.b64decode(u["data"]) for u in newest] == [b"three", b"two"]
    since = str(newest[1]["seq"])
    assert await run("--api", node.url, "updates", "t", "--since", since) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].endswith(" three")
    assert await run("--api", node.url, "updates", "t", "--limit", "1001") == 2
    assert "above the maximum of 1000" in capsys.readouterr().err
