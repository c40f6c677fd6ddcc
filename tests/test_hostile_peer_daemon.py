"""A lying peer against a real ``twistd -n dhtkit``: reads survive it, bad stores are refused.

The peer is a real dhtkit node in this process, on a real UDP socket on
127.0.0.1, that joined the daemon's network and then lies: it answers
``get`` and ``find_value`` with a valid record whose ttl is 10**400, and it
sends the daemon malformed ``store`` calls, an immutable value whose
content is a name, and a plain write from ten minutes in the future.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.utils import getProcessOutputAndValue

from dhtkit.datadir import API_FILE
from dhtkit.identity import Identity
from dhtkit.kademlia import KademliaOverlay
from dhtkit.keyspace import key_for
from dhtkit.node import DHTNode
from dhtkit.rpc import RemoteError, RPCProtocol, RPCTimeout
from dhtkit.storage import MemoryStore
from dhtkit.values import PlainValue, SignedValue, to_wire
from tests.daemons import DHTKIT, Daemon, child_env, dhtkit_command, free_udp_port_with_tcp_after


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    port = free_udp_port_with_tcp_after()
    args = ["dhtkit", "--port", str(port), "--data-dir", str(tmp_path / "d" / "data")]
    started = Daemon(tmp_path / "d", args)
    started.start()
    started.port = port  # type: ignore[attr-defined]
    try:
        started.wait_for(started.workdir / "data" / API_FILE)
        yield started
    finally:
        started.stop()


async def dhtkit(daemon: Daemon, *args: str) -> tuple[bytes, bytes, int]:
    """The dhtkit command, without blocking the reactor the lying peer runs on."""
    env = child_env()
    out, err, code = await getProcessOutputAndValue(
        sys.executable,
        [*DHTKIT[1:], "--data-dir", str(daemon.workdir / "data"), *args],
        env=env,
        reactor=reactor,
    )
    return out, err, code


@pytest_twisted.ensureDeferred
async def test_a_lying_peer_neither_breaks_reads_nor_fills_the_log(daemon: Daemon) -> None:
    rpc = RPCProtocol(Identity.generate(), reactor)
    port = reactor.listenUDP(0, rpc, interface="127.0.0.1")  # type: ignore[attr-defined]
    overlay = KademliaOverlay(rpc)
    liar = DHTNode(rpc, overlay, MemoryStore())
    overlay.start()
    liar.start()
    try:
        await overlay.join([("127.0.0.1", daemon.port)])  # type: ignore[attr-defined]
        out, err, code = await dhtkit(daemon, "put", "greeting", "hello")
        assert code == 0, err.decode()
        held = liar.store.get(key_for("greeting"))
        assert held is not None  # a two-node network: the liar is a replica
        record = to_wire(held.record)
        # Now it lies: the honest record, with a ttl no float can hold.
        rpc.register("get", lambda sender, args: [record, 10**400])
        rpc.register("find_value", lambda sender, args: ["value", [record, 10**400]])
        for _ in range(3):
            out, err, code = await dhtkit(daemon, "get", "greeting")
            assert (code, out) == (0, b"hello"), err.decode()
        # And it sends malformed stores: each refused with its reason.
        target = overlay.contacts()[0]
        good = to_wire(SignedValue.create(Identity(b"\x03" * 32), b"v", 1))
        bad_salt = [*good[:2], 7, *good[3:]]
        for args in (
            [bad_salt, 60, None, False],
            [good, 2**64 - 1, None, False],
            [good, math.inf, None, False],
            [good, 60, 2**64 - 1, False],
            [[0, 12345], 60, None, False],
        ):
            with pytest.raises(RemoteError) as refused:
                await rpc.call_contact(target, "store", args)
            assert refused.value.code == "malformed"
        # A bignum is no number of the wire format: dropped at decoding, unanswered.
        with pytest.raises(RPCTimeout):
            await rpc.call_contact(target, "store", [good, 10**400, None, False], retries=0)
        out, err, code = await dhtkit(daemon, "get", "greeting")
        assert (code, out) == (0, b"hello"), err.decode()
        # An immutable value whose content is the name does not take the name.
        assert await liar.put_immutable(b"greeting") == 2
        # Nor does a plain write ten minutes ahead of the daemon's clock.
        ahead = PlainValue(key_for("greeting"), b"pinned", int((time.time() + 590) * 1_000_000))
        with pytest.raises(RemoteError) as refused:
            await rpc.call_contact(target, "store", [to_wire(ahead), 60, None, False])
        assert refused.value.code == "clock_skew"
        out, err, code = await dhtkit(daemon, "get", "greeting")
        assert (code, out) == (0, b"hello"), err.decode()
    finally:
        liar.stop()
        overlay.stop()
        await defer.maybeDeferred(port.stopListening)
    assert daemon.stop() == 0
    log = daemon.output()
    assert "Traceback" not in log and "critical" not in log.lower(), log


def test_a_put_that_reaches_no_other_daemon_is_an_error_not_one_replica(tmp_path: Path) -> None:
    ports: list[int] = []
    while len(ports) < 2:
        port = free_udp_port_with_tcp_after()
        if all(abs(port - p) > 1 for p in ports):
            ports.append(port)
    a = Daemon(tmp_path / "a", ["dhtkit", "--port", str(ports[0]), "--data-dir", "data"])
    b = Daemon(
        tmp_path / "b",
        [
            "dhtkit",
            "--port",
            str(ports[1]),
            "--data-dir",
            "data",
            "--bootstrap",
            "127.0.0.1:{}".format(ports[0]),
        ],
    )
    try:
        for d in (a, b):
            d.start()
            d.wait_for(d.workdir / "data" / API_FILE)
        data_a = str(a.workdir / "data")
        deadline = time.monotonic() + 30
        while (
            b'"contacts": 1' not in dhtkit_command("--data-dir", data_a, "status", "--json").stdout
        ):
            assert time.monotonic() < deadline, a.output()
            time.sleep(0.2)
        put = dhtkit_command("--data-dir", data_a, "put", "before", "ok")
        assert put.returncode == 0, put.stderr.decode()
        assert b.stop() == 0
        # a's only other node is gone: its own copy is no majority.
        put = dhtkit_command("--data-dir", data_a, "put", "greeting", "hello")
        assert put.returncode == 1, put.stdout.decode()
        assert b"reached 1 of" in put.stderr and b"needed" in put.stderr
        assert b"Traceback" not in put.stderr
    finally:
        b.stop()
        assert a.stop() == 0
    assert "Traceback" not in a.output(), a.output()
