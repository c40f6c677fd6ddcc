"""A client of a running node's HTTP API (see :mod:`dhtkit.web`), over treq.

Every way a request can fail ends as one :class:`ApiError` whose message is
a sentence a user understands: the server's own ``{"error": ...}`` text for
an HTTP error, or what went wrong on the way (connection refused, a timeout,
a reply that is not JSON). Nothing here prints; the command line does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import attrs
import treq
from treq.client import HTTPClient
from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import Agent, RequestTransmissionFailed, ResponseFailed
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers

from dhtkit.sse import EventParser, StreamError

#: Seconds a request may take, reply included, before it is given up.
DEFAULT_TIMEOUT = 30.0

#: The start of the server's 404 message for a key nobody stores (the contract's wording).
_NOT_STORED = "no value is stored under"


class ApiError(Exception):
    """A request to the node's HTTP API that did not succeed.

    :ivar status: the HTTP status code, or None when no reply came.
    :ivar message: one sentence that says what went wrong.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ConnectionRefused(ApiError):
    """Nothing listens at the API's address (yet): the daemon is not running."""


class Deleted(ApiError):
    """The value read was deleted by its publisher (the API answered 410).

    :ivar seq: the version of the delete, when the node said it.
    """

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message, 410)
        self.seq = seq


@attrs.frozen
class SignedReply:
    """A signed mutable value as ``GET /v1/signed/...`` returns it."""

    value: bytes
    seq: int


@attrs.frozen
class _Reply:
    status: int
    headers: Headers
    body: bytes


def check_api_url(text: str) -> str:
    """``text`` as a base URL of the API, without a trailing slash.

    :raises ValueError: it is not an ``http://`` or ``https://`` URL of a host.
    """
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (parsing the port is what checks it)
    except ValueError as e:
        raise ValueError("{!r} is not a URL: {}".format(text, e)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "{!r} is not an http:// URL of a host, like http://127.0.0.1:4001".format(text)
        )
    if parts.query or parts.fragment:
        raise ValueError("{!r} has a query or fragment; give the API's base URL".format(text))
    return text.rstrip("/")


def _query(**arguments: object) -> str:
    """``?name=value&...`` of the arguments that are not None, or nothing."""
    given = {name: value for name, value in arguments.items() if value is not None}
    return "?" + urlencode(given) if given else ""


def _segment(text: str | bytes) -> str:
    # One path segment, whatever it holds: "/" and "%" are escaped too.
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return quote(raw, safe="")


class ApiClient:
    """Calls the HTTP API at ``url`` (e.g. ``http://127.0.0.1:4001``).

    :param reactor: makes the connections and times the requests out.
    :param token: sent as ``Authorization: Bearer <token>`` when given.
    :param timeout: seconds for each request, reply included.
    :param http: the treq client (by default one over an :class:`Agent`).
    """

    def __init__(
        self,
        url: str,
        *,
        reactor: Any,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        http: HTTPClient | None = None,
    ) -> None:
        self.url = check_api_url(url)
        self.reactor: IReactorTime = reactor
        self.timeout = timeout
        self._token = token
        self._http = http if http is not None else HTTPClient(Agent(reactor))  # type: ignore[no-untyped-call]

    # -- the endpoints ---------------------------------------------------------

    def status(self) -> defer.Deferred[dict[str, Any]]:
        """``GET /v1/status``: the node's id, protocol, address, contacts, values, uptime."""
        return self._send("GET", "/v1/status").addCallback(self._object)

    def contacts(self) -> defer.Deferred[list[dict[str, Any]]]:
        """``GET /v1/contacts``: the node's routing contacts, as dicts."""

        def listed(reply: _Reply) -> list[dict[str, Any]]:
            contacts = self._object(reply).get("contacts")
            if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
                raise self._unexpected(reply, "a contact list")
            return contacts

        return self._send("GET", "/v1/contacts").addCallback(listed)

    def put(self, name: str | bytes, value: bytes) -> defer.Deferred[dict[str, Any]]:
        """``PUT /v1/values/{name}``: fires with ``{"key": hex, "replicas": n}``."""
        path = "/v1/values/" + _segment(name)
        return self._send("PUT", path, value).addCallback(self._object)

    def get(self, name: str | bytes) -> defer.Deferred[bytes | None]:
        """``GET /v1/values/{name}``: the value, or None if the DHT holds none.

        :raises Deleted: its publisher deleted it.
        """

        def value(reply: _Reply) -> bytes | None:
            if reply.status == 404 and self._message(reply).startswith(_NOT_STORED):
                return None
            return self._ok(reply).body

        return self._send("GET", "/v1/values/" + _segment(name)).addCallback(value)

    def delete(self, name: str | bytes) -> defer.Deferred[dict[str, Any]]:
        """``DELETE /v1/values/{name}``: withdraw the plain value this node put.

        Fires with ``{"key": hex, "replicas": n}``.
        """
        return self._send("DELETE", "/v1/values/" + _segment(name)).addCallback(self._object)

    def put_signed(
        self, salt: str | bytes, value: bytes, seq: int | None = None, cas: int | None = None
    ) -> defer.Deferred[dict[str, Any]]:
        """``PUT /v1/signed/{salt}``, signed with the node's own key.

        Fires with ``{"key", "public_key", "salt", "seq", "replicas"}``.

        :param seq: the sequence number to store (default: the next one).
        :param cas: store only where the present sequence number is this one.
        """
        path = "/v1/signed/" + _segment(salt) + _query(seq=seq, cas=cas)
        return self._send("PUT", path, value).addCallback(self._object)

    def delete_signed(
        self, salt: str | bytes, seq: int | None = None, cas: int | None = None
    ) -> defer.Deferred[dict[str, Any]]:
        """``DELETE /v1/signed/{salt}``: a tombstone above the node's own signed value.

        Fires with ``{"key", "public_key", "salt", "seq", "replicas"}``.
        """
        path = "/v1/signed/" + _segment(salt) + _query(seq=seq, cas=cas)
        return self._send("DELETE", path).addCallback(self._object)

    def put_encrypted(
        self,
        salt: str | bytes,
        recipient_hex: str,
        value: bytes,
        seq: int | None = None,
        cas: int | None = None,
    ) -> defer.Deferred[dict[str, Any]]:
        """``PUT /v1/encrypted/{salt}?to={recipient_hex}``: ``value`` sealed for the recipient.

        Fires with ``{"key", "public_key", "recipient", "salt", "seq", "replicas"}``.
        """
        path = "/v1/encrypted/" + _segment(salt) + _query(to=recipient_hex, seq=seq, cas=cas)
        return self._send("PUT", path, value).addCallback(self._object)

    def get_encrypted(
        self, public_key_hex: str, salt: str | bytes
    ) -> defer.Deferred[SignedReply | None]:
        """``GET /v1/encrypted/{public_key_hex}/{salt}``: the value sealed for the node, opened."""
        path = "/v1/encrypted/{}/{}".format(_segment(public_key_hex), _segment(salt))
        return self._send("GET", path).addCallback(self._signed)

    def get_signed(
        self, public_key_hex: str, salt: str | bytes
    ) -> defer.Deferred[SignedReply | None]:
        """``GET /v1/signed/{public_key_hex}/{salt}``: the newest version, or None."""

        path = "/v1/signed/{}/{}".format(_segment(public_key_hex), _segment(salt))
        return self._send("GET", path).addCallback(self._signed)

    def _signed(self, reply: _Reply) -> SignedReply | None:
        if reply.status == 404 and self._message(reply).startswith(_NOT_STORED):
            return None
        self._ok(reply)
        seq = self._seq(reply)
        if seq is None:
            raise self._unexpected(reply, "a Dhtkit-Seq header")
        return SignedReply(reply.body, seq)

    def publish(
        self, topic: str | bytes, data: bytes, ttl: float | None = None
    ) -> defer.Deferred[dict[str, Any]]:
        """``POST /v1/gossip/{topic}``: sign and spread an update (the daemon runs ``--gossip``).

        Fires with ``{"update_id", "topic", "origin", "seq", "expires"}``.

        :param ttl: seconds until the update expires (default: the node's).
        """
        query = "" if ttl is None else "?" + urlencode({"ttl": repr(float(ttl))})
        path = "/v1/gossip/" + _segment(topic) + query
        return self._send("POST", path, data).addCallback(self._object)

    def updates(
        self, topic: str | bytes, limit: int | None = None, since: int | None = None
    ) -> defer.Deferred[list[dict[str, Any]]]:
        """``GET /v1/gossip/{topic}``: the live updates the node holds, newest first.

        Each is a dict ``{"update_id", "topic", "origin", "seq", "expires",
        "data"}`` as the API sends it (``data`` in base64).

        :param limit: at most this many (the node's default is 100, its most 1000).
        :param since: only updates whose seq is above this one.
        """

        def listed(reply: _Reply) -> list[dict[str, Any]]:
            updates = self._object(reply).get("updates")
            if not isinstance(updates, list) or not all(isinstance(u, dict) for u in updates):
                raise self._unexpected(reply, "an update list")
            return updates

        path = "/v1/gossip/" + _segment(topic) + _query(limit=limit, since=since)
        return self._send("GET", path).addCallback(listed)

    def unpublish(self, topic: str | bytes, update_id_hex: str) -> defer.Deferred[dict[str, Any]]:
        """``DELETE /v1/gossip/{topic}/{update_id_hex}``: delete an update this node published.

        Fires with ``{"update_id": <the death certificate's id>, "deletes": <the update's>}``.
        """
        path = "/v1/gossip/{}/{}".format(_segment(topic), _segment(update_id_hex))
        return self._send("DELETE", path).addCallback(self._object)

    def listen(
        self, name: str | bytes, on_version: Callable[[dict[str, Any]], object]
    ) -> defer.Deferred[None]:
        """``GET /v1/listen/{name}``: ``on_version(version)`` for each version as it comes.

        ``version`` is the event's JSON object (``key``, ``kind``, ``seq``,
        ``value`` in base64). Fires when the node ends the stream; fails
        with :class:`ApiError` when it cannot be opened or breaks off.
        Cancel the Deferred to stop listening.
        """
        return self._stream("/v1/listen/" + _segment(name), on_version)

    def listen_signed(
        self,
        public_key_hex: str,
        salt: str | bytes,
        on_version: Callable[[dict[str, Any]], object],
    ) -> defer.Deferred[None]:
        """``GET /v1/listen/signed/{public_key_hex}/{salt}``: as :meth:`listen`."""
        path = "/v1/listen/signed/{}/{}".format(_segment(public_key_hex), _segment(salt))
        return self._stream(path, on_version)

    # -- one exchange ----------------------------------------------------------

    def _stream(
        self, path: str, on_version: Callable[[dict[str, Any]], object]
    ) -> defer.Deferred[None]:
        # The timeout covers the opening only: a stream may stay quiet for ever.
        parser = EventParser()
        # What the stream's reader raised (a bad event, or the caller's
        # callback ending the stream): older Twisted reports it wrapped in a
        # ResponseFailed beside the data loss of the aborted body.
        raised: list[BaseException] = []

        def chunk(data: bytes) -> None:
            try:
                read(data)
            except BaseException as e:
                raised.append(e)
                raise

        def read(data: bytes) -> None:
            for event in parser.feed(data):
                if event.type != "value":
                    continue
                try:
                    version = json.loads(event.data)
                except ValueError:
                    version = None
                if not isinstance(version, dict):
                    raise StreamError("an event's data is not a JSON object")
                on_version(version)

        async def opened(response: Any) -> None:
            if response.code != 200:
                body: bytes = await treq.content(response)
                self._ok(_Reply(response.code, response.headers, body))
            await treq.collect(response, chunk)
            if raised:  # older Twisted ends the aborted body without an error
                raise raised[0]

        def explain(failure: Failure) -> Failure:
            error = raised[0] if raised else failure.value
            if isinstance(error, StreamError):
                raise ApiError(
                    "the node's API at {} sent a broken event stream: {}".format(self.url, error)
                )
            if raised and raised[0] is not failure.value:
                raise raised[0]
            return failure

        return (
            self._send("GET", path, stream=True)
            .addCallback(lambda response: defer.Deferred.fromCoroutine(opened(response)))
            .addErrback(explain)
            .addErrback(self._explain_late)
        )

    def _explain_late(self, failure: Failure) -> Failure:
        if isinstance(failure.value, (ApiError, defer.CancelledError)):
            return failure
        explained = self._explain(failure, False)
        if explained is not None:
            raise explained
        return failure

    def _send(
        self, method: str, path: str, body: bytes | None = None, stream: bool = False
    ) -> defer.Deferred[Any]:
        # With ``stream``, fires with the response as soon as its head came.
        timed_out = [False]
        d = defer.Deferred.fromCoroutine(self._exchange(method, path, body, stream))

        def give_up() -> None:
            timed_out[0] = True
            d.cancel()

        timer = self.reactor.callLater(self.timeout, give_up)

        def finished(result: _Reply | Failure) -> _Reply | Failure:
            if timer.active():
                timer.cancel()
            if isinstance(result, Failure) and not isinstance(result.value, ApiError):
                explained = self._explain(result, timed_out[0])
                if explained is not None:
                    raise explained
            return result

        return d.addBoth(finished)

    async def _exchange(
        self, method: str, path: str, body: bytes | None, stream: bool = False
    ) -> Any:
        accept = b"text/event-stream" if stream else b"application/json, application/octet-stream"
        headers = Headers({b"Accept": [accept]})
        if self._token is not None:
            headers.addRawHeader(b"Authorization", "Bearer {}".format(self._token).encode("ascii"))
        # No redirects: they would carry the token to wherever they point.
        response = await self._http.request(
            method, self.url + path, data=body, headers=headers, allow_redirects=False
        )
        if stream:
            return response
        content = await treq.content(response)
        return _Reply(response.code, response.headers, content)

    def _explain(self, failure: Failure, timed_out: bool) -> ApiError | None:
        where = "the node's API at {}".format(self.url)
        if timed_out:
            return ApiError("{} did not answer within {:g} s".format(where, self.timeout))
        e = failure.value
        if isinstance(e, error.ConnectionRefusedError):
            return ConnectionRefused(
                "cannot reach {}: connection refused — is the daemon running?".format(where)
            )
        if isinstance(e, error.DNSLookupError):
            return ApiError("cannot reach {}: its host name does not resolve".format(where))
        if isinstance(e, error.ConnectError):
            return ApiError("cannot reach {}: {}".format(where, e.osError or type(e).__name__))
        if isinstance(e, SchemeNotSupported):  # https without pyOpenSSL installed
            return ApiError("cannot reach {}: {}".format(where, e))
        if isinstance(e, (ResponseFailed, RequestTransmissionFailed, error.ConnectionLost)):
            return ApiError(
                "the connection to {} broke before its reply was complete".format(where)
            )
        return None  # a bug, not a network problem: the caller reports it as such

    # -- reading replies -------------------------------------------------------

    def _message(self, reply: _Reply) -> str:
        try:
            found = json.loads(reply.body)
        except ValueError:
            return ""
        message = found.get("error") if isinstance(found, dict) else None
        return message if isinstance(message, str) else ""

    def _seq(self, reply: _Reply) -> int | None:
        seq = reply.headers.getRawHeaders(b"dhtkit-seq", [b""])[0]
        return int(seq) if seq.isdigit() and len(seq) <= 20 else None

    def _ok(self, reply: _Reply) -> _Reply:
        if 200 <= reply.status < 300:
            return reply
        message = self._message(reply)
        if not message:
            # Every error of a dhtkit node says why: this is another server.
            raise self._unexpected(reply, "a dhtkit error")
        if reply.status == 410:
            raise Deleted(message, self._seq(reply))
        raise ApiError(message, reply.status)

    def _object(self, reply: _Reply) -> dict[str, Any]:
        self._ok(reply)
        try:
            found = json.loads(reply.body)
        except ValueError:
            found = None
        if not isinstance(found, dict):
            raise self._unexpected(reply, "a JSON object")
        return found

    def _unexpected(self, reply: _Reply, wanted: str) -> ApiError:
        message = "the node's API at {} answered without {} (HTTP status {}): is it a dhtkit node?"
        return ApiError(message.format(self.url, wanted, reply.status), reply.status)
