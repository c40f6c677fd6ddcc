"""Hosts in Linux network namespaces, joined by a bridge, for multi-host tests.

Each :class:`NetnsLab` makes its own namespaces (names carry the process id
and a per-process counter, so test runs side by side never share one), a
bridge in a namespace of its own, and one veth pair per host, with addresses
(10.77.0.x/24 unless told otherwise) that exist only inside those
namespaces. Nothing is created in the root namespace but the veth pairs on
their way in, and everything is deleted on close; :func:`clean_leftovers`
deletes what a run that crashed left behind. It needs root and iproute2;
:func:`unavailable` says why it cannot run, for a clear skip.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

SUBNET = "10.77.0"
#: Every namespace and veth name starts with these, then the owner's pid in hex.
_NAMESPACE_PREFIX = "dhtkit-"
_VETH_PREFIX = "dk"
_OWNED = re.compile(r"^(?:dhtkit-(?:probe-)?|dk)([0-9a-f]+)x")
_labs = itertools.count()


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
    probe = "{}probe-{:x}x".format(_NAMESPACE_PREFIX, os.getpid())
    try:
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except (subprocess.CalledProcessError, OSError) as e:
        return "cannot create a network namespace: {}".format(getattr(e, "stderr", e))
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers() -> list[str]:
    """Delete the namespaces and veth ends of labs whose process is gone.

    A run killed before its finalizers ran (SIGKILL, a CI timeout) leaves
    them behind. Names carry the owner's pid, so the labs of runs still
    going (parallel tox environments) are left alone. Returns what went.
    """
    gone = []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in listed.stdout.splitlines():
        name = line.split(" ", 1)[0]
        owner = _OWNED.match(name)
        if name.startswith(_NAMESPACE_PREFIX) and owner and not _alive(int(owner.group(1), 16)):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            gone.append(name)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False)
    for line in links.stdout.splitlines():
        fields = line.split(": ", 2)
        name = fields[1].split("@", 1)[0] if len(fields) > 1 else ""
        owner = _OWNED.match(name)
        if name.startswith(_VETH_PREFIX) and owner and not _alive(int(owner.group(1), 16)):
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
            gone.append(name)
    return gone


class Host:
    """One namespace with one address on the lab's bridge."""

    def __init__(self, lab: NetnsLab, index: int) -> None:
        self.name = "{}{}-h{}".format(_NAMESPACE_PREFIX, lab.tag, index)
        self.address = "{}.{}".format(lab.subnet, index + 1)
        self._veth = "{}{}h{}".format(_VETH_PREFIX, lab.tag, index)
        self._peer = "{}{}b{}".format(_VETH_PREFIX, lab.tag, index)
        assert len(self._veth) <= 15, "interface names have at most 15 characters"
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

    def attach(self, bridge: str) -> None:
        """Move this host's cable to another bridge of the lab (it stays up)."""
        _ip("-n", self._lab.bridge_ns, "link", "set", self._peer, "master", bridge)


class NetnsLab:
    """A bridge and ``count`` hosts; use as a context manager.

    :param subnet: the first three octets of the hosts' addresses; they
        exist only inside the lab's namespaces, so labs side by side may
        share one, but a test may still pick its own.
    """

    def __init__(self, count: int, subnet: str = SUBNET) -> None:
        # The full pid (not a part of it), so that clean_leftovers can tell
        # whose lab this is; the counter keeps two labs of one process apart.
        self.tag = "{:x}x{}".format(os.getpid(), next(_labs))
        self.subnet = subnet
        self.bridge_ns = "{}{}-br".format(_NAMESPACE_PREFIX, self.tag)
        self.hosts: list[Host] = []
        self._bridges = ["br0"]
        _ip("netns", "add", self.bridge_ns)
        try:
            _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
            for index in range(count):
                self.hosts.append(Host(self, index))
        except BaseException:
            self.close()
            raise

    def partition(self, *sides: Sequence[Host]) -> None:
        """Split the network: each side after the first gets a bridge of its own.

        Hosts on one side still reach each other; nothing crosses sides
        until :meth:`heal`.
        """
        for number, side in enumerate(sides[1:], start=1):
            bridge = "br{}".format(number)
            if bridge not in self._bridges:
                _ip("-n", self.bridge_ns, "link", "add", bridge, "type", "bridge")
                _ip("-n", self.bridge_ns, "link", "set", bridge, "up")
                self._bridges.append(bridge)
            for host in side:
                host.attach(bridge)

    def heal(self) -> None:
        """Put every host back on the first bridge."""
        for host in self.hosts:
            host.attach("br0")

    def close(self) -> None:
        """Delete every namespace (their veth ends go with them)."""
        for name in [h.name for h in self.hosts] + [self.bridge_ns]:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.hosts = []

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
