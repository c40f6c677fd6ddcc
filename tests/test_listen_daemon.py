"""Listening through real ``twistd -n dhtkit`` daemons: an event stream read by curl
and by a raw HTTP client, and ``dhtkit listen`` as a process of its own."""

from __future__ import annotations

import base64
import json
import os
import selectors
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from dhtkit.datadir import API_FILE
from dhtkit.sse import Event, EventParser
from tests.daemons import DHTKIT, Daemon, child_env, dhtkit_command, free_udp_port_with_tcp_after
from tests.test_daemon import node_daemon, wait_for_contacts

TIMEOUT = 30.0


class Reader:
    """Reads what a pipe or socket brings, without blocking, until a condition holds."""

    def __init__(self, source: IO[bytes] | socket.socket) -> None:
        self.source = source
        self.data = b""
        self.closed = False

    def until(self, done: Callable[[bytes], bool], timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.source, selectors.EVENT_READ)
            while not done(self.data):
                left = deadline - time.monotonic()
                assert left > 0 and not self.closed, "only got {!r}".format(self.data)
                if selector.select(left):
                    chunk = (
                        self.source.recv(65536)
                        if isinstance(self.source, socket.socket)
                        else os.read(self.source.fileno(), 65536)
                    )
                    self.closed = not chunk
                    self.data += chunk
        return self.data


def events(stream: bytes) -> list[Event]:
    return [e for e in EventParser().feed(stream) if e.type == "value"]


def values(stream: bytes) -> list[bytes]:
    return [base64.b64decode(json.loads(e.data)["value"]) for e in events(stream)]


def has(count: int) -> Callable[[bytes], bool]:
    return lambda data: len(events(data)) >= count


def body(response: bytes) -> bytes:
    """What follows the head of an HTTP response (nothing while the head is not complete)."""
    return response.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in response else b""


def has_body(count: int) -> Callable[[bytes], bool]:
    return lambda response: has(count)(body(response))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    port_a = free_udp_port_with_tcp_after()
    port_b = free_udp_port_with_tcp_after()
    while abs(port_b - port_a) <= 1:
        port_b = free_udp_port_with_tcp_after()
    a = node_daemon(tmp_path, "a", port_a)
    b = node_daemon(tmp_path, "b", port_b, port_a)
    started = []
    try:
        for daemon in (a, b):
            started.append(daemon)
            daemon.start()
            daemon.wait_for(daemon.workdir / "data" / API_FILE)
        for daemon in (a, b):
            wait_for_contacts(daemon, 1)
        yield a, b
    finally:
        for daemon in started:
            assert daemon.stop() == 0, daemon.output()
            log = daemon.output()
            assert "Traceback" not in log and "Unhandled" not in log, log


def data_of(daemon: Daemon) -> str:
    return str(daemon.workdir / "data")


def api_port(daemon: Daemon) -> int:
    url = (daemon.workdir / "data" / API_FILE).read_text().strip()
    return int(url.rsplit(":", 1)[1])


def put(daemon: Daemon, *args: str) -> str:
    done = dhtkit_command("--data-dir", data_of(daemon), *args)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def raw_stream(daemon: Daemon, path: str) -> tuple[socket.socket, Reader]:
    # HTTP/1.0: the body is the stream itself, no chunks around it.
    conn = socket.create_connection(("127.0.0.1", api_port(daemon)), timeout=TIMEOUT)
    conn.sendall("GET {} HTTP/1.0\r\nHost: localhost\r\n\r\n".format(path).encode())
    return conn, Reader(conn)


def test_a_raw_http_client_reads_each_version_as_an_event(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    put(a, "put", "feed", "one")
    conn, reader = raw_stream(b, "/v1/listen/feed")
    with conn:
        head = reader.until(lambda d: b"\r\n\r\n" in d).split(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
        assert b"content-type: text/event-stream" in head.lower()
        reader.until(has_body(1))
        put(a, "put", "feed", "two")
        put(a, "put", "feed", "three")
        reader.until(has_body(3))
        assert values(body(reader.data)) == [b"one", b"two", b"three"]

    # A signed value, by its public key and salt; a bad key is a 400 at once.
    public_key = json.loads(put(a, "put-signed", "news", "first", "--json"))["public_key"]
    conn, reader = raw_stream(b, "/v1/listen/signed/{}/news".format(public_key))
    with conn:
        reader.until(has_body(1))
        put(a, "put-signed", "news", "second")
        reader.until(has_body(2))
        found = [json.loads(e.data) for e in events(body(reader.data))]
        assert [(v["kind"], v["seq"], v["public_key"]) for v in found] == [
            ("signed", 1, public_key),
            ("signed", 2, public_key),
        ]
    conn, reader = raw_stream(b, "/v1/listen/signed/nothex/news")
    with conn:
        reader.until(lambda d: reader.closed or b"}" in d)
        assert reader.data.startswith(b"HTTP/1.0 400") or reader.data.startswith(b"HTTP/1.1 400")

    # Both streams ended with their clients: the node counted them closed.
    deadline = time.monotonic() + TIMEOUT
    while b"dhtkit_http_streams_closed_total 2" not in metrics(b):
        assert time.monotonic() < deadline, metrics(b)
        time.sleep(0.1)


def metrics(daemon: Daemon) -> bytes:
    conn, reader = raw_stream(daemon, "/metrics")
    with conn:
        return reader.until(lambda d: reader.closed, TIMEOUT)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reads_the_event_stream(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    put(a, "put", "feed", "one")
    url = "http://127.0.0.1:{}/v1/listen/feed".format(api_port(b))
    curl = subprocess.Popen(["curl", "-sSN", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert curl.stdout is not None
        reader = Reader(curl.stdout)
        reader.until(has(1))
        put(a, "put", "feed", "two")
        reader.until(has(2))
        assert values(reader.data) == [b"one", b"two"]
        assert b": keep-alive" in reader.data or b": listening to" in reader.data
    finally:
        curl.terminate()
        curl.wait(TIMEOUT)


def test_dhtkit_listen_prints_each_version_as_it_arrives(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    put(a, "put", "feed", "one")
    listen = subprocess.Popen(
        [*DHTKIT, "--data-dir", data_of(b), "listen", "feed", "--count", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    try:
        assert listen.stdout is not None
        out = Reader(listen.stdout)
        out.until(lambda d: d.count(b"\n") >= 1)
        put(a, "put", "feed", "two")
        out.until(lambda d: d.count(b"\n") >= 2)
        put(a, "put", "feed", "three")
        assert listen.wait(TIMEOUT) == 0
        out.until(lambda d: out.closed or d.count(b"\n") >= 3)
        assert out.data == b"one\ntwo\nthree\n"
        assert listen.stderr is not None
        err = listen.stderr.read()
        assert b"listening to feed" in err and b"Traceback" not in err
    finally:
        if listen.poll() is None:
            listen.kill()
            listen.wait()

    # The signed form, one JSON line a version.
    public_key = json.loads(put(a, "put-signed", "news", "first", "--json"))["public_key"]
    done = dhtkit_command(
        "--data-dir", data_of(b), "listen-signed", public_key, "news", "--json", "--count", "1"
    )
    assert done.returncode == 0, done.stderr.decode()
    line = json.loads(done.stdout)
    assert (line["seq"], base64.b64decode(line["value"])) == (1, b"first")
