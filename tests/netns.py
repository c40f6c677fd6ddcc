"""Hosts in Linux network namespaces, joined by a bridge, for multi-host tests.

Each :class:`NetnsLab` makes its own namespaces (names carry the process id),
a bridge in a namespace of its own, and one veth pair per host, with
addresses 10.77.0.x/24 that exist only inside those namespaces. Nothing is
created in the root namespace but the veth pairs on their way in, and
everything is deleted on close. It needs root and iproute2; :func:`unavailable`
says why it cannot run, for a clear skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

SUBNET = "10.77.0"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = "dhtkit-probe-{}".format(os.getpid())
    try:
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except (subprocess.CalledProcessError, OSError) as e:
        return "cannot create a network namespace: {}".format(getattr(e, "stderr", e))
    return None


class Host:
    """One namespace with one address on the lab's bridge."""

    def __init__(self, lab: NetnsLab, index: int) -> None:
        self.name = "dhtkit-{}-h{}".format(lab.tag, index)
        self.address = "{}.{}".format(SUBNET, index + 1)
        self._veth = "dk{}h{}".format(lab.tag, index)[:15]
        self._peer = "dk{}b{}".format(lab.tag, index)[:15]
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip("link", "add", self._veth, "type", "veth", "peer", "name", self._peer)
        _ip("link", "set", self._veth, "netns", self.name)
        _ip("link", "set", self._peer, "netns", lab.bridge_ns)
        _ip("-n", lab.bridge_ns, "link", "set", self._peer, "master", "br0", "up")
        _ip("-n", self.name, "addr", "add", self.address + "/24", "dev", self._veth)
        _ip("-n", self.name, "link", "set", self._veth, "up")
        self._lab = lab

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[str]:
        """Start a process inside this host's namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], text=True, **kw)

    def run(
        self, argv: list[str], timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a process inside this host's namespace to completion."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kw,
        )

    def cut(self) -> None:
        """Unplug this host from the bridge (its end stays up, silently)."""
        _ip("-n", self._lab.bridge_ns, "link", "set", self._peer, "down")

    def plug(self) -> None:
        """Plug this host back into the bridge."""
        _ip("-n", self._lab.bridge_ns, "link", "set", self._peer, "up")


class NetnsLab:
    """A bridge and ``count`` hosts; use as a context manager."""

    def __init__(self, count: int) -> None:
        self.tag = "{:x}".format(os.getpid() % 0xFFFF)
        self.bridge_ns = "dhtkit-{}-br".format(self.tag)
        self.hosts: list[Host] = []
        _ip("netns", "add", self.bridge_ns)
        try:
            _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
            for index in range(count):
                self.hosts.append(Host(self, index))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Delete every namespace (their veth ends go with them)."""
        for name in [h.name for h in self.hosts] + [self.bridge_ns]:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.hosts = []

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
