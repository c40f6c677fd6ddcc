"""``dhtkit listen`` and ``listen-signed`` against nodes on 127.0.0.1 and broken streams."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from tests.test_client import ApiNode, Fixed, run, serve, start_nodes, stop_nodes


@pytest_twisted.async_yield_fixture
async def nodes(tmp_path: Path) -> AsyncIterator[list[ApiNode]]:
    started = await start_nodes(tmp_path, 2)
    yield started
    await stop_nodes(started)


async def until(condition: object) -> None:
    for _ in range(200):
        if callable(condition) and condition():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("never happened")


@pytest_twisted.ensureDeferred
async def test_listen_prints_the_held_value_then_each_new_one(
    nodes: list[ApiNode], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    key = key_for("feed")
    await nodes[0].service.node.put(key, b"one")
    listening = defer.ensureDeferred(run("--api", nodes[1].url, "listen", "feed", "--count", "2"))
    hub = nodes[1].service.node.listenings
    await until(lambda: hub.watches(key) and hub._listenings[key][0].last is not None)
    await nodes[0].service.node.put(key, b"two")
    assert await listening == 0
    out, err = capsysbinary.readouterr()
    assert out == b"one\ntwo\n"
    assert err == b"listening to feed; Ctrl-C to stop\n"
    await until(lambda: not hub.watches(key))  # the stream's end ended the listening


@pytest_twisted.ensureDeferred
async def test_listen_signed_prints_json_lines(
    nodes: list[ApiNode], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    owner = Identity(b"\x06" * 32)
    await nodes[0].service.node.put_signed(b"\xffbinary", b"news", owner, seq=4)
    argv = ("--api", nodes[1].url, "listen-signed", owner.public_key.hex(), "news")
    assert await run(*argv, "--json", "--count", "1") == 0
    line = json.loads(capsysbinary.readouterr().out)
    assert (line["kind"], line["seq"]) == ("signed", 4)
    assert base64.b64decode(line["value"]) == b"\xffbinary"


@pytest.mark.parametrize(
    ("code", "body", "says"),
    [
        (200, b"event: value\ndata: not json\n\n", "sent a broken event stream"),
        (200, b'event: value\ndata: {"value": "@@"}\n\n', "value is not base64"),
        (
            200,
            b'event: value\ndata: {"value": "b25l"}\n\n',
            "ended the stream; versions printed: 1",
        ),
        (429, b'{"error": "8 streams are open from your address"}', "8 streams are open"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_stream_that_fails_is_one_line_and_status_1(
    code: int, body: bytes, says: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    port, url = await serve(Fixed(code, body))
    try:
        assert await run("--api", url, "listen", "feed") == 1
        out, err = capsysbinary.readouterr()
        last = err.decode().splitlines()[-1]
        assert last.startswith("dhtkit: error: ") and says in last, err
        assert b"Traceback" not in err
        assert out == (b"one\n" if b"b25l" in body else b"")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("--api", "http://127.0.0.1:1", "listen-signed", "abc", "salt") == 2
    assert "64 hex digits" in capsys.readouterr().err
    assert await run("--api", "http://127.0.0.1:1", "listen", "feed", "--count", "0") == 2


@pytest_twisted.ensureDeferred
async def test_listen_reports_a_delete_on_stderr(
    nodes: list[ApiNode], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    key = key_for("withdrawn")
    await nodes[0].service.node.put(key, b"one")
    listening = defer.ensureDeferred(
        run("--api", nodes[1].url, "listen", "withdrawn", "--count", "2")
    )
    hub = nodes[1].service.node.listenings
    await until(lambda: hub.watches(key) and hub._listenings[key][0].last is not None)
    await nodes[0].service.node.delete(key)
    assert await listening == 0
    out, err = capsysbinary.readouterr()
    assert out == b"one\n"  # standard output carries values only
    assert err.splitlines()[-1].startswith(b"deleted (seq ")
