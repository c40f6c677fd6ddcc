"""The HTTP API of a running node (twisted.web): routing, auth, errors, and the site.

One leaf resource answers every path: it checks the bearer token, finds the
route for the percent-decoded path segments, runs the endpoint (most of
them wait on the network) and writes its :class:`~dhtkit.web.call.Reply`,
unless the client went away meanwhile. Every answer is JSON, except the
raw values and the Prometheus text; every error is ``{"error": sentence}``.
The contract is ``docs/http.rst``; :mod:`dhtkit.client` follows it too.
"""

from __future__ import annotations

import hmac
import io
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.server import NOT_DONE_YET

from dhtkit._version import __version__
from dhtkit.service import OverlayService
from dhtkit.web.call import ApiError, Call, Reply, json_reply, network_error
from dhtkit.web.gossip import delete_update, list_updates, publish_update
from dhtkit.web.guard import (
    MAX_LENGTH_DIGITS,
    ConnectionStats,
    DeadlineChannel,
    GuardedFactory,
    HttpLimits,
)
from dhtkit.web.listen import EventStreams, Stream, listen_signed, listen_value
from dhtkit.web.metrics import CONTENT_TYPE, exposition, node_registry
from dhtkit.web.sealed import get_encrypted, put_encrypted
from dhtkit.web.values import (
    delete_signed,
    delete_value,
    get_signed,
    get_value,
    put_signed,
    put_value,
)

__all__ = [
    "MAX_BODY",
    "ApiError",
    "ApiRequest",
    "ApiResource",
    "ApiSite",
    "Reply",
    "format_address",
    "make_api_factory",
    "make_site",
]

#: The most body bytes a request may send; anything longer is answered 413
#: without being kept (values are far smaller: they fit one datagram).
MAX_BODY = 64 * 1024

Endpoint = Callable[[Call], Awaitable[Reply | Stream]]


async def status(call: Call) -> Reply:
    """``GET /v1/status``: the service's status and the version."""
    answer = dict(call.service.status())
    answer["version"] = __version__
    return json_reply(answer)


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::1]:4000``)."""
    return "[{}]:{}".format(host, port) if ":" in host else "{}:{}".format(host, port)


async def contacts(call: Call) -> Reply:
    """``GET /v1/contacts``: the overlay's routing contacts."""
    listed = [
        {
            "node_id": c.node_id.hex(),
            "address": format_address(*c.address),
            "public_key": c.public_key.hex(),
        }
        for c in call.service.overlay.contacts()
    ]
    return json_reply({"contacts": listed})


async def prometheus(call: Call) -> Reply:
    """``GET /metrics``: the node's counters in Prometheus text format (docs/metrics.rst)."""
    registry = call.metrics
    if registry is None:
        registry = node_registry(call.service, call.gossip, call.http)
    return Reply(200, exposition(registry), CONTENT_TYPE)


#: Path patterns (None captures a segment) and their endpoints by method.
ROUTES: Sequence[tuple[tuple[bytes | None, ...], dict[bytes, Endpoint]]] = (
    ((b"v1", b"status"), {b"GET": status}),
    ((b"v1", b"values", None), {b"GET": get_value, b"PUT": put_value, b"DELETE": delete_value}),
    ((b"v1", b"signed", None), {b"PUT": put_signed, b"DELETE": delete_signed}),
    ((b"v1", b"signed", None, None), {b"GET": get_signed}),
    ((b"v1", b"encrypted", None), {b"PUT": put_encrypted}),
    ((b"v1", b"encrypted", None, None), {b"GET": get_encrypted}),
    ((b"v1", b"contacts"), {b"GET": contacts}),
    ((b"v1", b"gossip", None), {b"GET": list_updates, b"POST": publish_update}),
    ((b"v1", b"gossip", None, None), {b"DELETE": delete_update}),
    ((b"v1", b"listen", None), {b"GET": listen_value}),
    ((b"v1", b"listen", b"signed", None, None), {b"GET": listen_signed}),
    ((b"metrics",), {b"GET": prometheus}),
)


def route(segments: Sequence[bytes], method: bytes, path: str) -> tuple[Endpoint, list[bytes]]:
    """The endpoint for ``method`` on ``segments``, and the captured segments.

    :raises ApiError: 404 for an unknown path, 405 (with ``Allow``) for a
        known path and another method.
    """
    for pattern, methods in ROUTES:
        if len(pattern) != len(segments):
            continue
        if all(p is None or p == s for p, s in zip(pattern, segments, strict=True)):
            captured = [s for p, s in zip(pattern, segments, strict=True) if p is None]
            # HEAD is GET without the body (twisted.web drops it).
            endpoint = methods.get(b"GET" if method == b"HEAD" else method)
            if endpoint is None:
                allowed = [m.decode() for m in methods]
                allowed = sorted(allowed + (["HEAD"] if "GET" in allowed else []))
                raise ApiError(
                    405,
                    "{} is not allowed on {}; use {}".format(
                        method.decode("ascii", "replace"), path, " or ".join(allowed)
                    ),
                    {"Allow": ", ".join(allowed)},
                )
            return endpoint, captured
    raise ApiError(404, "there is no {} in this API".format(path))


class _BoundedBody(io.BytesIO):
    """A request body that keeps at most ``limit + 1`` bytes, and says if it overflowed."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.overflowed = False

    def write(self, data: Any) -> int:
        room = self.limit + 1 - self.getbuffer().nbytes
        if len(data) > room:
            self.overflowed = True
            data = bytes(data[: max(room, 0)])
        return super().write(data)


class ApiRequest(server.Request):
    """A request whose body is kept in memory up to :data:`MAX_BODY` bytes.

    twisted.web reads the whole body before the resource sees the request;
    this keeps an oversized upload from filling memory or disk meanwhile.
    """

    def gotLength(self, length: int | None) -> None:  # noqa: N802 (Twisted's name)
        self.content = _BoundedBody(MAX_BODY)


def _body(request: server.Request) -> bytes | None:
    content = request.content
    if content is None or getattr(content, "overflowed", False):
        return None
    content.seek(0)
    data: bytes = content.read(MAX_BODY + 1)
    return None if len(data) > MAX_BODY else data


def _declared_length(request: server.Request) -> int | None:
    header = request.getHeader(b"content-length")
    if header is None or not header.isdigit():
        return None
    # The channel refuses longer ones; never make a number of thousands of digits.
    return int(header) if len(header) <= MAX_LENGTH_DIGITS else MAX_BODY + 1


class ApiResource(resource.Resource):
    """Every path of the HTTP API over a running node service.

    :param service: an :class:`~dhtkit.service.OverlayService` (started).
    :param token: when given, every request must send
        ``Authorization: Bearer <token>``.
    :param gossip: the node's :class:`~dhtkit.gossip.service.GossipService`
        (or a bare gossip protocol): ``/v1/gossip`` serves it and ``/metrics``
        adds its counters.
    """

    isLeaf = True  # noqa: N815 (Twisted's name)
    _log = Logger()

    def __init__(
        self,
        service: OverlayService,
        *,
        token: str | None = None,
        gossip: Any = None,
        connections: ConnectionStats | None = None,
        streams: EventStreams | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.service = service
        self.token = token
        self.gossip = gossip
        self.connections = connections
        # The site's own registry: other nodes may share this process.
        self.metrics = node_registry(service, gossip, connections)
        #: The open ``/v1/listen`` streams (None: the API serves none).
        self.streams = streams

    def render(self, request: server.Request) -> int:
        """Answer ``request`` once its endpoint is done."""
        gone: list[object] = []
        # Fires on finish, or errbacks when the client hangs up first.
        request.notifyFinish().addBoth(gone.append)
        answering = defer.Deferred.fromCoroutine(self._answer(request))
        answering.addCallback(self._send, request, gone)
        answering.addErrback(lambda f: self._log.failure("writing an HTTP answer failed", f))
        return NOT_DONE_YET

    def _authorize(self, request: server.Request) -> None:
        if self.token is None:
            return
        header = request.getHeader(b"authorization")
        if header is None:
            raise ApiError(
                401,
                "this API needs a token: send the header 'Authorization: Bearer <token>' "
                "with the token in the node's api.token file",
                {"WWW-Authenticate": "Bearer"},
            )
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(
            given.strip(), self.token.encode("utf-8")
        ):
            raise ApiError(401, "the token is wrong", {"WWW-Authenticate": "Bearer"})

    async def _answer(self, request: server.Request) -> Reply | Stream:
        method = request.method
        path = request.path.decode("utf-8", "replace")
        try:
            self._authorize(request)
            endpoint, params = route(request.postpath or [], method, path)
            if not self.service.running:
                raise ApiError(503, "the node is not running")
            query = parse_qs(request.uri.partition(b"?")[2].decode("ascii", "replace"), True)
            body = _body(request) if method in (b"PUT", b"POST") else b""
            call = Call(
                self.service,
                self.gossip,
                params,
                query,
                body,
                _declared_length(request),
                self.connections,
                self.metrics,
            )
            return await endpoint(call)
        except ApiError as e:
            error = e
        except Exception as e:
            known = network_error(e)
            if known is None:
                self._log.failure(
                    "{method} {path} failed", method=method.decode("ascii", "replace"), path=path
                )
                return json_reply({"error": "internal error"}, 500)
            error = known
        # The client hears the reason; the operator needs only the 5xx ones.
        log = self._log.warn if error.code >= 500 else self._log.debug
        log(
            "{method} {path}: {code} {message}",
            method=method.decode("ascii", "replace"),
            path=path,
            code=error.code,
            message=error.message,
        )
        reply = json_reply({"error": error.message}, error.code)
        return Reply(reply.code, reply.body, reply.content_type, error.headers)

    def _send(self, answer: Reply | Stream, answered: server.Request, gone: list[object]) -> None:
        if gone:
            self._log.debug("the client left before its answer was ready")
            return
        if isinstance(answer, Stream):
            if self.streams is None:
                reply = json_reply({"error": "this API serves no event streams"}, 404)
            else:
                refused = self.streams.start(answered, answer, self.service)
                if refused is None:
                    return
                reply = refused
        else:
            reply = answer
        request: Any = answered  # twisted.web's Request is only partly annotated
        request.setResponseCode(reply.code)
        request.setHeader(b"Content-Type", reply.content_type.encode("ascii"))
        request.setHeader(b"Content-Length", str(len(reply.body)).encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        for name, value in reply.headers.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        request.write(reply.body)
        request.finish()


class ApiSite(server.Site):
    """The API's site: its channels must receive each request within a deadline.

    :param limits: the deadline (``request_timeout``) comes from here.
    :param counters: where the channels count what they refuse or close.
    :param clock: schedules the deadlines. twisted.web's own idle timeout is
        off: it restarts at every byte, and the deadline covers idle
        keep-alive connections too.
    """

    protocol = DeadlineChannel  # type: ignore[assignment]

    def __init__(
        self,
        api: ApiResource,
        limits: HttpLimits,
        counters: ConnectionStats,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            api, requestFactory=ApiRequest, timeout=None, reactor=clock
        )
        self.limits = limits
        self.counters = counters
        self.displayTracebacks = False

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 (Twisted's name)
        """A :class:`~dhtkit.web.guard.DeadlineChannel` on this site's clock."""
        channel = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        channel.request_timeout = self.limits.request_timeout
        channel.counters = self.counters
        channel.clock = self.reactor
        return channel


def make_site(
    service: OverlayService,
    *,
    token: str | None = None,
    gossip: Any = None,
    limits: HttpLimits | None = None,
    clock: IReactorTime | None = None,
    counters: ConnectionStats | None = None,
) -> ApiSite:
    """A twisted.web site serving the HTTP API of ``service`` (see :class:`ApiResource`).

    Its connections have ``limits.request_timeout`` to deliver each request;
    :func:`make_api_factory` adds the connection caps.
    """
    limits = limits if limits is not None else HttpLimits()
    counters = counters if counters is not None else ConnectionStats()
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[assignment]
    assert clock is not None
    streams = EventStreams(limits, counters, clock)
    api = ApiResource(service, token=token, gossip=gossip, connections=counters, streams=streams)
    return ApiSite(api, limits, counters, clock)


def make_api_factory(
    service: OverlayService,
    *,
    token: str | None = None,
    gossip: Any = None,
    limits: HttpLimits | None = None,
    clock: IReactorTime | None = None,
) -> GuardedFactory:
    """The API of ``service`` with every limit: the request deadline and the connection caps."""
    limits = limits if limits is not None else HttpLimits()
    counters = ConnectionStats()
    site = make_site(
        service, token=token, gossip=gossip, limits=limits, clock=clock, counters=counters
    )
    return GuardedFactory(site, limits, counters)
