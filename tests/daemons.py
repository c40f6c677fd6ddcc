"""Real ``twistd`` processes for the integration tests: start, wait, stop, read their logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import dhtkit

#: twistd itself, run by this interpreter (no console script needed).
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
#: The dhtkit command, run by this interpreter.
DHTKIT = [sys.executable, "-m", "dhtkit.cli"]


def child_env() -> dict[str, str]:
    """This environment, with the dhtkit being tested (installed or not) importable."""
    env = dict(os.environ)
    here = str(Path(dhtkit.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


def free_udp_port_with_tcp_after() -> int:
    """A UDP port p, free, with TCP p + 1 free too (the daemon's default API port)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free pair of ports found")


class Daemon:
    """One ``twistd -n`` process; its output goes to ``log`` in its directory."""

    def __init__(self, workdir: Path, args: Sequence[str]) -> None:
        self.workdir = workdir
        self.args = list(args)
        self.log = workdir / "twistd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [*TWISTD, "-n", "--pidfile", "", *self.args],
                cwd=self.workdir,
                env=child_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, path: Path, timeout: float = 30.0) -> None:
        """Wait until ``path`` exists (the daemon wrote it), or fail with the log."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError("twistd exited early:\n" + self.output())
            if time.monotonic() > deadline:
                raise AssertionError("{} never appeared:\n{}".format(path, self.output()))
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM; the exit status, 0 if the daemon shut down cleanly.

        twistd ends a clean shutdown on SIGTERM by raising the signal again,
        as the shell expects of a process stopped by a signal: that status
        counts as 0 here when the log says the server shut down.
        """
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("twistd ignored SIGTERM:\n" + self.output()) from None
        if status == -signal.SIGTERM and self.output().rstrip().endswith("Server Shut Down."):
            return 0
        return status


def dhtkit_command(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the ``dhtkit`` command in a process of its own."""
    return subprocess.run(
        [*DHTKIT, *args],
        input=stdin,
        capture_output=True,
        env=child_env(),
        timeout=60,
        check=False,
    )
