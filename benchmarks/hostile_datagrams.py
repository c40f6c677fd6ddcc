"""What a hostile datagram costs a node before and after authentication.

Three figures, each beside its baseline in the same process:

* CPU per datagram for classes of hostile input: junk, semantic tags that
  are costly to build (regular expressions, MIME messages, bignums,
  decimals), deep nesting, long arrays and maps. The baseline is the decoder
  as it was: ``cbor2.loads`` with every semantic tag built, then the checks.
  Measured both for ``wire.decode`` alone and through a whole
  ``RPCProtocol.datagramReceived``.
* The memory one authenticated peer can make a node keep by flooding it with
  sequence numbers in one replay-window generation (the old window kept every
  number of a two-second generation; the new one keeps 64).
* The bytes a node sends to a forged source address per byte the attacker
  sent, for a query with a large answer, with return routability and without
  it (the baseline sends the answer wherever the query said it came from).

Run from the repository root: ``python benchmarks/hostile_datagrams.py``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import cbor2
from machine import machine_busy_s  # benchmarks/machine.py
from twisted.internet import task
from twisted.internet.testing import FakeDatagramTransport

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.rpc import RPCProtocol

ALICE = Identity(b"\1" * 32)
BOB = Identity(b"\2" * 32)
NOW = 1_700_000_000.0


def old_decode(data: bytes) -> Any:
    """The decoder before hardening: every tag built, then checked."""
    try:
        outer = cbor2.loads(data)
        body, _ = outer
        fields = cbor2.loads(body)
    except Exception:
        raise wire.MalformedMessage("undecodable") from None
    if type(fields) is not list or len(fields) != 8:
        raise wire.MalformedMessage("not eight")
    wire.check_plain(fields[4])
    return fields


def body_with(payload_cbor: bytes) -> bytes:
    """A signed query whose payload is the given raw CBOR."""
    body = cbor2.dumps([1, 0, 1, "ping", None, ALICE.public_key, ALICE.node_id, 1])
    body = body.replace(b"\xf6", payload_cbor, 1)
    return cbor2.dumps([body, b"\0" * 64])


def fill(item: bytes, budget: int = 1250) -> bytes:
    """A CBOR array of as many copies of ``item`` as fit in ``budget`` bytes."""
    count = max(1, budget // len(item))
    head = cbor2.dumps([0] * count)[:-count]  # the array header alone
    return head + item * count


def samples() -> dict[str, bytes]:
    rng = random.Random(1)
    # Distinct patterns: the re module caches what it compiled.
    regexes = [
        cbor2.dumps(cbor2.CBORTag(35, "(a|b)*c{{2,{}}}[x-z]+".format(n))) for n in range(3, 60)
    ]
    mime = cbor2.dumps(cbor2.CBORTag(36, "Content-Type: text/plain\n\n" + "body " * 10))
    good = wire.encode_body(wire.QUERY, 1, "find_node", [b"t" * 20], ALICE, int(NOW * 1e6))
    return {
        "junk": bytes(rng.getrandbits(8) for _ in range(1300)),
        "valid find_node": wire.seal(good, wire.mac(good, wire.session_key(ALICE, BOB.public_key))),
        "tag 35 (regex)": body_with(
            cbor2.dumps([0] * len(regexes))[: -len(regexes)] + b"".join(regexes)
        ),
        "tag 36 (MIME)": body_with(fill(mime)),
        "tag 2 (bignum 10**400)": body_with(fill(cbor2.dumps(10**400))),
        "tag 4 (decimal)": body_with(fill(cbor2.dumps(cbor2.CBORTag(4, [-300, 10**17])))),
        "deep nesting": body_with(b"\x81" * 1200 + b"\x00"),
        "1,200 small ints": body_with(fill(b"\x00", 1200)),
        "400-entry map": body_with(
            b"\xb9\x01\x90" + b"".join(cbor2.dumps(i) + b"\x00" for i in range(400))
        ),
    }


def per_call_us(fn: Callable[[], Any], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / count * 1e6


def swallow(decode: Callable[[bytes], Any], data: bytes) -> Callable[[], None]:
    def run() -> None:
        try:
            decode(data)
        except Exception:
            pass

    return run


def receiver() -> RPCProtocol:
    clock = task.Clock()
    clock.advance(NOW)
    proto = RPCProtocol(BOB, clock, rate=1e12, burst=1e12, handshake_rate=1e12)
    proto.makeConnection(FakeDatagramTransport())
    return proto


def decoding(seconds: float) -> None:
    print("## CPU per hostile datagram (µs), old decoder vs now")
    print()
    print("| datagram | bytes | old decode | decode now | whole receive now |")
    print("|---|---|---|---|---|")
    proto = receiver()
    for name, data in samples().items():
        old = per_call_us(swallow(old_decode, data), seconds)
        new = per_call_us(swallow(wire.decode, data), seconds)
        whole = per_call_us(
            lambda data=data: proto.datagramReceived(data, ("10.0.0.1", 1)), seconds
        )
        print("| {} | {} | {:.1f} | {:.1f} | {:.1f} |".format(name, len(data), old, new, whole))
    print()


def flood_memory(count: int) -> None:
    print("## One authenticated peer flooding sequence numbers 1 µs apart")
    print()
    proto = receiver()
    key = wire.session_key(ALICE, BOB.public_key)
    base = int(NOW * 1e6)
    datagrams = []
    for n in range(count):
        body = wire.encode_body(wire.QUERY, n, "nope", None, ALICE, base + n)
        datagrams.append(wire.seal(body, wire.mac(body, key)))
    proto.transport = FakeDatagramTransport()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n, data in enumerate(datagrams):
        proto.datagramReceived(data, ("10.0.0.1", 1))
        if n % 1000 == 0:
            proto.transport.written.clear()
    proto.transport.written.clear()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    session = proto.sessions.get(ALICE.public_key)
    assert session is not None
    print("- datagrams: {:,}; accepted: {:,}".format(count, proto.stats()["queries_received"]))
    print("- numbers the replay window keeps: {}".format(len(session.recent)))
    print("- memory kept after the flood (all of the RPC layer): {:,} bytes".format(kept))
    print(
        "- the old window (two generations of 2 s each, every number kept) would hold "
        "{:,} numbers: about {:,} bytes as a Python set".format(
            min(count, 2_000_000), _set_bytes(min(count, 2_000_000))
        )
    )
    print()


def _set_bytes(n: int) -> int:
    numbers = set(range(2**50, 2**50 + n))
    return sys.getsizeof(numbers) + n * sys.getsizeof(2**50)


def amplification() -> None:
    print("## Bytes sent to a forged source per byte the attacker sent")
    print()
    print("| answer | query bytes | now: to the victim | factor | baseline factor |")
    print("|---|---|---|---|---|")
    for size in (100, 500, 1000):
        proto = receiver()
        answer = b"x" * size
        proto.register("read", lambda sender, args, answer=answer: answer, idempotent=True)
        attacker = RPCProtocol(ALICE, proto.clock)
        attacker.makeConnection(FakeDatagramTransport())
        bob = Contact.from_key(BOB.public_key, ("10.0.0.2", 4000))
        victim = ("10.9.9.9", 53)
        sent = received = 0
        for _ in range(100):
            attacker.call_contact(bob, "read", b"k" * 20)
            for data, _ in attacker.transport.written:
                sent += len(data)
                proto.datagramReceived(data, victim)
            attacker.transport.written.clear()
        proto.clock.advance(proto.timeout * 2)  # type: ignore[attr-defined]
        for data, addr in proto.transport.written:
            if addr == victim:
                received += len(data)
        # The baseline answered every query where it said it came from.
        body = wire.encode_body(wire.RESPONSE, 1, "", answer, BOB, int(NOW * 1e6))
        baseline = len(wire.seal(body, b"\0" * 16)) * 100
        print(
            "| {} B | {} | {} | {:.2f} | {:.2f} |".format(
                size, sent // 100, received, received / sent, baseline / sent
            )
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    parser.add_argument("--flood", type=int, default=400_000, help="datagrams in the flood")
    args = parser.parse_args()
    busy = machine_busy_s()
    start = time.perf_counter()
    decoding(args.seconds)
    flood_memory(args.flood)
    amplification()
    elapsed = time.perf_counter() - start
    if busy is not None:
        other = machine_busy_s()
        assert other is not None
        print(
            "machine busy: {:.0f}% of one CPU over {:.0f} s".format(
                100 * (other - busy) / elapsed, elapsed
            )
        )


if __name__ == "__main__":
    main()
