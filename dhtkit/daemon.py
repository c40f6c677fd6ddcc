"""The pieces of the daemon around a node: its data directory's lock, and its HTTP API.

:func:`dhtkit.tap.makeService` puts them in one ``MultiService``: first a
:class:`DataDirLock`, so that a second daemon on the same directory stops
before it opens anything, then the node's service, then an
:class:`HttpApiService` that serves the node's API and records its URL in
the data directory for the ``dhtkit`` command.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.lockfile import FilesystemLock

from dhtkit.datadir import LOCK_FILE, forget_api_url, write_api_url


class DaemonError(Exception):
    """The daemon cannot start; the message says why and what to do."""


class DataDirLock(Service):
    """Holds ``dhtkit.lock`` in the data directory while the daemon runs.

    The lock names the holder's pid, and a lock left by a process that no
    longer exists is taken over, so a crash never locks a directory for good.
    """

    _log = Logger()

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self._lock: FilesystemLock | None = None

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Create the directory (mode 0700) and take the lock.

        :raises DaemonError: another daemon holds it.
        """
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.data_dir / LOCK_FILE
        lock = FilesystemLock(str(path))  # type: ignore[no-untyped-call]
        if not lock.lock():  # type: ignore[no-untyped-call]
            try:
                holder = "process {}".format(os.readlink(path))
            except OSError:
                holder = "another process"
            raise DaemonError(
                "{} holds {} for another dhtkit daemon; stop it, or give this one its "
                "own --data-dir".format(holder, path)
            )
        self._lock = lock
        # Left by a daemon that was killed: nothing listens there any more.
        forget_api_url(self.data_dir)
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> None:  # noqa: N802 (Twisted's name)
        """Release the lock."""
        super().stopService()  # type: ignore[no-untyped-call]
        lock, self._lock = self._lock, None
        if lock is not None and lock.locked:
            lock.unlock()  # type: ignore[no-untyped-call]


def url_of(port: IListeningPort) -> str | None:
    """The base URL a local client reaches ``port`` at (None if it is not TCP).

    A port on every interface is reached through loopback.
    """
    host = port.getHost()
    if isinstance(host, IPv4Address):
        address = "127.0.0.1" if host.host == "0.0.0.0" else host.host  # noqa: S104
        return "http://{}:{}".format(address, host.port)
    if isinstance(host, IPv6Address):
        address = "::1" if host.host == "::" else host.host
        return "http://[{}]:{}".format(address, host.port)
    return None


class HttpApiService(Service):
    """Serves a site on an endpoint and records its URL in the data directory.

    :param endpoint: where to listen.
    :param make_site: builds the site (or the factory that guards it,
        :func:`dhtkit.web.make_api_factory`) once the node runs (the node's
        service starts before this one).
    :param data_dir: where ``api.url`` is written, and removed at stop.
    """

    _log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        make_site: Callable[[], Factory[Any]],
        data_dir: str | os.PathLike[str],
    ) -> None:
        self.endpoint = endpoint
        self.make_site = make_site
        self.data_dir = Path(data_dir)
        self.port: IListeningPort | None = None
        self._listening: defer.Deferred[Any] | None = None

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Listen; a TCP or UNIX endpoint that cannot listen raises at once.

        :raises CannotListenError: the port is taken, or the address is not ours.
        """
        outcome: list[Any] = []
        self._listening = self.endpoint.listen(self.make_site())
        self._listening.addBoth(outcome.append)
        if outcome and isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        super().startService()  # type: ignore[no-untyped-call]
        if outcome:
            self._listened(outcome[0])
        else:  # an endpoint that listens later (e.g. one that resolves a name first)
            self._listening.addCallback(self._listened)
            self._listening.addErrback(self._cannot_listen)

    def _cannot_listen(self, failure: Failure) -> None:
        self._log.failure("the HTTP API cannot listen", failure)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        url = url_of(port)
        if url is not None:
            write_api_url(self.data_dir, url)
        self._log.info("HTTP API at {url}", url=url if url is not None else str(port.getHost()))
        return port

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 (Twisted's name)
        """Stop listening and remove ``api.url``."""
        super().stopService()  # type: ignore[no-untyped-call]
        forget_api_url(self.data_dir)
        port, self.port = self.port, None
        if port is None:
            if self._listening is not None:
                self._listening.cancel()
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening).addCallback(lambda _: None)
