"""Why a node cannot start, in one line that names the thing.

A port in use (which one, and the process holding it where the system
tells), a data directory locked by another daemon (its pid), a damaged
SQLite file or a bad key file (which file): each is a sentence for the
operator, not a traceback. :func:`describe` turns the errors the start-up
raises into that sentence; :func:`preflight` checks, before ``twistd``
forks or starts logging, what would stop the daemon, so the sentence
reaches the terminal it was started from.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from twisted.application.service import MultiService
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from dhtkit.daemon import DaemonError, DataDirLock
from dhtkit.identity import Identity, IdentityError
from dhtkit.nodesocket import IDENTITY_FILE
from dhtkit.ports import PortUnavailable, check_tcp_port, check_udp_port
from dhtkit.storage import StorageError

__all__ = [
    "PortUnavailable",
    "StartupError",
    "StartupGuard",
    "describe",
    "exit_unless_startable",
    "preflight",
    "tcp_address",
]


def describe(error: BaseException) -> str | None:
    """The one line that says why the start failed, or None for an unexpected error."""
    if isinstance(error, CannotListenError) and not isinstance(error, PortUnavailable):
        # Only the node's UDP port says which it is: any other is the HTTP API's.
        error = PortUnavailable("HTTP", error.interface, error.port, error.socketError)
    if isinstance(error, (PortUnavailable, DaemonError, IdentityError, StorageError)):
        return " ".join(str(error).split())
    if isinstance(error, OSError) and error.filename is not None:
        # Of a link or a rename, the second name is the one made (a lock file).
        name = error.filename2 if error.filename2 is not None else error.filename
        return "cannot use {}: {}".format(os.fsdecode(name), error.strerror or error)
    return None


def _check_store(path: Path) -> None:
    # Read-only, and only the schema: whatever would make the store refuse
    # to open is found without writing (the daemon migrates it later).
    try:
        db = sqlite3.connect("file:{}?mode=ro".format(path), uri=True)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.Error as e:
        raise StorageError("{} is not a readable SQLite database: {}".format(path, e)) from None


def tcp_address(description: str) -> tuple[str, int] | None:
    """The interface and port of a ``tcp:`` or ``tcp6:`` endpoint description, else None."""
    parts = [part.replace("\\", "") for part in re.split(r"(?<!\\):", description)]
    if parts[0] not in ("tcp", "tcp6"):
        return None
    keywords = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    positional = [part for part in parts[1:] if "=" not in part]
    port = keywords.get("port", positional[0] if positional else "")
    default = "::" if parts[0] == "tcp6" else "0.0.0.0"  # noqa: S104 (Twisted's default)
    if not port.isdigit():
        return None
    return keywords.get("interface", default), int(port)


def preflight(
    data_dir: Path, interface: str, port: int, http: str | None, store_file: str = "dhtkit.sqlite"
) -> None:
    """Check what would stop a daemon from starting, without keeping anything.

    The data directory's lock (taken and released), the key file and the
    SQLite file when they exist (nothing is created), the UDP port and the HTTP API's TCP port.

    :raises DaemonError: another daemon holds the data directory.
    :raises IdentityError: the key file is not a dhtkit key.
    :raises StorageError: the SQLite file is damaged.
    :raises PortUnavailable: a port cannot be listened on.
    :raises OSError: a file cannot be read (its name is in the error).
    """
    if data_dir.is_dir():  # else nobody holds it, and it is made at the start
        lock = DataDirLock(data_dir)
        lock.startService()  # type: ignore[no-untyped-call]
        lock.stopService()  # type: ignore[no-untyped-call]
    if (data_dir / IDENTITY_FILE).exists():
        Identity.from_file(data_dir / IDENTITY_FILE)
    if (data_dir / store_file).exists():
        _check_store(data_dir / store_file)
    check_udp_port(interface, port)
    address = tcp_address(http) if http is not None else None
    if address is not None:
        check_tcp_port(*address)


def exit_unless_startable(data_dir: Path, interface: str, port: int, http: str | None) -> None:
    """:func:`preflight`, ending the process with one line on stderr (status 1) if it fails."""
    try:
        preflight(data_dir, interface, port, http)
    except Exception as e:
        line = describe(e)
        if line is None:
            raise
        raise SystemExit("dhtkit: error: {}".format(line)) from None


class StartupError(Exception):
    """The start failed for the reason the message gives (one line)."""


class StartupGuard(MultiService):
    """A daemon's top service: a start-up failure that :func:`describe` knows
    is reported as that one line.

    For twistd: :func:`preflight` finds most failures before it forks; this
    catches what changed in between (another process took the port).

    :param daemon: whether twistd runs as a daemon. In the foreground, the
        process exits with the line on stderr (status 1). A daemon must
        raise an exception, which twistd passes to the process that started
        it (it would wait for ever otherwise): a :class:`StartupError`
        with the line, which that process prints.
    """

    _log = Logger()

    def __init__(self, daemon: bool = False) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.daemon = daemon

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Start every child; a known failure is reported in its one line."""
        try:
            super().startService()  # type: ignore[no-untyped-call]
        except Exception as e:
            line = describe(e)
            if line is None:
                raise
            if self.daemon:
                # twistd passes on 100 bytes at most: the log has it all.
                self._log.critical("dhtkit: error: {line}", line=line)
                raise StartupError(line) from None
            raise SystemExit("dhtkit: error: {}".format(line)) from None
