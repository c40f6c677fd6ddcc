"""The listen endpoints' event streams: versions, keep-alives, bounds, slow and departed clients."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from dhtkit import sse
from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.values import PlainValue, SignedValue
from dhtkit.web import route
from dhtkit.web.call import ApiError, Call
from dhtkit.web.guard import ConnectionStats, HttpLimits
from dhtkit.web.listen import EventStreams, Stream, listen_signed, listen_value, record_json
from tests.valuenet import Cluster

OWNER = Identity(b"\x05" * 32)


class _Transport:
    def __init__(self, request: StreamRequest) -> None:
        self.request = request
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.request.lose()


class StreamRequest(DummyRequest):
    """A request whose client reads a stream, or stops reading, or leaves."""

    def __init__(self, host: str = "192.0.2.1", method: bytes = b"GET") -> None:
        super().__init__([])
        self.client = IPv4Address("TCP", host, 50000)
        self.method = method
        self.producer: Any = None
        self.transport = _Transport(self)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def lose(self) -> None:
        """The connection is gone."""
        for d in self._finishedDeferreds:
            d.errback(Failure(ConnectionError("gone")))
        self._finishedDeferreds = []

    def events(self) -> list[sse.Event]:
        return sse.EventParser().feed(b"".join(self.written))


def _streams(net: Cluster, **limits: Any) -> EventStreams:
    return EventStreams(HttpLimits(**limits), ConnectionStats(), net.clock, keepalive=15.0)


def _service(net: Cluster) -> Any:
    return SimpleNamespace(node=net.client())


def _put(net: Cluster, seq: int) -> None:
    net.wait(net.nodes[0].put_signed(b"v%d" % seq, b"s", OWNER, seq=seq))
    net.advance(2, step=0.1)


def _signed_stream() -> Stream:
    return Stream(SignedValue.create(OWNER, b"", 1, b"s").key, signed=True)


def test_a_stream_sends_the_held_version_then_each_new_one() -> None:
    net = Cluster(3)
    _put(net, 1)
    streams, request = _streams(net), StreamRequest()
    assert streams.start(request, _signed_stream(), _service(net)) is None
    net.advance(2, step=0.1)
    _put(net, 2)
    assert request.responseCode == 200
    content_type = request.responseHeaders.getRawHeaders(b"content-type")
    assert content_type == [b"text/event-stream; charset=utf-8"]
    events = request.events()
    assert [(e.type, e.id) for e in events] == [("value", "1"), ("value", "2")]
    data = json.loads(events[1].data)
    assert data["seq"] == 2 and base64.b64decode(data["value"]) == b"v2"
    assert data["public_key"] == OWNER.public_key.hex() and data["salt"] == b"s".hex()
    assert not request.finished


def test_an_idle_stream_gets_keep_alive_comments() -> None:
    net = Cluster(2)
    streams, request = _streams(net), StreamRequest()
    streams.start(request, Stream(key_for("quiet")), _service(net))
    before = b"".join(request.written).count(b": keep-alive")
    net.advance(46, step=1)
    assert b"".join(request.written).count(b": keep-alive") == before + 3
    assert request.events() == []


def test_a_client_that_leaves_ends_the_listening_everywhere() -> None:
    net = Cluster(2)
    service = _service(net)
    streams, request = _streams(net), StreamRequest()
    streams.start(request, _signed_stream(), service)
    net.advance(2, step=0.1)
    assert len(net.nodes[0].listeners) == 1 and len(streams.open) == 1
    request.lose()
    net.advance(2, step=0.1)
    assert len(streams.open) == 0 and streams.by_source == {}
    assert not service.node.listenings.watches(_signed_stream().key)
    assert len(net.nodes[0].listeners) == 0  # told to let go
    written = len(request.written)
    net.advance(60, step=1)
    assert len(request.written) == written  # no keep-alive after the end
    assert streams.counters.streams_opened == streams.counters.streams_closed == 1


def test_streams_from_one_client_address_are_bounded() -> None:
    net = Cluster(2)
    service = _service(net)
    streams = _streams(net, max_streams_per_source=2)
    for _ in range(2):
        assert streams.start(StreamRequest(), Stream(key_for("a")), service) is None
    refused = streams.start(StreamRequest(), Stream(key_for("b")), service)
    assert refused is not None and refused.code == 429
    assert "2 streams are open from your address" in json.loads(refused.body)["error"]
    assert streams.start(StreamRequest("192.0.2.2"), Stream(key_for("b")), service) is None
    assert streams.counters.streams_refused_per_source == 1


def test_streams_in_all_are_bounded() -> None:
    net = Cluster(2)
    service = _service(net)
    streams = _streams(net, max_streams=1)
    first = StreamRequest("192.0.2.1")
    streams.start(first, Stream(key_for("a")), service)
    refused = streams.start(StreamRequest("192.0.2.2"), Stream(key_for("a")), service)
    assert refused is not None and refused.code == 429
    assert streams.counters.streams_refused_total_cap == 1
    first.lose()  # its place is free again
    assert streams.start(StreamRequest("192.0.2.2"), Stream(key_for("a")), service) is None


def test_a_client_that_does_not_read_is_held_then_closed() -> None:
    net = Cluster(2)
    streams, request = _streams(net), StreamRequest()
    streams.max_pending = 3
    streams.start(request, _signed_stream(), _service(net))
    request.producer.pauseProducing()
    _put(net, 1)
    _put(net, 2)
    assert request.events() == []  # held while the connection is full
    request.producer.resumeProducing()
    assert [e.id for e in request.events()] == ["1", "2"]
    request.producer.pauseProducing()
    for seq in range(3, 8):
        _put(net, seq)
    assert request.transport.aborted
    assert streams.counters.streams_closed_slow == 1 and len(streams.open) == 0


def test_a_head_request_gets_the_headers_only() -> None:
    net = Cluster(2)
    service = _service(net)
    streams, request = _streams(net), StreamRequest(method=b"HEAD")
    assert streams.start(request, Stream(key_for("a")), service) is None
    assert request.finished and request.responseCode == 200
    assert not service.node.listenings.watches(key_for("a")) and not streams.open


def test_versions_as_json() -> None:
    plain = PlainValue(key_for("k"), b"\xffbinary", 7)
    assert record_json(plain) == {
        "key": key_for("k").hex(),
        "kind": "plain",
        "seq": 7,
        "value": base64.b64encode(b"\xffbinary").decode(),
    }


def test_a_delete_as_json_says_deleted_and_carries_no_value() -> None:
    owner = Identity(b"\x07" * 32)
    tombstone = SignedValue.tombstone(owner, 4, b"salt")
    assert record_json(tombstone) == {
        "key": tombstone.key.hex(),
        "kind": "signed",
        "seq": 4,
        "deleted": True,
        "public_key": owner.public_key.hex(),
        "salt": b"salt".hex(),
    }


@pytest.mark.parametrize(
    ("stream", "events"),
    [
        (b"event: value\nid: 3\ndata: {}\n\n", [sse.Event("value", "{}", "3")]),
        (b": comment\r\n\r\ndata: a\r\ndata: b\r\n\r\n", [sse.Event("message", "a\nb")]),
        (b"data: x\rdata:y\r\r:", [sse.Event("message", "x\ny")]),
        (b"data: partial\n", []),
    ],
)
def test_event_streams_are_parsed(stream: bytes, events: list[sse.Event]) -> None:
    parser = sse.EventParser()
    found = []
    for i in range(len(stream)):  # byte by byte, as a network may cut it
        found += parser.feed(stream[i : i + 1])
    assert found == events


def test_a_stream_that_is_not_one_is_refused() -> None:
    with pytest.raises(sse.StreamError):
        sse.EventParser(max_line=10).feed(b"x" * 11)
    with pytest.raises(sse.StreamError):
        sse.EventParser().feed(b"data: \xff\n")
    written = sse.event("value", "a\nb", "1")
    assert sse.EventParser().feed(written) == [sse.Event("value", "a\nb", "1")]


def test_the_listen_paths_are_routed_and_checked() -> None:
    endpoint, params = route([b"v1", b"listen", b"feed"], b"GET", "/v1/listen/feed")
    assert params == [b"feed"]
    with pytest.raises(ApiError) as caught:
        route([b"v1", b"listen", b"feed"], b"PUT", "/v1/listen/feed")
    assert caught.value.code == 405 and caught.value.headers["Allow"] == "GET, HEAD"
    signed, params = route(
        [b"v1", b"listen", b"signed", b"ab" * 32, b"news"], b"GET", "/v1/listen/signed/..."
    )
    assert params == [b"ab" * 32, b"news"] and signed is not endpoint


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ([b"nothex" * 8, b"news"], "64 hex digits"),
        ([b"ab" * 32, b"s" * 65], "at most 64"),
        ([b"ab" * 31, b"news"], "64 hex digits"),
    ],
)
def test_a_bad_signed_listen_is_a_400(params: list[bytes], says: str) -> None:
    call = Call(None, None, params, {}, b"")  # type: ignore[arg-type]
    with pytest.raises(ApiError) as caught:
        listen_signed(call).send(None)
    assert caught.value.code == 400 and says in caught.value.message


def test_a_listen_of_an_empty_name_is_a_400() -> None:
    with pytest.raises(ApiError) as caught:
        listen_value(Call(None, None, [b""], {}, b"")).send(None)  # type: ignore[arg-type]
    assert caught.value.code == 400


def test_the_stream_ends_when_the_node_stops() -> None:
    net = Cluster(2)
    service = _service(net)
    streams, request = _streams(net), StreamRequest()
    streams.start(request, Stream(key_for("a")), service)
    service.node.stop()
    assert request.finished and not streams.open
    assert streams.counters.streams_closed == 1


@pytest.mark.parametrize(("last", "sent"), [(b"1", ["2"]), (b"2", []), (b"x", ["1", "2"])])
def test_a_client_that_reconnects_gets_only_what_it_lacks(last: bytes, sent: list[str]) -> None:
    net = Cluster(2)
    _put(net, 1)
    streams, request = _streams(net), StreamRequest()
    request.requestHeaders.addRawHeader(b"Last-Event-ID", last)
    streams.start(request, _signed_stream(), _service(net))
    net.advance(2, step=0.1)
    _put(net, 2)
    assert [e.id for e in request.events()] == sent
