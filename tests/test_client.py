"""The dhtkit command's clients of the HTTP API, against real nodes on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web import resource, server

from dhtkit import cli
from dhtkit.cli import calls
from dhtkit.client import ApiClient, ApiError
from dhtkit.datadir import TOKEN_FILE, write_api_url
from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.service import KademliaService
from dhtkit.web import make_site

ROOT = Path(__file__).resolve().parent.parent


@attrs.define
class ApiNode:
    service: KademliaService
    port: Any
    url: str
    data_dir: Path


async def start_nodes(tmp_path: Path, count: int, token: str | None = None) -> list[ApiNode]:
    nodes: list[ApiNode] = []
    for n in range(count):
        data_dir = tmp_path / "node{}".format(n)
        bootstrap = [nodes[0].service.address] if nodes else []
        svc = KademliaService(0, "127.0.0.1", data_dir, bootstrap, rpc_options={"timeout": 0.5})
        svc.startService()
        await svc.when_joined()
        port = reactor.listenTCP(0, make_site(svc, token=token), interface="127.0.0.1")
        url = "http://127.0.0.1:{}".format(port.getHost().port)
        write_api_url(data_dir, url)
        if token is not None:
            (data_dir / TOKEN_FILE).write_text(token + "\n")
        nodes.append(ApiNode(svc, port, url, data_dir))
    return nodes


async def stop_nodes(nodes: list[ApiNode]) -> None:
    for node in nodes:
        await node.port.stopListening()
        await node.service.stopService()


@pytest_twisted.async_yield_fixture
async def nodes(tmp_path: Path) -> AsyncIterator[list[ApiNode]]:
    started = await start_nodes(tmp_path, 3)
    yield started
    await stop_nodes(started)


async def run(*argv: str) -> int:
    status: int = await cli.execute(list(argv), reactor)
    return status


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest_twisted.ensureDeferred
async def test_put_then_get_through_two_nodes_apis(
    nodes: list[ApiNode], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("--data-dir", str(nodes[0].data_dir), "put", "greeting", "hello") == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["key {}".format(key_for("greeting").hex()), "replicas 3"]
    assert err == ""
    # The options may also follow the subcommand.
    assert await run("get", "greeting", "--data-dir", str(nodes[2].data_dir)) == 0
    assert capsys.readouterr() == ("hello", "")
    assert await run("--api", nodes[1].url, "get", key_for("greeting").hex()) == 0
    assert capsys.readouterr().out == "hello"


@pytest_twisted.ensureDeferred
async def test_names_are_sent_as_one_path_segment(
    nodes: list[ApiNode], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    name = "a/b%20c?d#é"
    assert await run("--api", nodes[0].url, "put", name, "odd name", "--json") == 0
    reply = json.loads(capsysbinary.readouterr().out)
    assert reply == {"key": key_for(name).hex(), "replicas": 3}
    assert await nodes[1].service.node.get(key_for(name)) == b"odd name"


@pytest_twisted.ensureDeferred
async def test_get_of_a_missing_name_exits_1_with_one_line(
    nodes: list[ApiNode], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("--api", nodes[0].url, "get", "nobody-put-this") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "dhtkit: no value is stored under nobody-put-this\n"


@pytest_twisted.ensureDeferred
async def test_arguments_the_node_refuses_exit_2_like_any_bad_argument(
    nodes: list[ApiNode], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    api = ("--api", nodes[0].url)
    limit = nodes[0].service.node.max_value_size
    for call, said in [
        (("put", "big", "x" * (limit + 1)), b"larger than"),  # 413
        (("put", "", "v"), b"the key is empty"),  # 400
        (("get-signed", "ab" * 32, "s" * 65), b"the salt is 65 bytes"),  # 400
    ]:
        assert await run(*api, *call) == 2, call
        out, err = capsysbinary.readouterr()
        assert out == b"" and err.startswith(b"dhtkit: error: ") and said in err
        assert len(err.splitlines()) == 1
    # A refusal that is not the arguments' fault stays 1: a CAS on a missing value.
    assert await run(*api, "put-signed", "fresh", "v", "--cas", "7") == 1


@pytest_twisted.ensureDeferred
async def test_put_reads_binary_value_from_stdin(
    nodes: list[ApiNode],
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = bytes(range(256))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(value)))
    assert await run("--api", nodes[0].url, "put", "bytes", "-") == 0
    capsysbinary.readouterr()
    assert await run("--api", nodes[1].url, "get", "bytes") == 0
    assert capsysbinary.readouterr().out == value


@pytest_twisted.ensureDeferred
async def test_put_signed_get_signed_and_a_cas_conflict(
    nodes: list[ApiNode], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    api = ("--api", nodes[0].url)
    assert await run(*api, "put-signed", "profile", "v1", "--json") == 0
    first = json.loads(capsysbinary.readouterr().out)
    public_key = Identity.from_file(nodes[0].data_dir / "identity.key").public_key.hex()
    assert (first["public_key"], first["salt"], first["seq"]) == (public_key, "profile", 1)
    assert await run(*api, "put-signed", "profile", "v2", "--cas", "1") == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert "seq 2" in lines and "public_key {}".format(public_key) in lines
    assert await run(*api, "put-signed", "profile", "v3", "--cas", "1") == 1
    out, err = capsysbinary.readouterr()
    assert out == b"" and err.startswith(b"dhtkit: error: ") and len(err.splitlines()) == 1
    assert await run("--api", nodes[2].url, "get-signed", public_key.upper(), "profile") == 0
    assert capsysbinary.readouterr().out == b"v2"
    assert await run("--api", nodes[2].url, "get-signed", public_key, "other") == 1
    assert b"no value is signed by" in capsysbinary.readouterr().err


@pytest_twisted.ensureDeferred
async def test_status_in_lines_and_in_json(
    nodes: list[ApiNode], capsys: pytest.CaptureFixture[str]
) -> None:
    svc = nodes[1].service
    assert await run("--api", nodes[1].url, "status") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "node_id {}".format(svc.identity.node_id.hex()) in lines
    assert "public_key {}".format(svc.identity.public_key.hex()) in lines
    assert "protocol kademlia" in lines and "contacts 2" in lines
    assert "address 127.0.0.1:{}".format(svc.address[1]) in lines
    assert any(line.startswith("uptime 00:00:") for line in lines)
    assert await run("--api", nodes[1].url, "status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["node_id"] == svc.identity.node_id.hex() and "version" in status


@pytest_twisted.ensureDeferred
async def test_contacts_are_listed_one_per_line(
    nodes: list[ApiNode], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("--api", nodes[0].url, "contacts") == 0
    listed = sorted(line.split() for line in capsys.readouterr().out.splitlines())
    expected = sorted(
        [n.service.identity.node_id.hex(), "127.0.0.1:{}".format(n.service.address[1])]
        for n in nodes[1:]
    )
    assert listed == expected
    assert await run("--api", nodes[0].url, "contacts", "--json") == 0
    contacts = json.loads(capsys.readouterr().out)["contacts"]
    assert {c["public_key"] for c in contacts} == {
        n.service.identity.public_key.hex() for n in nodes[1:]
    }


@pytest_twisted.ensureDeferred
async def test_the_token_in_the_data_dir_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    guarded = await start_nodes(tmp_path, 2, token="s3cret")
    try:
        assert await run("--data-dir", str(guarded[0].data_dir), "put", "t", "v") == 0
        assert "replicas 2" in capsys.readouterr().out
        (guarded[0].data_dir / TOKEN_FILE).write_text("wrong\n")
        assert await run("--data-dir", str(guarded[0].data_dir), "status") == 1
        err = capsys.readouterr().err
        assert err.startswith("dhtkit: error: the token is wrong") and TOKEN_FILE in err
        # Named by --api alone, the node's token is not at hand: a clear 401.
        assert await run("--api", guarded[1].url, "status") == 1
        err = capsys.readouterr().err
        assert "needs a token" in err and "--data-dir" in err and len(err.splitlines()) == 1
    finally:
        await stop_nodes(guarded)


def test_the_token_is_not_sent_to_another_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DHTKIT_DATA_DIR", str(tmp_path))
    write_api_url(tmp_path, "http://127.0.0.1:4001")
    (tmp_path / TOKEN_FILE).write_text("secret\n")
    parser = cli.build_parser("status")
    for argv, sent in [
        (["status"], True),
        (["--api", "http://127.0.0.1:4001/", "status"], True),
        (["--api", "http://elsewhere:4001", "status"], False),
        (["--api", "http://elsewhere:4001", "--data-dir", str(tmp_path), "status"], True),
    ]:
        client, token_file = calls.client_for(parser.parse_args(argv), reactor)
        assert (token_file == tmp_path / TOKEN_FILE) is sent, argv
        assert (client._token == "secret") is sent


@pytest_twisted.ensureDeferred
async def test_a_node_that_started_a_network_of_its_own_stores_on_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alone = await start_nodes(tmp_path, 1)
    try:
        assert await run("--api", alone[0].url, "--wait", "0", "put", "x", "y") == 0
        assert capsys.readouterr().out.splitlines()[1] == "replicas 1"
        assert await run("--api", alone[0].url, "--wait", "0", "get", "x") == 0
        assert capsys.readouterr().out == "y"
    finally:
        await stop_nodes(alone)


@pytest_twisted.ensureDeferred
async def test_a_node_not_joined_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nobody:
        nobody.bind(("127.0.0.1", 0))  # a bootstrap address where no node answers
        svc = KademliaService(0, "127.0.0.1", tmp_path, [nobody.getsockname()])
        svc.startService()
        port = reactor.listenTCP(0, make_site(svc), interface="127.0.0.1")
        try:
            url = "http://127.0.0.1:{}".format(port.getHost().port)
            assert await run("--api", url, "--wait", "0", "put", "x", "y") == 1
            err = capsys.readouterr().err
            assert err.startswith("dhtkit: error: the node has no contacts yet")
            assert "check its bootstrap addresses" in err
        finally:
            await port.stopListening()
            await svc.stopService()


@pytest_twisted.ensureDeferred
async def test_connection_refused_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://127.0.0.1:{}".format(closed_port())
    assert await run("--api", url, "--wait", "0", "get", "x") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "dhtkit: error: cannot reach the node's API at {}: connection refused — "
        "is the daemon running?\n".format(url)
    )


@pytest_twisted.ensureDeferred
async def test_without_api_url_the_user_is_told_how_to_start_a_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("--data-dir", str(tmp_path), "--wait", "0", "status") == 1
    err = capsys.readouterr().err
    assert err.startswith("dhtkit: error: no running node found in {}".format(tmp_path))
    assert "twistd -n dhtkit" in err and "--api URL" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("url", ["127.0.0.1:4001", "ftp://host/", "http://:80", "http://h:99999"])
@pytest_twisted.ensureDeferred
async def test_a_malformed_api_url_is_a_usage_error(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("--api", url, "status") == 2
    err = capsys.readouterr().err
    assert err.startswith("dhtkit: error: argument --api") and len(err.splitlines()) == 1


@pytest_twisted.ensureDeferred
async def test_a_bad_public_key_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("--api", "http://127.0.0.1:1", "get-signed", "abc", "salt") == 2
    assert "64 hex digits" in capsys.readouterr().err


class Fixed(resource.Resource):
    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, code: int, body: bytes, hang: bool = False) -> None:
        super().__init__()
        self.code, self.body, self.hang = code, body, hang

    def render(self, request: Any) -> Any:
        if self.hang:
            return server.NOT_DONE_YET
        request.setResponseCode(self.code)
        return self.body


async def serve(answer: Fixed) -> tuple[Any, str]:
    port = reactor.listenTCP(0, server.Site(answer), interface="127.0.0.1")
    return port, "http://127.0.0.1:{}".format(port.getHost().port)


@pytest.mark.parametrize(
    ("code", "body", "says"),
    [
        (200, b"<html>hello</html>", "answered without a JSON object (HTTP status 200)"),
        (502, b"<html>bad gateway</html>", "HTTP status 502"),
        (404, b"Not Found", "without a dhtkit error (HTTP status 404): is it a dhtkit node?"),
        (200, b'{"contacts": 3}', "answered without a JSON object"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_reply_that_is_not_the_apis_is_one_line(
    code: int, body: bytes, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port, url = await serve(Fixed(code, body))
    try:
        command = "contacts" if b"contacts" in body else "status"
        assert await run("--api", url, command) == 1
        err = capsys.readouterr().err
        assert err.startswith("dhtkit: error: ") and len(err.splitlines()) == 1
        assert says in err or (command == "contacts" and "a contact list" in err)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_node_that_never_answers_times_out() -> None:
    port, url = await serve(Fixed(200, b"", hang=True))
    try:
        with pytest.raises(ApiError, match=r"did not answer within 0\.2 s") as caught:
            await ApiClient(url, reactor=reactor, timeout=0.2).status()
        assert caught.value.status is None
    finally:
        await port.stopListening()


def test_main_runs_a_client_command_on_the_reactor_without_a_traceback() -> None:
    argv = ["--api", "http://127.0.0.1:{}".format(closed_port()), "--wait", "0", "status"]
    done = subprocess.run(
        [sys.executable, "-m", "dhtkit.cli", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("dhtkit: error: cannot reach the node's API")
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_ctrl_c_while_waiting_for_the_node_is_one_line() -> None:
    with socket.socket() as listener:
        # Accepts connections (the kernel does) but never answers them.
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(30)
        argv = ["--api", "http://127.0.0.1:{}".format(listener.getsockname()[1]), "status"]
        # As from an interactive shell, Ctrl-C reaches the command: a child
        # would inherit an ignored SIGINT (as a shell's background jobs do),
        # and this test process may be ignoring it by now.
        ours = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            command = subprocess.Popen(
                [sys.executable, "-m", "dhtkit.cli", *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )
        finally:
            signal.signal(signal.SIGINT, ours)
        # The command is waiting in its reactor once its request has come.
        # Any other connection (a port number an earlier test's client
        # still dials) is not the command's: it is closed and waited past.
        while True:
            connection, _ = listener.accept()
            connection.settimeout(30)
            try:
                request = connection.recv(64)
            except OSError:
                request = b""
            if request.startswith(b"GET /v1/status"):
                break
            connection.close()
        with connection:
            command.send_signal(signal.SIGINT)
            out, err = command.communicate(timeout=30)
    assert command.returncode == 1
    assert out == "" and err == "dhtkit: error: interrupted\n"
