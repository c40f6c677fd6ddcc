"""The HTTP API: every endpoint and every error of the contract, over real nodes and sockets."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
import treq
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from dhtkit import __version__
from dhtkit.chord import LookupFailed
from dhtkit.contact import Address
from dhtkit.keyspace import key_for
from dhtkit.rpc import RPCTimeout
from dhtkit.service import ChordService, KademliaService, OverlayService
from dhtkit.values import signed_key
from dhtkit.web import MAX_BODY, ApiResource, format_address, make_api_factory, make_site
from dhtkit.web.guard import HttpLimits

FAST_RPC = {"timeout": 0.5}


@attrs.frozen
class Answer:
    code: int
    headers: dict[str, list[str]]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == ["application/json"]
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@attrs.define
class Api:
    """A client of one node's API; ``path`` is sent as written (percent escapes included)."""

    port: int
    pool: HTTPConnectionPool
    token: str | None = None

    async def call(
        self,
        method: str,
        path: str,
        body: bytes | IBodyProducer | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if self.token is not None:
            sent.setdefault("Authorization", "Bearer " + self.token)
        url = "http://127.0.0.1:{}{}".format(self.port, path)
        response = await treq.request(method, url, data=body, headers=sent, pool=self.pool)
        content = await treq.content(response)
        raw = response.headers.getAllRawHeaders()
        got = {k.decode().lower(): [v.decode() for v in vs] for k, vs in raw}
        return Answer(response.code, got, content)


@attrs.define
class Cluster:
    """Nodes on 127.0.0.1, each with its API on a TCP port; all stopped by :meth:`close`."""

    tmp_path: Path
    services: list[OverlayService] = attrs.Factory(list)
    ports: list[Any] = attrs.Factory(list)
    pool: HTTPConnectionPool = attrs.Factory(lambda: HTTPConnectionPool(reactor, persistent=False))

    async def add(
        self,
        cls: type[OverlayService] = KademliaService,
        token: str | None = None,
        limits: HttpLimits | None = None,
        bootstrap: list[Address] | None = None,
        **options: Any,
    ) -> tuple[OverlayService, Api]:
        """A node joined through the first one (or through ``bootstrap``, not waited for)."""
        n = len(self.services)
        given = bootstrap is not None
        if bootstrap is None:
            bootstrap = [self.services[0].address] if self.services else []
        svc = cls(
            0,
            "127.0.0.1",
            self.tmp_path / "node{}".format(n),
            bootstrap,
            rpc_options=FAST_RPC,
            rng=random.Random(n),
            **options,
        )
        svc.startService()
        self.services.append(svc)
        if not given:
            await svc.when_joined()
        # With limits, the API has its connection caps too, as the daemon's has.
        site = (
            make_site(svc, token=token)
            if limits is None
            else make_api_factory(svc, token=token, limits=limits)
        )
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.ports.append(port)
        return svc, Api(port.getHost().port, self.pool, token)

    async def close(self) -> None:
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])
        await defer.gatherResults([s.stopService() for s in self.services if s.running])
        await self.pool.closeCachedConnections()


@pytest_twisted.async_yield_fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.close()


async def three(cluster: Cluster) -> list[Api]:
    return [(await cluster.add())[1] for _ in range(3)]


def metric_families(answer: Answer) -> dict[str, Metric]:
    """The families of a ``/metrics`` answer, read by the Prometheus library's parser."""
    assert answer.code == 200, answer.body
    text = answer.body.decode("utf-8")
    return {f.name: f for f in text_string_to_metric_families(text)}


def error_of(answer: Answer, code: int) -> str:
    assert answer.code == code, answer.body
    message = answer.json()["error"]
    assert isinstance(message, str) and message
    return message


# -- status, contacts, metrics ------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_status_reports_the_node_and_the_version(cluster: Cluster) -> None:
    apis = await three(cluster)
    answer = await apis[1].call("GET", "/v1/status")
    assert answer.code == 200
    status = answer.json()
    svc = cluster.services[1]
    assert status["node_id"] == svc.identity.node_id.hex()
    assert status["public_key"] == svc.identity.public_key.hex()
    assert status["protocol"] == "kademlia"
    assert status["address"] == "127.0.0.1:{}".format(svc.address[1])
    assert status["contacts"] == 2
    assert status["values"] == 0
    assert status["uptime_s"] >= 0
    assert status["version"] == __version__


@pytest_twisted.ensureDeferred
async def test_contacts_lists_the_routing_table(cluster: Cluster) -> None:
    apis = await three(cluster)
    answer = await apis[0].call("GET", "/v1/contacts")
    assert answer.code == 200
    listed = answer.json()["contacts"]
    expected = {
        s.identity.node_id.hex(): (s.identity.public_key.hex(), "127.0.0.1:{}".format(s.address[1]))
        for s in cluster.services[1:]
    }
    assert {c["node_id"]: (c["public_key"], c["address"]) for c in listed} == expected


def test_addresses_are_written_host_colon_port_with_ipv6_in_brackets() -> None:
    assert format_address("127.0.0.1", 4000) == "127.0.0.1:4000"
    assert format_address("::1", 4000) == "[::1]:4000"


@pytest_twisted.ensureDeferred
async def test_metrics_are_prometheus_text(cluster: Cluster) -> None:
    apis = await three(cluster)
    answer = await apis[0].call("GET", "/metrics")
    assert answer.code == 200
    assert answer.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    families = metric_families(answer)
    assert families["dhtkit_routing_contacts"].samples[0].value == 2
    assert families["dhtkit_lookup_hops"].type == "histogram"


@pytest_twisted.ensureDeferred
async def test_head_answers_the_headers_of_get_without_the_body(cluster: Cluster) -> None:
    apis = await three(cluster)
    get = await apis[0].call("GET", "/v1/status")
    head = await apis[0].call("HEAD", "/v1/status")
    assert head.code == 200
    assert head.body == b""
    assert head.header("content-type") == "application/json"
    assert get.body


# -- plain values ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_value_put_on_one_node_is_read_on_another(cluster: Cluster) -> None:
    apis = await three(cluster)
    put = await apis[0].call("PUT", "/v1/values/greeting%2Fen", b"hello\x00world")
    assert put.code == 200
    assert put.json() == {"key": key_for("greeting/en").hex(), "replicas": 3}
    got = await apis[2].call("GET", "/v1/values/greeting%2Fen")
    assert got.code == 200
    assert got.body == b"hello\x00world"
    assert got.header("content-type") == "application/octet-stream"
    # The same key, named by its id in either case.
    by_id = await apis[1].call("GET", "/v1/values/" + key_for("greeting/en").hex().upper())
    assert by_id.body == b"hello\x00world"


@pytest_twisted.ensureDeferred
async def test_forty_hex_digits_are_the_id_itself_and_anything_else_a_name(
    cluster: Cluster,
) -> None:
    apis = await three(cluster)
    hex_id = "ab" * 20
    put = await apis[0].call("PUT", "/v1/values/" + hex_id, b"by id")
    assert put.json()["key"] == hex_id
    name = "ab" * 19 + "g"  # 40 characters, not all hex: a name
    put = await apis[0].call("PUT", "/v1/values/" + name, b"by name")
    assert put.json()["key"] == key_for(name).hex()
    unicode = await apis[0].call("PUT", "/v1/values/caf%C3%A9", b"coffee")
    assert unicode.json()["key"] == key_for("café").hex()


@pytest_twisted.ensureDeferred
async def test_an_empty_body_is_a_value(cluster: Cluster) -> None:
    apis = await three(cluster)
    assert (await apis[0].call("PUT", "/v1/values/nothing", b"")).code == 200
    got = await apis[1].call("GET", "/v1/values/nothing")
    assert (got.code, got.body) == (200, b"")


@pytest_twisted.ensureDeferred
async def test_a_missing_value_is_404_naming_the_key(cluster: Cluster) -> None:
    apis = await three(cluster)
    message = error_of(await apis[0].call("GET", "/v1/values/never-stored"), 404)
    assert message == "no value is stored under never-stored"


@pytest_twisted.ensureDeferred
async def test_refuses_an_empty_key_and_a_key_that_is_not_utf8(cluster: Cluster) -> None:
    apis = await three(cluster)
    assert "empty" in error_of(await apis[0].call("PUT", "/v1/values/", b"x"), 400)
    assert "empty" in error_of(await apis[0].call("GET", "/v1/values/"), 400)
    assert "UTF-8" in error_of(await apis[0].call("PUT", "/v1/values/%FF%FE", b"x"), 400)
    assert "UTF-8" in error_of(await apis[0].call("GET", "/v1/values/a%C3"), 400)


@implementer(IBodyProducer)
class Chunked:
    """A body of unknown length: sent chunked, without Content-Length."""

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes) -> None:
        self.data = data

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@pytest_twisted.ensureDeferred
async def test_refuses_a_value_larger_than_the_node_accepts(cluster: Cluster) -> None:
    apis = await three(cluster)
    limit = cluster.services[0].node.max_value_size
    assert (await apis[0].call("PUT", "/v1/values/edge", b"x" * limit)).code == 200
    message = error_of(await apis[0].call("PUT", "/v1/values/big", b"x" * (limit + 1)), 413)
    assert str(limit) in message
    # Beyond what the API keeps in memory, and without a declared length.
    assert (await apis[0].call("PUT", "/v1/values/huge", b"x" * (MAX_BODY * 2))).code == 413
    assert (
        await apis[0].call("PUT", "/v1/values/chunked", Chunked(b"y" * (limit + 1)))
    ).code == 413
    assert (await apis[0].call("PUT", "/v1/values/fits", Chunked(b"y" * 10))).code == 200
    assert (await apis[1].call("GET", "/v1/values/fits")).body == b"y" * 10
    assert (await apis[1].call("GET", "/v1/values/big")).code == 404


# -- signed values ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_signed_values_get_the_next_seq_and_are_read_by_public_key(
    cluster: Cluster,
) -> None:
    apis = await three(cluster)
    owner = cluster.services[0].identity
    first = await apis[0].call("PUT", "/v1/signed/profile", b"v1")
    assert first.code == 200
    assert first.json() == {
        "key": signed_key(owner.public_key, b"profile").hex(),
        "public_key": owner.public_key.hex(),
        "salt": "profile",
        "seq": 1,
        "replicas": 3,
    }
    second = await apis[0].call("PUT", "/v1/signed/profile", b"v2")
    assert second.json()["seq"] == 2
    got = await apis[2].call("GET", "/v1/signed/{}/profile".format(owner.public_key.hex()))
    assert (got.code, got.body, got.header("dhtkit-seq")) == (200, b"v2", "2")
    assert got.header("content-type") == "application/octet-stream"


@pytest_twisted.ensureDeferred
async def test_the_empty_salt_is_a_salt_too(cluster: Cluster) -> None:
    apis = await three(cluster)
    owner = cluster.services[0].identity
    put = await apis[0].call("PUT", "/v1/signed/", b"unsalted")
    assert put.json()["salt"] == ""
    assert put.json()["key"] == signed_key(owner.public_key, b"").hex()
    got = await apis[1].call("GET", "/v1/signed/{}/".format(owner.public_key.hex().upper()))
    assert (got.code, got.body, got.header("dhtkit-seq")) == (200, b"unsalted", "1")


@pytest_twisted.ensureDeferred
async def test_explicit_seq_and_compare_and_swap(cluster: Cluster) -> None:
    apis = await three(cluster)
    assert (await apis[0].call("PUT", "/v1/signed/s?seq=10", b"ten")).json()["seq"] == 10
    swapped = await apis[0].call("PUT", "/v1/signed/s?cas=10", b"eleven")
    assert swapped.json()["seq"] == 11
    both = await apis[0].call("PUT", "/v1/signed/s?cas=11&seq=20", b"twenty")
    assert both.json()["seq"] == 20
    assert "compare-and-swap" in error_of(
        await apis[0].call("PUT", "/v1/signed/s?cas=11", b"late"), 409
    )
    error_of(await apis[0].call("PUT", "/v1/signed/s?seq=5", b"stale"), 409)
    pk = cluster.services[0].identity.public_key.hex()
    got = await apis[1].call("GET", "/v1/signed/{}/s".format(pk))
    assert (got.body, got.header("dhtkit-seq")) == (b"twenty", "20")


@pytest_twisted.ensureDeferred
async def test_refuses_a_seq_or_cas_that_is_not_a_non_negative_integer(cluster: Cluster) -> None:
    apis = await three(cluster)
    for query in (
        "seq=-1",
        "seq=abc",
        "cas=1.5",
        "seq=",
        "cas=%201",
        "seq=1&seq=2",
        "seq=" + "9" * 20,
        "seq=" + "9" * 5000,
        "cas=" + "1" * 5000,
    ):
        message = error_of(await apis[0].call("PUT", "/v1/signed/q?" + query, b"v"), 400)
        assert "integer" in message


@pytest_twisted.ensureDeferred
async def test_refuses_a_salt_longer_than_64_bytes(cluster: Cluster) -> None:
    apis = await three(cluster)
    pk = cluster.services[0].identity.public_key.hex()
    fits = "%C3%A9" * 32  # "é" is two bytes in UTF-8: 64 bytes
    assert (await apis[0].call("PUT", "/v1/signed/" + fits, b"v")).code == 200
    assert (await apis[1].call("GET", "/v1/signed/{}/{}".format(pk, fits))).code == 200
    too_long = fits + "a"
    assert "64" in error_of(await apis[0].call("PUT", "/v1/signed/" + too_long, b"v"), 400)
    error_of(await apis[0].call("GET", "/v1/signed/{}/{}".format(pk, too_long)), 400)
    assert "UTF-8" in error_of(await apis[0].call("PUT", "/v1/signed/%FF", b"v"), 400)
    assert "UTF-8" in error_of(await apis[0].call("GET", "/v1/signed/{}/%FF".format(pk)), 400)


@pytest_twisted.ensureDeferred
async def test_refuses_a_public_key_that_is_not_64_hex_digits(cluster: Cluster) -> None:
    apis = await three(cluster)
    for bad in ("ab" * 31, "ab" * 33, "zz" * 32, "%FF" * 32):
        message = error_of(await apis[0].call("GET", "/v1/signed/{}/salt".format(bad)), 400)
        assert "64 hex digits" in message


@pytest_twisted.ensureDeferred
async def test_a_missing_signed_value_is_404(cluster: Cluster) -> None:
    apis = await three(cluster)
    pk = cluster.services[0].identity.public_key.hex()
    error_of(await apis[1].call("GET", "/v1/signed/{}/nothing".format(pk)), 404)


@pytest_twisted.ensureDeferred
async def test_a_signed_value_too_large_is_413(cluster: Cluster) -> None:
    apis = await three(cluster)
    limit = cluster.services[0].node.max_value_size
    error_of(await apis[0].call("PUT", "/v1/signed/big", b"x" * (limit + 1)), 413)


# -- auth, paths and methods --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_token_is_required_when_the_api_has_one(cluster: Cluster) -> None:
    _, api = await cluster.add(token="s3cret")
    assert (await api.call("GET", "/v1/status")).code == 200
    without = Api(api.port, api.pool)
    missing = await without.call("GET", "/v1/status")
    assert "token" in error_of(missing, 401)
    assert missing.header("www-authenticate") == "Bearer"
    for header in ("Bearer wrong", "Bearer s3cret-and-more", "Basic s3cret", "s3cret"):
        answer = await without.call("GET", "/v1/status", headers={"Authorization": header})
        error_of(answer, 401)
    # Even the shape of the API is not shown without the token.
    error_of(await without.call("GET", "/no/such/path"), 401)
    error_of(await without.call("PUT", "/v1/values/x", b"v"), 401)


@pytest_twisted.ensureDeferred
async def test_no_header_is_needed_when_the_api_has_no_token(cluster: Cluster) -> None:
    _, api = await cluster.add()
    assert (await api.call("GET", "/v1/status", headers={})).code == 200
    ignored = await api.call("GET", "/v1/status", headers={"Authorization": "Bearer whatever"})
    assert ignored.code == 200


@pytest_twisted.ensureDeferred
async def test_an_unknown_path_is_404(cluster: Cluster) -> None:
    _, api = await cluster.add()
    for path in ("/", "/v2/status", "/v1/status/more", "/v1/values/a/b", "/v1/signed/a/b/c"):
        assert path in error_of(await api.call("GET", path), 404)


@pytest_twisted.ensureDeferred
async def test_a_wrong_method_is_405_with_allow(cluster: Cluster) -> None:
    _, api = await cluster.add()
    pk = "ab" * 32
    cases = [
        ("POST", "/v1/status", "GET, HEAD"),
        ("POST", "/v1/values/x", "DELETE, GET, HEAD, PUT"),
        ("GET", "/v1/signed/salt", "DELETE, PUT"),
        ("PUT", "/v1/signed/{}/salt".format(pk), "GET, HEAD"),
        ("PUT", "/v1/contacts", "GET, HEAD"),
        ("POST", "/metrics", "GET, HEAD"),
    ]
    for method, path, allow in cases:
        answer = await api.call(method, path, b"")
        error_of(answer, 405)
        assert answer.header("allow") == allow


# -- the network failing ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_node_that_started_a_network_of_its_own_stores_and_reads_alone(
    cluster: Cluster,
) -> None:
    svc, api = await cluster.add()  # alone: no bootstrap, nobody joined it
    stored = await api.call("PUT", "/v1/values/x", b"v")
    assert stored.code == 200, stored.body
    assert stored.json()["replicas"] == 1
    got = await api.call("GET", "/v1/values/x")
    assert (got.code, got.body) == (200, b"v")
    signed = await api.call("PUT", "/v1/signed/s", b"w")
    assert (signed.code, signed.json()["replicas"], signed.json()["seq"]) == (200, 1, 1)
    pk = svc.identity.public_key.hex()
    got = await api.call("GET", "/v1/signed/{}/s".format(pk))
    assert (got.code, got.body) == (200, b"w")


@pytest_twisted.ensureDeferred
async def test_network_operations_on_a_node_not_joined_yet_are_503(cluster: Cluster) -> None:
    nobody = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    nobody.bind(("127.0.0.1", 0))  # a bootstrap address where no node answers
    try:
        svc, api = await cluster.add(bootstrap=[nobody.getsockname()])
        await _network_operations_are_503(svc, api, "the node has no contacts yet: ")
    finally:
        nobody.close()


async def _network_operations_are_503(svc: OverlayService, api: Api, hint: str) -> None:
    pk = svc.identity.public_key.hex()
    for method, path in [
        ("PUT", "/v1/values/x"),
        ("GET", "/v1/values/x"),
        ("PUT", "/v1/signed/s"),
        ("GET", "/v1/signed/{}/s".format(pk)),
    ]:
        message = error_of(await api.call(method, path, b"v"), 503)
        assert message.startswith(hint)
        assert "bootstrap addresses)" in message
    assert (await api.call("GET", "/v1/status")).json()["contacts"] == 0
    assert len(svc.node.store) == 0


@pytest_twisted.ensureDeferred
async def test_network_operations_on_a_node_that_lost_every_contact_are_503(
    cluster: Cluster,
) -> None:
    first, api = await cluster.add(ChordService, stabilize_every=0.05)
    second, _ = await cluster.add(ChordService, stabilize_every=0.05)
    for _ in range(600):  # the first node learns of the second from its stabilization
        if first.overlay.contacts():
            break
        await task.deferLater(reactor, 0.05, lambda: None)
    await second.leave()  # Chord tells its neighbours: the first node is alone again
    # A stabilization reply still in flight may bring the second node back
    # until its silence is noticed: wait for the first to stay alone a while.
    alone = 0
    for _ in range(600):
        alone = alone + 1 if not first.overlay.contacts() else 0
        if alone == 10:
            break
        await task.deferLater(reactor, 0.05, lambda: None)
    assert not first.overlay.contacts()
    await _network_operations_are_503(first, api, "the node has lost every contact: ")


@pytest_twisted.ensureDeferred
async def test_a_put_that_reaches_too_few_nodes_is_503(cluster: Cluster) -> None:
    await three(cluster)
    _, demanding = await cluster.add(node_options={"quorum": 10})
    message = error_of(await demanding.call("PUT", "/v1/values/x", b"v"), 503)
    assert "10 needed" in message


@pytest_twisted.ensureDeferred
async def test_lookup_and_rpc_failures_are_503(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    apis = await three(cluster)
    node = cluster.services[0].node
    monkeypatch.setattr(node, "get", lambda key: defer.fail(RPCTimeout("no answer")))
    assert "no answer" in error_of(await apis[0].call("GET", "/v1/values/x"), 503)
    monkeypatch.setattr(node, "get", lambda key: defer.fail(LookupFailed("ring broken")))
    assert "ring broken" in error_of(await apis[0].call("GET", "/v1/values/x"), 503)


@pytest_twisted.ensureDeferred
async def test_an_unexpected_failure_is_500_and_logged_without_a_traceback(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, logged_errors: Any
) -> None:
    apis = await three(cluster)
    node = cluster.services[0].node
    monkeypatch.setattr(node, "get", lambda key: defer.fail(ZeroDivisionError("secret detail")))
    answer = await apis[0].call("GET", "/v1/values/x")
    assert answer.json() == {"error": "internal error"}
    assert answer.code == 500
    logged = logged_errors.take()
    assert [e["log_failure"].type for e in logged] == [ZeroDivisionError]


@pytest_twisted.ensureDeferred
async def test_a_stopped_node_is_503(cluster: Cluster) -> None:
    svc, api = await cluster.add()
    await svc.stopService()
    assert "not running" in error_of(await api.call("GET", "/v1/status"), 503)


@pytest_twisted.ensureDeferred
async def test_does_not_answer_a_client_that_left(cluster: Cluster) -> None:
    await three(cluster)
    svc = cluster.services[0]
    pending: list[defer.Deferred[bytes | None]] = []

    def get(key: bytes) -> defer.Deferred[bytes | None]:
        pending.append(defer.Deferred())
        return pending[-1]

    svc.node.get = get  # type: ignore[method-assign]
    resource = ApiResource(svc)

    def request() -> DummyRequest:
        r = DummyRequest([b"v1", b"values", b"x"])
        r.method = b"GET"
        r.uri = r.path = b"/v1/values/x"
        assert resource.render(r) == NOT_DONE_YET
        return r

    left, stayed = request(), request()
    left.processingFailed(ConnectionError("the client hung up"))
    for d in pending:
        d.callback(b"too late")
    await task.deferLater(reactor, 0, lambda: None)
    assert (left.written, left.finished) == ([], 0)
    assert (stayed.written, stayed.finished) == ([b"too late"], 1)


# -- slow and greedy clients ----------------------------------------------------------------


class SlowClient(protocol.Protocol):
    """Sends the start of a request, never the rest; ``closed`` fires when the server hangs up."""

    def __init__(self) -> None:
        self.connected_once: defer.Deferred[None] = defer.Deferred()
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.received = b""

    def connectionMade(self) -> None:
        self.transport.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")  # type: ignore[union-attr]
        self.connected_once.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


async def open_slow(port: int, source: str, count: int) -> list[SlowClient]:
    """``count`` slow connections to ``port`` from the address ``source`` (in 127.0.0.0/8)."""
    clients = []
    for _ in range(count):
        client = SlowClient()
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
        await endpoints.connectProtocol(endpoint, client)
        clients.append(client)
    return clients


def within(d: Any, seconds: float) -> defer.Deferred[Any]:
    # Only so that a regression fails instead of hanging; nothing is timed.
    return defer.ensureDeferred(d).addTimeout(seconds, reactor)


@pytest_twisted.ensureDeferred
async def test_slow_connections_from_one_source_leave_the_api_to_other_clients(
    cluster: Cluster,
) -> None:
    limits = HttpLimits(request_timeout=60, max_per_source=8, max_connections=100)
    _, api = await cluster.add(limits=limits)
    slow = await open_slow(api.port, "127.0.0.2", 40)
    # The server keeps 8 of them: each newcomer beyond was refused, or made
    # the oldest go (once it had waited a second).
    refused: list[SlowClient] = []
    for _ in range(100):
        refused = [c for c in slow if c.closed.called]
        if len(refused) >= 32:
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    assert len(refused) == 32
    assert all(c.received == b"" for c in refused)
    # A client from another address is answered at once.
    answer = await within(api.call("GET", "/v1/status"), 30)
    assert answer.code == 200
    metrics = metric_families(await api.call("GET", "/metrics"))
    refused = {s.labels["reason"]: s.value for s in metrics["dhtkit_http_refused"].samples}
    evicted = metrics["dhtkit_http_evicted_waiting"].samples[0].value
    assert refused["per_source"] + evicted == 32
    # The 8 slow ones and this client's own (and the previous one's, if its
    # end has not been seen yet).
    assert metrics["dhtkit_http_connections"].samples[0].value in (9, 10)
    for client in slow:
        if client.transport is not None:
            client.transport.loseConnection()
    await within(defer.gatherResults([c.closed for c in slow]), 30)


@pytest_twisted.ensureDeferred
async def test_a_connection_that_never_completes_its_request_is_closed(cluster: Cluster) -> None:
    _, api = await cluster.add(limits=HttpLimits(request_timeout=0.3))
    [slow] = await open_slow(api.port, "127.0.0.1", 1)
    await within(slow.closed, 30)
    assert slow.received == b""
    metrics = metric_families(await api.call("GET", "/metrics"))
    assert metrics["dhtkit_http_request_timeouts"].samples[0].value == 1


@pytest_twisted.ensureDeferred
async def test_a_content_length_of_5000_digits_is_413(cluster: Cluster) -> None:
    _, api = await cluster.add()
    client = SlowClient()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", api.port)
    await endpoints.connectProtocol(endpoint, client)
    assert client.transport is not None
    client.transport.write(b"Content-Length: " + b"7" * 5000 + b"\r\n\r\n")
    await within(client.closed, 30)
    head, _, body = client.received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert "Content-Length" in json.loads(body)["error"]


# -- Chord ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_api_works_over_chord(cluster: Cluster) -> None:
    options = {"stabilize_every": 0.1, "fix_fingers_every": 0.1}
    apis = [(await cluster.add(ChordService, **options))[1] for _ in range(3)]
    status = (await apis[0].call("GET", "/v1/status")).json()
    assert status["protocol"] == "chord"
    key = key_for("chord-value")
    # A joined Chord node learns its successor list in the rounds after its join.
    for _ in range(100):
        found = await cluster.services[0].overlay.find_responsible(key, 3)
        if len(found) == 3:
            break
        await task.deferLater(reactor, 0.1, lambda: None)
    put = await apis[0].call("PUT", "/v1/values/chord-value", b"on the ring")
    assert put.json() == {"key": key.hex(), "replicas": 3}
    got = await apis[2].call("GET", "/v1/values/chord-value")
    assert (got.code, got.body) == (200, b"on the ring")
