"""The HTTP API's listen endpoints: each new version of a key, as server-sent events.

``GET /v1/listen/{key}`` (a name or 40 hex digits, as for ``/v1/values``)
and ``GET /v1/listen/signed/{public_key}/{salt}`` (as ``/v1/signed``) answer
``200`` with a ``text/event-stream`` that stays open: one ``value`` event
for the version held now, if any, then one for each newer version, as
:meth:`dhtkit.node.DHTNode.listen` hears of them; its ``id`` is the
version's seq and its data a JSON object ``{"key", "kind", "seq",
"value"}`` (the value in base64; signed values add ``public_key`` and
``salt`` in hex). A comment line goes out every ``keepalive`` seconds so
that proxies and clients see the stream alive. A client that reconnects
with ``Last-Event-ID: N`` (as an EventSource does) gets only versions
with a seq above ``N``.

Streams are bounded per client address and in all
(:class:`~dhtkit.web.guard.HttpLimits`); beyond, the answer is 429. A
client that does not read what it is sent cannot make the node buffer
without end: its stream is closed when :data:`MAX_PENDING` events wait.
When the client goes away the listening is cancelled; when the node
stops, the stream ends.
"""

from __future__ import annotations

import base64
import json
import re
from collections import deque
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.web import server
from zope.interface import implementer

from dhtkit import sse
from dhtkit.listen import Listening
from dhtkit.service import OverlayService
from dhtkit.values import MAX_SEQ, Record, SignedValue, signed_key
from dhtkit.web.call import ApiError, Call, Reply, json_reply, key_from, salt_from
from dhtkit.web.guard import ConnectionStats, HttpLimits, source_of

__all__ = [
    "KEEPALIVE",
    "MAX_PENDING",
    "EventStreams",
    "Stream",
    "listen_signed",
    "listen_value",
    "record_json",
]

#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE = 15.0
#: Events a stream may hold for a client that does not read; then it is closed.
MAX_PENDING = 32


_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def public_key_from(segment: bytes) -> bytes:
    """A ``{public_key}`` segment of 64 hex digits as bytes; 400 otherwise."""
    hex_key = segment.decode("ascii", "replace")
    if not _HEX_KEY.fullmatch(hex_key):
        raise ApiError(400, "the public key must be 64 hex digits")
    return bytes.fromhex(hex_key)


@attrs.frozen
class Stream:
    """An endpoint's answer that opens an event stream of ``key``'s versions."""

    key: bytes
    signed: bool = False


async def listen_value(call: Call) -> Stream:
    """``GET /v1/listen/{key}``: the versions of a name's or an id's key."""
    key, _ = key_from(call.params[0])
    return Stream(key)


async def listen_signed(call: Call) -> Stream:
    """``GET /v1/listen/signed/{public_key}/{salt}``: the versions of a signed value."""
    public_key = public_key_from(call.params[0])
    salt, _ = salt_from(call.params[1])
    return Stream(signed_key(public_key, salt), signed=True)


def record_json(record: Record) -> dict[str, Any]:
    """A version as an event's JSON data."""
    found: dict[str, Any] = {"key": record.key.hex(), "kind": record.kind, "seq": record.seq}
    value = getattr(record, "value", None)
    if record.deleted:
        found["deleted"] = True  # a tombstone: its publisher withdrew the value
    elif isinstance(value, bytes):
        found["value"] = base64.b64encode(value).decode("ascii")
    if isinstance(record, SignedValue):
        found["public_key"] = record.public_key.hex()
        found["salt"] = record.salt.hex()
    return found


class EventStreams:
    """The open event streams of one API, bounded per client address and in all.

    :param limits: ``max_streams_per_source`` and ``max_streams`` come from here.
    :param counters: where ``streams_*`` counts go (for ``/metrics``).
    """

    def __init__(
        self,
        limits: HttpLimits,
        counters: ConnectionStats,
        clock: IReactorTime,
        *,
        keepalive: float = KEEPALIVE,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.limits = limits
        self.counters = counters
        self.clock = clock
        self.keepalive = keepalive
        self.max_pending = max_pending
        self.by_source: dict[str, int] = {}
        self.open: set[_EventStream] = set()

    def start(
        self, request: server.Request, stream: Stream, service: OverlayService
    ) -> Reply | None:
        """Answer ``request`` with the stream; a refusal's JSON reply, or None once streaming."""
        source = source_of(request.getClientAddress())  # type: ignore[no-untyped-call]
        if len(self.open) >= self.limits.max_streams:
            self.counters.streams_refused_total_cap += 1
            return _too_many("the node serves {} streams, its most".format(len(self.open)))
        if self.by_source.get(source, 0) >= self.limits.max_streams_per_source:
            self.counters.streams_refused_per_source += 1
            return _too_many(
                "{} streams are open from your address, the most it may have".format(
                    self.by_source[source]
                )
            )
        _EventStream(self, request, source, stream, service)
        return None

    def _opened(self, stream: _EventStream) -> None:
        self.open.add(stream)
        self.by_source[stream.source] = self.by_source.get(stream.source, 0) + 1
        self.counters.streams_opened += 1

    def _closed(self, stream: _EventStream) -> None:
        self.open.discard(stream)
        left = self.by_source.get(stream.source, 0) - 1
        if left > 0:
            self.by_source[stream.source] = left
        else:
            self.by_source.pop(stream.source, None)
        self.counters.streams_closed += 1


def _last_event_id(header: bytes | None) -> int | None:
    # Anything but a sequence number is ignored, as an id we never sent.
    if header is None or not header.isdigit() or len(header) > len(str(MAX_SEQ)):
        return None
    return int(header)


def _too_many(message: str) -> Reply:
    reply = json_reply({"error": message}, 429)
    return attrs.evolve(reply, headers={"Retry-After": "10"})


@implementer(IPushProducer)
class _EventStream:
    """One open stream: its listening, its keep-alive, and what waits for the client."""

    def __init__(
        self, streams: EventStreams, request: Any, source: str, stream: Stream, service: Any
    ) -> None:
        self.streams = streams
        self.request = request
        self.source = source
        self.paused = False
        self.ended = False
        self.pending: deque[bytes] = deque()
        self.timer: IDelayedCall | None = None
        self.listening: Listening | None = None
        # A client reconnecting (an EventSource does) says the last seq it
        # got: what it has is not sent again.
        self.after = _last_event_id(request.getHeader(b"last-event-id"))
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", sse.CONTENT_TYPE.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"X-Accel-Buffering", b"no")
        if request.method == b"HEAD":
            request.finish()
            return
        streams._opened(self)
        request.notifyFinish().addBoth(self._end)
        request.registerProducer(self, True)
        self._write(b"retry: 3000\n" + sse.comment("listening to " + stream.key.hex()))
        self._keep_alive()
        self.listening = service.node.listen(stream.key, self._version)
        # The node stopped: the client hears the stream end, not silence.
        self.listening.ended.addCallback(self._listening_ended)

    def _listening_ended(self, _: object) -> None:
        if not self.ended:
            self._end(None)
            self.request.finish()

    def _version(self, record: Record) -> None:
        if self.after is not None and record.seq <= self.after:
            return
        data = json.dumps(record_json(record), separators=(",", ":"))
        self._write(sse.event("value", data, str(record.seq)))

    def _keep_alive(self) -> None:
        if self.ended:
            return
        if not self.paused:
            self._write(sse.comment("keep-alive"))
        self.timer = self.streams.clock.callLater(self.streams.keepalive, self._keep_alive)

    def _write(self, data: bytes) -> None:
        if self.ended:
            return
        if not self.paused:
            self.request.write(data)
            return
        if len(self.pending) >= self.streams.max_pending:
            # The client does not read: its events would pile up here.
            self.streams.counters.streams_closed_slow += 1
            self.request.transport.abortConnection()
            self._end(None)
            return
        self.pending.append(data)

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's name)
        """The client's connection is full: hold the events."""
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802 (Twisted's name)
        """The client reads again: what waited goes first."""
        self.paused = False
        while self.pending and not self.paused and not self.ended:
            self.request.write(self.pending.popleft())

    def stopProducing(self) -> None:  # noqa: N802 (Twisted's name)
        """The connection is going away."""
        self._end(None)

    def _end(self, _: object) -> None:
        if self.ended:
            return
        self.ended = True
        self.pending.clear()
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.listening is not None:
            self.listening.cancel()
        self.streams._closed(self)
