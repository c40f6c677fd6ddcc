"""Request/reply round trips per second: dhtkit's RPC against PyPI ``kademlia``.

Run from the repository root::

    python benchmarks/rpc_throughput.py [--duration 3] [--inflight 1,10,50,100]
                                        [--repeat 1] [--json]

For each side, a server process and a client process talk over 127.0.0.1.
The client keeps exactly W calls in flight (closed loop: when one completes,
the next starts) and counts the calls that complete in the measuring window.
Two calls are measured:

* ``ping``: the smallest request/reply;
* ``find_node``: a 20-byte target in, the 20 contacts closest to it (of 200
  the server knows) out, parsed by the client.

dhtkit authenticates every datagram (the first ping is signed, later calls
carry a BLAKE2b MAC under a per-peer session key). ``kademlia`` 2.2.3 (asyncio,
on ``rpcudp``) authenticates nothing; it is driven through its own protocol
class and routing table, so each call is a real request/reply through its
stack. It is an optional extra: ``pip install -e .[bench]``; without it only
dhtkit is measured.

The script is also its own server and client: the orchestrator runs
``--serve ours|kademlia --port N`` (which prints ``READY port id`` when
listening) and ``--client ours|kademlia ...`` (which prints JSON) as
subprocesses, because the Twisted reactor and asyncio each want the process.

Two more servers put dhtkit's cost in context, in the same run:

* ``echo``: a bare Twisted ``DatagramProtocol`` that writes back a datagram
  the size of dhtkit's reply (the request's size too): what the reactor, the
  socket calls and the kernel cost per round trip, the floor for any
  protocol on this stack;
* ``baseline`` (with ``--baseline DIR``): the dhtkit of another checkout
  (say an older commit, from ``git archive``), driven by its own client.

The report then gives the server's CPU microseconds per call (one datagram
in, one out) side by side, and dhtkit's against the floor and the baseline.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from machine import machine_busy_s  # benchmarks/machine.py

try:
    import dhtkit  # noqa: F401
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HOST = "127.0.0.1"
CONTACTS = 200  # what each server knows
K = 20  # contacts in a find_node reply
OPS = ("ping", "find_node")
SIDES = ("ours", "baseline", "echo", "kademlia")
#: Which server and client code each side runs (the baseline is dhtkit too).
CODE = {"ours": "ours", "baseline": "ours", "echo": "echo", "kademlia": "kademlia"}
DRAIN_LIMIT_S = 12.0  # longer than any call can wait: dhtkit 2 s x 2 tries, kademlia 5 s
FAKE_PORT_BASE = 20000  # the 200 contacts' ports; nothing is sent to them

Done = Callable[[dict[str, Any]], None]
Issue = Callable[[Callable[..., None], Callable[..., None]], None]


# -- measurement ----------------------------------------------------------------


class ClosedLoop:
    """Keep ``inflight`` calls outstanding; when one ends, start the next.

    Phases: warm-up (calls run, nothing is counted), measuring (completions
    are counted), draining (no new calls; wait for the outstanding ones so the
    next measurement starts clean). Failures are counted in every phase.
    Works on any event loop: it only needs ``call_later``.
    """

    def __init__(
        self,
        issue: Issue,
        inflight: int,
        warmup: float,
        duration: float,
        call_later: Callable[[float, Callable[[], None]], Any],
        done: Done,
        probe: Probe,
    ) -> None:
        self.issue = issue
        self.inflight = inflight
        self.warmup = warmup
        self.duration = duration
        self.call_later = call_later
        self.done = done
        self.probe = probe
        self.phase = "idle"
        self.outstanding = 0
        self.completed = 0
        self.late = 0
        self.failures: dict[str, int] = {}
        self.t0 = self.t1 = 0.0
        self.cpu0 = self.cpu1 = 0.0

    def start(self) -> None:
        self.phase = "warmup"
        for _ in range(self.inflight):
            self._next()
        self.call_later(self.warmup, self._begin)

    def _begin(self) -> None:
        self.phase = "measuring"
        self.completed = 0
        self.probe.begin()
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()
        self.call_later(self.duration, self._end)

    def _end(self) -> None:
        self.t1 = time.perf_counter()
        self.cpu1 = time.process_time()
        self.probe.end()
        self.phase = "draining"
        if self.outstanding == 0:
            self._finish()
        else:
            self.call_later(DRAIN_LIMIT_S, self._finish)

    def _next(self) -> None:
        self.outstanding += 1
        self.issue(self.succeeded, self.failed)

    def succeeded(self, _result: Any = None) -> None:
        if self.phase == "measuring":
            self.completed += 1
        elif self.phase == "draining":
            self.late += 1
        self._ended()

    def failed(self, reason: Any = None) -> None:
        name = getattr(getattr(reason, "type", None), "__name__", None) or str(reason)
        self.failures[name] = self.failures.get(name, 0) + 1
        self._ended()

    def _ended(self) -> None:
        self.outstanding -= 1
        if self.phase in ("warmup", "measuring"):
            self._next()
        elif self.phase == "draining" and self.outstanding == 0:
            self._finish()

    def _finish(self) -> None:
        if self.phase != "draining":
            return
        self.phase = "finished"
        elapsed = self.t1 - self.t0
        result: dict[str, Any] = {
            "inflight": self.inflight,
            "duration_s": round(elapsed, 4),
            "calls": self.completed,
            "calls_per_s": round(self.completed / elapsed, 1),
            "failures": sum(self.failures.values()),
            "failure_kinds": self.failures,
            "completed_while_draining": self.late,
            "abandoned": self.outstanding,
            "client_cpu_pct": round(100 * (self.cpu1 - self.cpu0) / elapsed, 1),
        }
        self.probe.finish(result, elapsed)
        # CPU per call: what each stack costs, whichever process was the bottleneck.
        for who in ("server", "client"):
            pct = result[who + "_cpu_pct"]
            result[who + "_us_per_call"] = (
                None
                if pct is None or not self.completed
                else round(pct * 1e4 / result["calls_per_s"], 1)
            )
        self.done(result)


def udp_socket_drops(ports: list[int]) -> int | None:
    """Datagrams the kernel dropped on our 127.0.0.1 sockets (Linux only).

    A full receive buffer drops silently; this is where it shows.
    """
    try:
        with open("/proc/net/udp") as f:
            lines = f.readlines()[1:]
    except OSError:
        return None
    wanted = {"0100007F:{:04X}".format(p) for p in ports}
    return sum(int(line.split()[-1]) for line in lines if line.split()[1] in wanted)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux only)."""
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Probe:
    """Kernel drops on both sockets (warm-up to drained) and the server's CPU
    (over the measuring window) for one measurement."""

    def __init__(self, client_port: int, server_port: int, server_pid: int) -> None:
        self.client_port = client_port
        self.server_port = server_port
        self.server_pid = server_pid
        self.drops0 = self._drops()
        self.cpu0: float | None = None
        self.cpu1: float | None = None
        self.own0: float | None = None
        self.own1: float | None = None
        self.busy0: float | None = None
        self.busy1: float | None = None

    def _drops(self) -> tuple[int | None, int | None]:
        return udp_socket_drops([self.client_port]), udp_socket_drops([self.server_port])

    def begin(self) -> None:
        self.cpu0 = process_cpu_s(self.server_pid)
        self.own0 = process_cpu_s(os.getpid())
        self.busy0 = machine_busy_s()

    def end(self) -> None:
        self.cpu1 = process_cpu_s(self.server_pid)
        self.own1 = process_cpu_s(os.getpid())
        self.busy1 = machine_busy_s()

    def finish(self, result: dict[str, Any], elapsed: float) -> None:
        for side, before, after in zip(
            ("client", "server"), self.drops0, self._drops(), strict=True
        ):
            result[side + "_kernel_drops"] = (
                None if before is None or after is None else after - before
            )
        result["server_cpu_pct"] = (
            None
            if self.cpu0 is None or self.cpu1 is None
            else round(100 * (self.cpu1 - self.cpu0) / elapsed, 1)
        )
        # Whatever else the machine ran meanwhile: a busy neighbour skews figures.
        if None in (self.cpu0, self.cpu1, self.own0, self.own1, self.busy0, self.busy1):
            result["other_cpu_pct"] = None
        else:
            assert self.cpu0 is not None and self.cpu1 is not None and self.own0 is not None
            assert self.own1 is not None and self.busy0 is not None and self.busy1 is not None
            other = (self.busy1 - self.busy0) - (self.cpu1 - self.cpu0) - (self.own1 - self.own0)
            result["other_cpu_pct"] = round(max(0.0, 100 * other / elapsed), 1)


def enlarge_receive_buffer(sock: Any, size: int) -> int:
    """Ask for a ``size``-byte receive buffer (0: leave the default); return what
    the kernel granted (Linux reports double the usable size, and caps the
    request at net.core.rmem_max)."""
    if size:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted: int = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return granted


def targets() -> Iterator[bytes]:
    """Random 20-byte lookup targets, made ahead so the loop does not pay for them."""
    pool = [os.urandom(20) for _ in range(4096)]
    while True:
        yield from pool


def report_progress(side: str, op: str, result: dict[str, Any]) -> None:
    print(
        "  {:8} {:9} x{:<3} {:>9,.0f}/s  failures {}".format(
            side, op, result["inflight"], result["calls_per_s"], result["failures"]
        ),
        file=sys.stderr,
        flush=True,
    )


# -- dhtkit ---------------------------------------------------------------------------


def serve_ours(port: int, rcvbuf: int) -> None:
    from bisect import bisect_left

    from twisted.internet import reactor

    from dhtkit import wire
    from dhtkit.contact import Contact
    from dhtkit.identity import Identity
    from dhtkit.keyspace import to_int
    from dhtkit.rpc import RemoteError, RPCProtocol

    known = [
        Contact.from_key(Identity.generate().public_key, (HOST, FAKE_PORT_BASE + i))
        for i in range(CONTACTS)
    ]

    # The contacts sorted by id. Every id that shares the first 160 - b bits
    # with the target is nearer to it, by XOR, than every id that does not,
    # so the K nearest all lie in the smallest aligned block around the
    # target that holds K ids: two bisections find a block, one small sort
    # orders it. Exact, and cheaper than kademlia's walk over its buckets.
    known.sort(key=lambda c: c.node_id)
    ids = [to_int(c.node_id) for c in known]

    def nearest(t: int, count: int) -> list[Contact]:
        low_bits, high_bits = 0, 160
        while low_bits < high_bits:
            bits = (low_bits + high_bits) // 2
            start = t >> bits << bits
            if bisect_left(ids, start + (1 << bits)) - bisect_left(ids, start) >= count:
                high_bits = bits
            else:
                low_bits = bits + 1
        start = t >> low_bits << low_bits
        first, last = bisect_left(ids, start), bisect_left(ids, start + (1 << low_bits))
        block = sorted(range(first, last), key=lambda i: ids[i] ^ t)[:count]
        return [known[i] for i in block]

    def find_node(sender: Contact, target: Any) -> list[bytes]:
        if type(target) is not bytes or len(target) != 20:
            raise RemoteError("bad_target", "a target is 20 bytes")
        return wire.encode_contacts(nearest(to_int(target), K))

    identity = Identity.generate()
    proto = RPCProtocol(identity, reactor, rate=1e9, burst=1e9)

    def bench_stats(sender: Contact, _args: Any) -> dict[str, Any]:
        out: dict[str, Any] = proto.stats()
        return out

    proto.register("find_node", find_node)
    proto.register("bench_stats", bench_stats)
    listening, _ = listen_udp(reactor, proto, port, rcvbuf)

    def shutdown() -> None:
        print(json.dumps({"final_stats": proto.stats()}), flush=True)

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    print("READY {} {}".format(listening.getHost().port, identity.node_id.hex()), flush=True)
    reactor.run()


def listen_udp(reactor: Any, protocol: Any, port: int, rcvbuf: int) -> tuple[Any, int]:
    """Listen on 127.0.0.1; return the listening port and the receive buffer granted."""
    listening = reactor.listenUDP(port, protocol, interface=HOST)
    return listening, enlarge_receive_buffer(listening.socket, rcvbuf)


def client_ours(args: argparse.Namespace) -> None:
    from twisted.internet import defer, reactor, task

    from dhtkit import wire
    from dhtkit.identity import Identity
    from dhtkit.rpc import RPCProtocol

    results: list[dict[str, Any]] = []

    async def main(_reactor: Any) -> None:
        proto = RPCProtocol(Identity.generate(), reactor, rate=1e9, burst=1e9)
        listening, rcvbuf = listen_udp(reactor, proto, 0, args.rcvbuf)
        my_port = listening.getHost().port
        # The one signed exchange: it sets up the session both sides MAC with.
        server = await proto.ping((HOST, args.port))
        next_target = targets().__next__

        def issue_ping(ok: Callable[..., None], fail: Callable[..., None]) -> None:
            proto.ping(server.address, server.public_key).addCallbacks(ok, fail)

        def issue_find_node(ok: Callable[..., None], fail: Callable[..., None]) -> None:
            d = proto.call_contact(server, "find_node", next_target())
            d.addCallback(wire.decode_contacts).addCallbacks(ok, fail)

        def dropped(stats: dict[str, Any]) -> int:
            return int(stats["dropped"])

        issuers = {"ping": issue_ping, "find_node": issue_find_node}
        for op in args.ops.split(","):
            issue = issuers[op]
            for inflight in args.inflight:
                server_before = await proto.call_contact(server, "bench_stats")
                client_before = proto.stats()
                probe = Probe(my_port, args.port, args.server_pid)
                finished: defer.Deferred[dict[str, Any]] = defer.Deferred()
                gc.collect()
                ClosedLoop(
                    issue,
                    inflight,
                    args.warmup,
                    args.duration,
                    reactor.callLater,
                    finished.callback,
                    probe,
                ).start()
                result = await finished
                server_after = await proto.call_contact(server, "bench_stats")
                client_after = proto.stats()
                result.update(
                    side="ours",
                    op=op,
                    client_rcvbuf=rcvbuf,
                    retries=client_after["retries"] - client_before["retries"],
                    client_dropped=dropped(client_after) - dropped(client_before),
                    # less the bench_stats query itself
                    server_queries=server_after["queries_received"]
                    - server_before["queries_received"]
                    - 1,
                    server_dropped=dropped(server_after) - dropped(server_before),
                    server_send_errors=server_after["send_errors"] - server_before["send_errors"],
                )
                results.append(result)
                report_progress("dhtkit", op, result)
        await listening.stopListening()
        print(json.dumps(results), flush=True)

    task.react(lambda r: defer.Deferred.fromCoroutine(main(r)))


# -- the floor: a bare Twisted UDP echo ------------------------------------------------


def dhtkit_sizes() -> dict[str, tuple[int, int]]:
    """The sizes (query, reply) of dhtkit's datagrams for each call, in bytes."""
    from dhtkit import wire
    from dhtkit.contact import Contact
    from dhtkit.identity import Identity

    me, peer = Identity.generate(), Identity.generate()
    seq = int(time.time() * 1_000_000)
    contacts = [
        Contact.from_key(Identity.generate().public_key, (HOST, FAKE_PORT_BASE + i))
        for i in range(K)
    ]

    def size(kind: int, method: str, payload: Any, who: Identity) -> int:
        body = wire.encode_body(kind, 2**31, method, payload, who, seq)
        return len(wire.seal(body, bytes(wire.MAC_BYTES)))

    return {
        "ping": (
            size(wire.QUERY, "ping", None, peer),
            size(wire.RESPONSE, "", wire.encode_address((HOST, 40000)), me),
        ),
        "find_node": (
            size(wire.QUERY, "find_node", os.urandom(20), peer),
            size(wire.RESPONSE, "", wire.encode_contacts(contacts), me),
        ),
    }


#: The first byte of an echo request: which call's reply size to answer with.
ECHO_OPS = {op: bytes([i]) for i, op in enumerate(OPS)}


def serve_echo(port: int, rcvbuf: int) -> None:
    from twisted.internet import reactor
    from twisted.internet.protocol import DatagramProtocol

    sizes = dhtkit_sizes()
    # The reply to each call: its first byte and transaction id, then padding.
    padding = [bytes(sizes[op][1] - 5) for op in OPS]

    class Echo(DatagramProtocol):
        def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
            self.transport.write(data[:5] + padding[data[0]], addr)

    listening, _ = listen_udp(reactor, Echo(), port, rcvbuf)
    print("READY {} -".format(listening.getHost().port), flush=True)
    reactor.run()


def client_echo(args: argparse.Namespace) -> None:
    from twisted.internet import defer, reactor, task
    from twisted.internet.protocol import DatagramProtocol

    sizes = dhtkit_sizes()
    address = (HOST, args.port)
    results: list[dict[str, Any]] = []

    class EchoClient(DatagramProtocol):
        # txid -> (success, failure, timer): the same closed loop as the others
        def __init__(self) -> None:
            self.pending: dict[bytes, tuple[Any, Any, Any]] = {}
            self.txid = 0

        def call(self, op: str, ok: Callable[..., None], fail: Callable[..., None]) -> None:
            self.txid = (self.txid + 1) % 2**32
            txid = self.txid.to_bytes(4, "big")
            timer = reactor.callLater(2.0, self.timed_out, txid)
            self.pending[txid] = (ok, fail, timer)
            request = ECHO_OPS[op] + txid
            self.transport.write(request + bytes(sizes[op][0] - len(request)), address)

        def timed_out(self, txid: bytes) -> None:
            _, fail, _ = self.pending.pop(txid)
            fail("timeout")

        def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
            entry = self.pending.pop(data[1:5], None)
            if entry is not None:
                entry[2].cancel()
                entry[0]()

    async def main(_reactor: Any) -> None:
        proto = EchoClient()
        listening, rcvbuf = listen_udp(reactor, proto, 0, args.rcvbuf)
        my_port = listening.getHost().port
        for op in args.ops.split(","):
            for inflight in args.inflight:
                probe = Probe(my_port, args.port, args.server_pid)
                finished: defer.Deferred[dict[str, Any]] = defer.Deferred()
                gc.collect()
                ClosedLoop(
                    lambda ok, fail, op=op: proto.call(op, ok, fail),
                    inflight,
                    args.warmup,
                    args.duration,
                    reactor.callLater,
                    finished.callback,
                    probe,
                ).start()
                result = await finished
                result.update(side="echo", op=op, client_rcvbuf=rcvbuf)
                results.append(result)
                report_progress("echo", op, result)
        await listening.stopListening()
        print(json.dumps(results), flush=True)

    task.react(lambda r: defer.Deferred.fromCoroutine(main(r)))


# -- kademlia (PyPI) --------------------------------------------------------------------


def serve_kademlia(port: int, rcvbuf: int) -> None:
    import asyncio

    from kademlia.network import Server
    from kademlia.node import Node
    from kademlia.utils import digest

    class _NoPing:
        # While the table is filled, a full bucket would ping its oldest
        # contact; these contacts are fictitious, so that ping is skipped.
        async def call_ping(self, node: Node) -> None:
            return None

    async def main() -> None:
        server = Server(ksize=K)
        await server.listen(port, interface=HOST)
        enlarge_receive_buffer(server.transport.get_extra_info("socket"), rcvbuf)
        router = server.protocol.router
        real, router.protocol = router.protocol, _NoPing()
        rng = random.Random()
        i = 0
        while sum(len(b) for b in router.buckets) < CONTACTS and i < 100 * CONTACTS:
            router.add_contact(Node(digest(rng.getrandbits(255)), HOST, FAKE_PORT_BASE + i))
            i += 1
        router.protocol = real
        await asyncio.sleep(0)  # let the skipped pings' coroutines finish
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        sockname = server.transport.get_extra_info("sockname")
        print("READY {} {}".format(sockname[1], server.node.id.hex()), flush=True)
        await stop.wait()
        print(
            json.dumps(
                {
                    "final_stats": {
                        "routing_table_contacts": sum(len(b) for b in router.buckets),
                        # the server's own outgoing requests: should be none
                        "outstanding_requests": len(server.protocol._outstanding),
                    }
                }
            ),
            flush=True,
        )
        server.stop()

    asyncio.run(main())


def client_kademlia(args: argparse.Namespace) -> None:
    import asyncio

    from kademlia.node import Node
    from kademlia.protocol import KademliaProtocol
    from kademlia.storage import ForgetfulStorage

    # An id next to the server's own: it lands in the bucket the server always
    # splits, so the server adds the client once and never pings the
    # (fictitious) head of a full bucket to make room for it.
    server_id = bytes.fromhex(args.server_id)
    me = Node(server_id[:-1] + bytes([server_id[-1] ^ 1]))
    address = (HOST, args.port)

    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: KademliaProtocol(me, ForgetfulStorage(), K), local_addr=(HOST, 0)
        )
        my_port = transport.get_extra_info("sockname")[1]
        rcvbuf = enlarge_receive_buffer(transport.get_extra_info("socket"), args.rcvbuf)
        ok, _ = await protocol.ping(address, me.id)
        if not ok:
            raise SystemExit("the kademlia server does not answer")
        next_target = targets().__next__

        def issue_ping(ok: Callable[..., None], fail: Callable[..., None]) -> None:
            def answered(f: asyncio.Future[tuple[bool, Any]]) -> None:
                if f.result()[0]:
                    ok()
                else:
                    fail("timeout")

            protocol.ping(address, me.id).add_done_callback(answered)

        def issue_find_node(ok: Callable[..., None], fail: Callable[..., None]) -> None:
            def answered(f: asyncio.Future[tuple[bool, Any]]) -> None:
                answer, payload = f.result()
                if not answer:
                    fail("timeout")
                    return
                # as kademlia's crawler parses a find_node answer
                ok([Node(*nodeple) for nodeple in payload])

            protocol.find_node(address, me.id, next_target()).add_done_callback(answered)

        results = []
        issuers = {"ping": issue_ping, "find_node": issue_find_node}
        for op in args.ops.split(","):
            issue = issuers[op]
            for inflight in args.inflight:
                probe = Probe(my_port, args.port, args.server_pid)
                finished: asyncio.Future[dict[str, Any]] = loop.create_future()
                gc.collect()
                ClosedLoop(
                    issue,
                    inflight,
                    args.warmup,
                    args.duration,
                    loop.call_later,
                    finished.set_result,
                    probe,
                ).start()
                result = await finished
                result.update(side="kademlia", op=op, client_rcvbuf=rcvbuf)
                results.append(result)
                report_progress("kademlia", op, result)
        transport.close()
        return results

    print(json.dumps(asyncio.run(main())), flush=True)


# -- orchestration -----------------------------------------------------------------------


def kademlia_missing() -> str | None:
    """Why the kademlia side cannot run, or None."""
    try:
        import kademlia.network  # noqa: F401
    except ImportError as e:
        return str(e)
    return None


class ServerProcess:
    """One ``--serve`` subprocess; ``path``, if given, is where its dhtkit comes from."""

    def __init__(self, side: str, rcvbuf: int, path: str | None = None) -> None:
        self.side = side
        self.env = code_env(path)
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--serve",
                CODE[side],
                "--port",
                "0",
                "--rcvbuf",
                str(rcvbuf),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().split()
        if len(ready) != 3 or ready[0] != "READY":
            self.stop()
            raise SystemExit("the {} server did not start".format(side))
        self.port = int(ready[1])
        self.node_id = ready[2]

    def stop(self) -> dict[str, Any]:
        """Stop the server; return the counters it printed on the way out."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            rest, _ = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest, _ = self.process.communicate()
        final: dict[str, Any] = {}
        for line in (rest or "").splitlines():
            if line.startswith("{"):
                final = json.loads(line).get("final_stats", {})
        return final


def run_client(
    server: ServerProcess, op: str, inflight: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One measurement, in a fresh client process."""
    client = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--client",
            CODE[server.side],
            "--port",
            str(server.port),
            "--server-id",
            server.node_id,
            "--server-pid",
            str(server.process.pid),
            "--ops",
            op,
            "--inflight",
            str(inflight),
            "--duration",
            str(args.duration),
            "--warmup",
            str(args.warmup),
            "--rcvbuf",
            str(args.rcvbuf),
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        env=server.env,
    )
    if client.returncode != 0:
        raise SystemExit(
            "the {} client failed (exit status {})".format(server.side, client.returncode)
        )
    results: list[dict[str, Any]] = json.loads(client.stdout.strip().splitlines()[-1])
    results[0]["side"] = server.side
    return results[0]


def code_env(path: str | None) -> dict[str, str] | None:
    """The environment of a subprocess whose dhtkit comes from ``path`` (None: ours)."""
    if path is None:
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def baseline_dhtkit(path: str) -> str:
    """Where the baseline's subprocesses import dhtkit from (checked, not assumed)."""
    out = subprocess.run(
        [sys.executable, "-c", "import dhtkit; print(dhtkit.__file__)"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        env=code_env(path),
        cwd=Path(__file__).resolve().parent,  # where the subprocesses' sys.path starts
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(Path(path).resolve()):
        raise SystemExit("--baseline {}: dhtkit is imported from {} instead".format(path, out))
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeats of one measurement: the best run's rate and CPU, and every failure.

    The best, not the median: interference from the rest of the machine only
    ever slows a run down, so the fastest run is the one nearest the truth
    (as ``timeit`` reports its fastest time).
    """
    best = max(runs, key=lambda r: r["calls_per_s"])
    out = {
        "calls_per_s": best["calls_per_s"],
        "runs_calls_per_s": [r["calls_per_s"] for r in runs],
        "median_calls_per_s": statistics.median(r["calls_per_s"] for r in runs),
        "server_cpu_pct": best["server_cpu_pct"],
        "client_cpu_pct": best["client_cpu_pct"],
        "other_cpu_pct": best.get("other_cpu_pct"),
        "server_us_per_call": best.get("server_us_per_call"),
        "client_us_per_call": best.get("client_us_per_call"),
    }
    for key in (
        "failures",
        "abandoned",
        "client_kernel_drops",
        "server_kernel_drops",
        "retries",
        "client_dropped",
        "server_dropped",
        "server_send_errors",
    ):
        values = [r.get(key) for r in runs]
        out[key] = None if any(v is None for v in values) else sum(values)
    return out


TARGETS = {"ping": 1.0, "find_node": 2.0}
#: dhtkit's server CPU per call at most this many times the echo floor's,
#: and at most this fraction of the baseline's.
CPU_TARGET_OVER_ECHO = 2.0
CPU_TARGET_OVER_BASELINE = 0.5


def cpu_ratios(row: dict[str, Any]) -> dict[str, float | None]:
    """dhtkit's server CPU per call over each other side's, in one summary row."""
    ours = row["ours"]["server_us_per_call"]
    out: dict[str, float | None] = {}
    for side in ("echo", "baseline", "kademlia"):
        theirs = row[side]["server_us_per_call"] if side in row else None
        out[side] = round(ours / theirs, 2) if ours and theirs else None
    return out


BUSY_MACHINE_PCT = 20


def orchestrate(args: argparse.Namespace) -> int:
    from dhtkit import __version__

    missing = kademlia_missing()
    sides = ["echo", *(["baseline"] if args.baseline else []), "ours"]
    if not missing:
        sides.append("kademlia")
    report: dict[str, Any] = {
        "sides": sides,
        "baseline": baseline_dhtkit(args.baseline) if args.baseline else None,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeat": args.repeat,
        "rcvbuf": args.rcvbuf,
        "dhtkit_version": __version__,
        "kademlia_version": None,
        "kademlia_missing": missing,
    }
    if missing:
        print(
            "kademlia is not importable ({}): measuring dhtkit only. "
            "To compare, install the optional extra: pip install -e .[bench]".format(missing),
            file=sys.stderr,
            flush=True,
        )
    else:
        from importlib.metadata import version

        report["kademlia_version"] = version("kademlia")
    servers: dict[str, ServerProcess] = {}
    runs: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    try:
        for side in sides:
            servers[side] = ServerProcess(
                side, args.rcvbuf, args.baseline if side == "baseline" else None
            )
        # Sides alternate measurement by measurement, so a slow spell of the
        # machine hits both rather than one.
        for op in OPS:
            for inflight in args.inflight:
                for repeat in range(args.repeat):
                    for side in sides:
                        run = run_client(servers[side], op, inflight, args)
                        run["repeat"] = repeat
                        runs.append(run)
    finally:
        for side, server in servers.items():
            final[side] = server.stop()
    report["server_final_stats"] = final
    report["runs"] = runs
    summary = []
    for op in OPS:
        for inflight in args.inflight:
            row: dict[str, Any] = {"op": op, "inflight": inflight}
            for side in sides:
                row[side] = summarize(
                    [
                        r
                        for r in runs
                        if r["side"] == side and r["op"] == op and r["inflight"] == inflight
                    ]
                )
            if "kademlia" in row:
                theirs = row["kademlia"]["calls_per_s"]
                row["ratio"] = round(row["ours"]["calls_per_s"] / theirs, 3) if theirs else None
                row["target_ratio"] = TARGETS[op]
                row["target_met"] = row["ratio"] is not None and row["ratio"] >= TARGETS[op]
            row["cpu_ratios"] = cpu_ratios(row)
            summary.append(row)
    report["summary"] = summary
    print_report(report)
    if args.json:
        print()
        print(json.dumps(report, sort_keys=True))
    return 0


def fmt_optional(value: Any, suffix: str = "") -> str:
    return "-" if value is None else "{}{}".format(value, suffix)


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else "{:.0f}%".format(value)


def print_details(side: str, report: dict[str, Any]) -> None:
    ours = CODE[side] == "ours"
    repeated = report["repeat"] > 1
    header = "  {:<10} {:>9} {:>9}".format("call", "in flight", "calls/s")
    if repeated:
        header += " {:>15}".format("runs (min-max)")
    header += " {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}".format(
        "failures", "srv cpu", "cli cpu", "other", "srv us", "cli us", "k.drops"
    )
    if ours:
        header += " {:>7} {:>7}".format("retries", "dropped")
    print(header)
    for row in report["summary"]:
        r = row[side]
        line = "  {:<10} {:>9} {:>9,.0f}".format(row["op"], row["inflight"], r["calls_per_s"])
        if repeated:
            line += " {:>15}".format(
                "{:,.0f}-{:,.0f}".format(min(r["runs_calls_per_s"]), max(r["runs_calls_per_s"]))
            )
        line += " {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}".format(
            r["failures"] + r["abandoned"],
            fmt_pct(r["server_cpu_pct"]),
            fmt_pct(r["client_cpu_pct"]),
            fmt_pct(r["other_cpu_pct"]),
            fmt_optional(r["server_us_per_call"]),
            fmt_optional(r["client_us_per_call"]),
            "{}/{}".format(
                fmt_optional(r["client_kernel_drops"]), fmt_optional(r["server_kernel_drops"])
            ),
        )
        if ours:
            line += " {:>7} {:>7}".format(r["retries"], r["client_dropped"] + r["server_dropped"])
        print(line)


def print_report(report: dict[str, Any]) -> None:
    print()
    print(
        "RPC round trips per second over {}: closed loop, {} s per measurement "
        "after {} s of warm-up{}.".format(
            HOST,
            report["duration_s"],
            report["warmup_s"],
            ", best of {} runs".format(report["repeat"]) if report["repeat"] > 1 else "",
        )
    )
    print(
        "Receive buffers: {}.".format(
            "{:,} bytes asked for on every socket".format(report["rcvbuf"])
            if report["rcvbuf"]
            else "the OS default"
        )
    )
    print()
    print("echo (the floor): a bare Twisted DatagramProtocol answering with dhtkit-sized replies")
    print_details("echo", report)
    print()
    if report["baseline"]:
        print("baseline: dhtkit from {}".format(report["baseline"]))
        print_dhtkit("baseline", report)
    print(
        "dhtkit {}: every datagram authenticated (the first ping signed, then session MACs)".format(
            report["dhtkit_version"]
        )
    )
    print_dhtkit("ours", report)
    if report["kademlia_missing"]:
        print(
            "kademlia: not measured, it is not importable ({}).".format(report["kademlia_missing"])
        )
        print("To compare, install the optional extra: pip install -e .[bench]")
        print()
        print_cpu(report)
        print_legend(report)
        return
    print(
        "kademlia {} (PyPI; asyncio + rpcudp): unauthenticated".format(report["kademlia_version"])
    )
    print_details("kademlia", report)
    totals = report["server_final_stats"].get("kademlia", {})
    if totals:
        print(
            "  server: {} contacts in its routing table, {} requests of its own "
            "outstanding at exit".format(
                totals["routing_table_contacts"], totals["outstanding_requests"]
            )
        )
    print()
    print(
        "  {:<10} {:>9} {:>11} {:>11} {:>12}  {}".format(
            "call", "in flight", "dhtkit/s", "kademlia/s", "ours/theirs", "target"
        )
    )
    missed = []
    for row in report["summary"]:
        ratio = row["ratio"]
        if not row["target_met"]:
            missed.append("{} x{}".format(row["op"], row["inflight"]))
        print(
            "  {:<10} {:>9} {:>11,.0f} {:>11,.0f} {:>12}  >={:g}x {}".format(
                row["op"],
                row["inflight"],
                row["ours"]["calls_per_s"],
                row["kademlia"]["calls_per_s"],
                "-" if ratio is None else "{:.2f}x".format(ratio),
                row["target_ratio"],
                "met" if row["target_met"] else "MISSED",
            )
        )
    print()
    print(
        "Target (ping >= 1x, find_node >= 2x kademlia): {}.".format(
            "met everywhere" if not missed else "missed at " + ", ".join(missed)
        )
    )
    print()
    print_cpu(report)
    print_legend(report)


def print_dhtkit(side: str, report: dict[str, Any]) -> None:
    print_details(side, report)
    totals = report["server_final_stats"].get(side, {})
    if totals:
        print(
            "  server totals: {} queries received, {} replies sent, {} dropped, "
            "{} send errors".format(
                totals["queries_received"], totals["sent"], totals["dropped"], totals["send_errors"]
            )
        )
    print()


def print_cpu(report: dict[str, Any]) -> None:
    """The servers' CPU per call side by side, and dhtkit's against the others'."""
    sides = report["sides"]
    print("Server CPU microseconds per call (one datagram in, one out):")
    header = "  {:<10} {:>9}".format("call", "in flight")
    for side in sides:
        header += " {:>9}".format(side)
    header += " {:>10}".format("ours/echo")
    if "baseline" in sides:
        header += " {:>10}".format("ours/base")
    if "kademlia" in sides:
        header += " {:>10}".format("ours/kad")
    print(header)
    for row in report["summary"]:
        line = "  {:<10} {:>9}".format(row["op"], row["inflight"])
        for side in sides:
            line += " {:>9}".format(fmt_optional(row[side]["server_us_per_call"]))
        for side in ("echo", "baseline", "kademlia"):
            if side in sides:
                line += " {:>10}".format(fmt_optional(row["cpu_ratios"][side], "x"))
        print(line)
    print(
        "Targets: ours/echo <= {:g}x{}.".format(
            CPU_TARGET_OVER_ECHO,
            ", ours/base <= {:g}x".format(CPU_TARGET_OVER_BASELINE) if "baseline" in sides else "",
        )
    )
    print()


def print_legend(report: dict[str, Any]) -> None:
    print("failures: calls that timed out or failed. srv/cli cpu: CPU time of the server/client")
    print("process over the window (near 100%: the bottleneck); other: CPU the rest of the")
    print("machine used meanwhile (high: a busy neighbour skewed that figure). srv/cli us: CPU")
    print("microseconds per call in the server/client process. k.drops: datagrams the kernel")
    print("dropped (receive buffer full) on the client/server socket. retries, dropped: dhtkit")
    print("resends, and datagrams dhtkit refused (rate limit, authentication, replay...).")
    # Judge the figures reported: with --repeat, a slow run that lost to a
    # better one does no harm.
    reported = [row[side] for row in report["summary"] for side in SIDES if side in row]
    busy = [r for r in reported if (r.get("other_cpu_pct") or 0) > BUSY_MACHINE_PCT]
    if busy:
        print()
        print(
            "Warning: other processes used more than {}% CPU while {} of the {} figures".format(
                BUSY_MACHINE_PCT, len(busy), len(reported)
            )
        )
        print(
            "above were measured, so those are unreliable. Rerun on a quiet machine, or with "
            "--repeat {}.".format(max(3, 2 * report["repeat"]))
        )


def parse_inflight(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "a comma-separated list of integers, like 1,10,100"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("each value is at least 1")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=3.0, help="seconds per measurement (default 3)"
    )
    parser.add_argument(
        "--warmup", type=float, default=0.5, help="seconds of unmeasured load first (default 0.5)"
    )
    parser.add_argument(
        "--inflight",
        type=parse_inflight,
        default=[1, 10, 50, 100],
        help="calls kept in flight, comma-separated (default 1,10,50,100)",
    )
    parser.add_argument(
        "--json", action="store_true", help="also print the results as one JSON line"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each measurement, alternating the sides; the best is reported (default 1)",
    )
    parser.add_argument(
        "--rcvbuf",
        type=int,
        default=1 << 20,
        help="receive buffer of every socket, both sides, in bytes "
        "(default 1 MiB; 0: the OS default)",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also measure the dhtkit of this checkout (server and client), "
        "for a before/after comparison in one run",
    )
    parser.add_argument(
        "--serve",
        choices=("ours", "echo", "kademlia"),
        help="run only a server (prints READY port id)",
    )
    parser.add_argument(
        "--client",
        choices=("ours", "echo", "kademlia"),
        help="run only a client against --port (prints JSON)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="with --serve: its UDP port (0: any); with --client: the server's",
    )
    parser.add_argument(
        "--server-id", help="with --client kademlia: the id the server printed after its port"
    )
    parser.add_argument(
        "--ops", default=",".join(OPS), help="with --client: the calls to measure (ping,find_node)"
    )
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.repeat < 1:
        parser.error("--duration must be positive, --warmup not negative, --repeat at least 1")
    if args.client and not args.port:
        parser.error("--client needs the server's --port")
    if args.client == "kademlia" and not args.server_id:
        parser.error("--client kademlia needs the --server-id the server printed")
    if args.serve == "ours":
        serve_ours(args.port, args.rcvbuf)
    elif args.serve == "echo":
        serve_echo(args.port, args.rcvbuf)
    elif args.serve == "kademlia":
        serve_kademlia(args.port, args.rcvbuf)
    elif args.client == "ours":
        client_ours(args)
    elif args.client == "echo":
        client_echo(args)
    elif args.client == "kademlia":
        client_kademlia(args)
    else:
        return orchestrate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
