"""The ports a node listens on: whether they are free, and who holds one that is not.

:class:`PortUnavailable` is the ``CannotListenError`` of a node's UDP port
or its HTTP API's TCP port, with a message that names the port and, on
Linux, the process holding it (:func:`port_holder`); :func:`check_udp_port`
and :func:`check_tcp_port` find out before anything listens.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from twisted.internet.error import CannotListenError

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
