"""Real ``twistd`` processes for the integration tests: start, wait, stop, read their logs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dhtkit

if TYPE_CHECKING:
    from tests.netns import Host

#: twistd itself, run by this interpreter (no console script needed).
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
#: The dhtkit command, run by this interpreter.
DHTKIT = [sys.executable, "-m", "dhtkit.cli"]
#: The batch HTTP client that runs inside a namespace.
NETNS_HTTP = [sys.executable, str(Path(__file__).with_name("netns_http.py"))]
#: The UDP port of a daemon in a namespace (its HTTP API is at the next one, on loopback).
NETNS_PORT = 4000


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


class HttpBatch:
    """Calls to one daemon's HTTP API, running in its namespace (see netns_http.py)."""

    def __init__(self, daemon: HostDaemon, calls: list[list[str]], within: float, workers: int):
        self.daemon = daemon
        job = {"data_dir": str(daemon.data_dir), "calls": calls, "within": within}
        job["workers"] = workers
        self.process = daemon.host.popen(
            [*NETNS_HTTP, json.dumps(job)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def done(self) -> bool:
        return self.process.poll() is not None

    def results(self, timeout: float = 600) -> list[dict[str, Any]]:
        """Each call's result: ``ok``, ``status``, ``body``, ``tries``, ``call``."""
        out, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, "netns_http.py failed:\n" + err
        results: list[dict[str, Any]] = json.loads(out)
        return results


class HostDaemon:
    """``twistd -n dhtkit`` inside one namespace, its HTTP API on that host's loopback.

    :param bootstrap: the hosts it joins through on its first start.
    :param extra: more daemon options (``--k 8``, ``--replication 5``...).
    """

    def __init__(
        self,
        host: Host,
        root: Path,
        bootstrap: Host | Sequence[Host] | None,
        protocol: str,
        interface: str,
        extra: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.protocol = protocol
        self.data_dir = root / host.name / "data"
        self.log = root / host.name / "twistd.log"
        self.args = ["dhtkit", "-p", str(NETNS_PORT), "-i", interface, "-d", str(self.data_dir)]
        self.args += ["--protocol", protocol, *extra]
        if bootstrap is None:
            bootstrap = []
        elif not isinstance(bootstrap, Sequence):
            bootstrap = [bootstrap]
        self.bootstrap_args = []
        for other in bootstrap:
            self.bootstrap_args += ["-b", "{}:{}".format(other.address, NETNS_PORT)]
        self.process: subprocess.Popen[str] | None = None

    def launch(self, bootstrap: bool = True) -> None:
        """Start the daemon without waiting; ``bootstrap=False``: only its saved contacts."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        argv = [*TWISTD, "-n", "--pidfile", "", *self.args]
        if bootstrap:
            argv += self.bootstrap_args
        with open(self.log, "a") as out:
            self.process = self.host.popen(
                argv,
                cwd=self.log.parent,
                env=child_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the daemon answers on its HTTP API, or fail with its log."""
        # The same address as a killed predecessor's api.url: only the new daemon answers.
        probe = self.http([["status"]], within=timeout)
        while not probe.done():
            assert self.process is not None
            assert self.process.poll() is None, "twistd exited early:\n" + self.output()
            time.sleep(0.05)
        [status] = probe.results()
        assert status["ok"], "{}: no answer: {}\n{}".format(self.host.name, status, self.output())

    def start(self, bootstrap: bool = True) -> None:
        self.launch(bootstrap)
        self.wait_ready()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait(30)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def http(self, calls: list[list[str]], within: float = 0, workers: int = 4) -> HttpBatch:
        """Start ``calls`` on this daemon's HTTP API (see netns_http.py)."""
        return HttpBatch(self, calls, within, workers)

    def status(self) -> dict[str, Any]:
        [result] = self.http([["status"]]).results()
        assert result["ok"], "{}: {}\n{}".format(self.host.name, result, self.output())
        status: dict[str, Any] = json.loads(result["body"])
        return status

    def contact_addresses(self) -> list[str]:
        """The addresses of the contacts in this daemon's routing state."""
        [result] = self.http([["contacts"]]).results()
        assert result["ok"], "{}: {}\n{}".format(self.host.name, result, self.output())
        return [c["address"] for c in json.loads(result["body"])["contacts"]]

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The dhtkit command, run on this host against this daemon."""
        return self.host.run([*DHTKIT, "--data-dir", str(self.data_dir), *args], env=child_env())

    def contacts(self) -> int:
        count: int = self.status()["contacts"]
        return count

    def wait_for_contacts(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.contacts() < count:
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)
