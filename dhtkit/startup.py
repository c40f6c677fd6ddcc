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

import errno
import os
import re
import socket
from pathlib import Path

from twisted.application.service import MultiService
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

#: Processes looked at for the holder of a port: past this many, it is not named.
_MAX_PROCESSES = 4096


class PortUnavailable(CannotListenError):
    """A port the node needs cannot be listened on; its message says which and why.

    :ivar kind: ``"UDP"`` (the node's port) or ``"HTTP"`` (its API's TCP port).
    """

    def __init__(self, kind: str, interface: str, port: int, error: BaseException) -> None:
        super().__init__(interface, port, error)  # type: ignore[no-untyped-call]
        self.kind = kind

    def __str__(self) -> str:
        where = "{} port {} on {}".format(self.kind, self.port, self.interface or "every address")
        code = getattr(self.socketError, "errno", None)
        if code == errno.EADDRINUSE:
            holder = port_holder("udp" if self.kind == "UDP" else "tcp", self.port)
            by = " by {}".format(holder) if holder else ""
            option = "--port" if self.kind == "UDP" else "--http"
            return "{} is in use{}: stop that process, or give another {}".format(where, by, option)
        if code == errno.EACCES:
            return "{}: permission denied (ports below 1024 need privileges)".format(where)
        if code == errno.EADDRNOTAVAIL:
            return "{}: not an address of this machine".format(where)
        reason = getattr(self.socketError, "strerror", None) or str(self.socketError)
        return "cannot listen on {}: {}".format(where, reason)


def port_holder(protocol: str, port: int) -> str | None:
    """``process PID (NAME)`` holding ``port`` (``"udp"`` or listening ``"tcp"``), if found.

    Linux only, and only processes this user may look into; None otherwise.
    """
    inodes = set()
    for table in (protocol, protocol + "6"):
        try:
            lines = Path("/proc/net", table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or not fields[1].rpartition(":")[2]:
                continue
            try:
                local = int(fields[1].rpartition(":")[2], 16)
            except ValueError:
                continue
            listening = protocol == "udp" or fields[3] == "0A"
            if local == port and listening and fields[9] != "0":
                inodes.add("socket:[{}]".format(fields[9]))
    if not inodes:
        return None
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()][:_MAX_PROCESSES]
    except OSError:
        return None
    for pid in pids:
        try:
            fds = os.listdir("/proc/{}/fd".format(pid))
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/{}/fd/{}".format(pid, fd))
            except OSError:
                continue
            if target in inodes:
                return "process {}{}".format(pid, _name_of(pid))
    return None


def _name_of(pid: str) -> str:
    try:
        argv = Path("/proc", pid, "cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    words = [w.decode("utf-8", "replace") for w in argv if w][:6]
    text = " ".join(words)
    if len(text) > 80:
        text = text[:77] + "..."
    return " ({})".format(text) if text else ""


def check_udp_port(interface: str, port: int) -> None:
    """Raise :class:`PortUnavailable` if the node could not listen on UDP ``port``.

    A probe: the socket is closed at once (port 0 always works).
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((interface, port))
        except OSError as e:
            raise PortUnavailable("UDP", interface, port, e) from None


def check_tcp_port(interface: str, port: int) -> None:
    """Raise :class:`PortUnavailable` if the HTTP API could not listen on TCP ``port``.

    Bound as Twisted binds a listening port (SO_REUSEADDR), then closed.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((interface, port))
            probe.listen(1)
        except OSError as e:
            raise PortUnavailable("HTTP", interface, port, e) from None


def describe(error: BaseException) -> str | None:
    """The one line that says why the start failed, or None for an unexpected error."""
    # Imported here: this module sits below the modules whose errors it reads.
    from dhtkit.daemon import DaemonError
    from dhtkit.identity import IdentityError
    from dhtkit.storage import StorageError

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
    import sqlite3

    from dhtkit.storage import StorageError

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
    from dhtkit.daemon import DataDirLock
    from dhtkit.identity import Identity
    from dhtkit.nodesocket import IDENTITY_FILE

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
