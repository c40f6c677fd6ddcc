"""Slowloris against a real daemon: is the HTTP API still answered, and how fast?

    python benchmarks/http_slowloris.py [--slow 400] [--fd-limit 256] [--duration 30]
        [--interval 5] [--source 127.0.0.2] [--json]

One ``twistd -n dhtkit`` daemon runs on 127.0.0.1 with its open-file limit
lowered to ``--fd-limit`` (so that the attack needs hundreds of connections,
not tens of thousands). The attacker opens ``--slow`` connections from
``--source`` (an address of 127.0.0.0/8), each sending the head of a request
and then one byte every ``--interval`` seconds, never ending it; a connection
the server closes is opened again at once, as a slowloris client does. Every
2 s for ``--duration`` seconds a legitimate client on 127.0.0.1 asks
``GET /v1/status`` (giving up after 3 s). The figures: how many of those
requests were answered and their latency, the file descriptors the daemon
held (from /proc), and how many of the attacker's connections the server
closed. Linux only (/proc); all traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
HEAD = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n"


def free_port_pair() -> int:
    """A UDP port p with TCP p + 1 free (the daemon's default API port)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free pair of ports")


def start_daemon(data_dir: Path, port: int, fd_limit: int) -> subprocess.Popen[bytes]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = ["-n", "--pidfile", "", "dhtkit", "--port", str(port), "--data-dir", str(data_dir)]
    log = open(data_dir.parent / "twistd.log", "wb")
    process = subprocess.Popen(
        [*TWISTD, *args],
        cwd=data_dir.parent,  # python -c puts the working directory first on sys.path
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=limit,
    )
    deadline = time.monotonic() + 60
    while not (data_dir / "api.url").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the daemon did not start; see " + str(log.name))
        time.sleep(0.1)
    return process


def open_fds(pid: int) -> int:
    return len(os.listdir("/proc/{}/fd".format(pid)))


class Attacker:
    """``count`` slow connections from ``source``, reopened when the server closes one."""

    def __init__(self, port: int, source: str, count: int) -> None:
        self.port, self.source, self.count = port, source, count
        self.sockets: list[socket.socket] = []
        self.closed_by_server = 0
        self.failed_connects = 0

    def _open(self) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.bind((self.source, 0))
        err = s.connect_ex(("127.0.0.1", self.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self.failed_connects += 1
            return
        self.sockets.append(s)

    def fill(self) -> None:
        while len(self.sockets) < self.count:
            self._open()

    def trickle(self, first: bool = False) -> None:
        """Send the head (first time) or one more byte; drop what the server closed."""
        alive = []
        for s in self.sockets:
            try:
                s.send(HEAD if first else b"X")
                alive.append(s)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.ENOTCONN, errno.EINPROGRESS):
                    alive.append(s)  # not connected yet: the backlog holds it
                else:
                    self.closed_by_server += 1
                    s.close()
        self.sockets = alive

    def reap(self) -> None:
        """Forget the connections the server has closed (readable with no data)."""
        if not self.sockets:
            return
        with selectors.DefaultSelector() as selector:  # epoll: no FD_SETSIZE limit
            for s in self.sockets:
                selector.register(s, selectors.EVENT_READ)
            readable = [key.fileobj for key, _ in selector.select(0)]
        for s in readable:
            assert isinstance(s, socket.socket)
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                self.closed_by_server += 1
                self.sockets.remove(s)
                s.close()

    def close(self) -> None:
        for s in self.sockets:
            s.close()
        self.sockets = []


def legit_status(port: int, timeout: float = 3.0) -> float | None:
    """Seconds to get 200 from /v1/status, or None if not answered within ``timeout``."""
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(max(0.01, timeout - (time.monotonic() - start)))
            s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    return time.monotonic() - start if data.startswith(b"HTTP/1.1 200") else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.slow + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        port = free_port_pair()
        daemon = start_daemon(data_dir, port, args.fd_limit)
        api = port + 1
        attacker = Attacker(api, args.source, args.slow)
        try:
            baseline = [legit_status(api) for _ in range(5)]
            fds_idle = open_fds(daemon.pid)
            attacker.fill()
            time.sleep(0.5)
            attacker.trickle(first=True)
            latencies: list[float | None] = []
            fds: list[int] = []
            start = time.monotonic()
            next_byte = start + args.interval
            while time.monotonic() - start < args.duration:
                attacker.reap()
                attacker.fill()
                if time.monotonic() >= next_byte:
                    attacker.trickle()
                    next_byte += args.interval
                fds.append(open_fds(daemon.pid))
                asked = time.monotonic()
                latencies.append(legit_status(api))
                time.sleep(max(0.0, 2.0 - (time.monotonic() - asked)))
        finally:
            attacker.close()
            daemon.terminate()
            daemon.wait(30)
    answered = [t for t in latencies if t is not None]
    ok_base = [t for t in baseline if t is not None]
    return {
        "slow_connections": args.slow,
        "daemon_fd_limit": args.fd_limit,
        "attacker_source": args.source,
        "baseline_p50_ms": round(1000 * statistics.median(ok_base), 2) if ok_base else None,
        "requests": len(latencies),
        "answered": len(answered),
        "answered_p50_ms": round(1000 * statistics.median(answered), 2) if answered else None,
        "answered_max_ms": round(1000 * max(answered), 2) if answered else None,
        "daemon_fds_idle": fds_idle,
        "daemon_fds_max": max(fds) if fds else None,
        "attacker_connections_closed_by_server": attacker.closed_by_server,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=400, help="slow connections (at most 2000)")
    parser.add_argument("--fd-limit", type=int, default=256, help="the daemon's open-file limit")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds (at most 300)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between bytes")
    parser.add_argument("--source", default="127.0.0.2", help="the attacker's address")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.slow = max(1, min(args.slow, 2000))
    args.duration = max(2.0, min(args.duration, 300.0))
    if not args.source.startswith("127."):
        parser.error("--source must be in 127.0.0.0/8")
    figures = run(args)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print("{:<40} {}".format(name, value))


if __name__ == "__main__":
    main()
