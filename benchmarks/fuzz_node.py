"""A live node under a million hostile datagrams: mutations of real traffic.

    sudo python benchmarks/fuzz_node.py [--count 1000000] [--max-seconds 3600] [--json]

Three ``twistd -n dhtkit`` daemons start on 127.0.0.1 and talk: joins, plain
puts and gets, signed puts and gets, all through their HTTP APIs. Their
datagrams are captured off the loopback interface with a packet socket
(hence root). The fuzzer then sends ``--count`` datagrams to the first
daemon, each one a mutation of a captured datagram:

- ``replay``: a captured datagram as it was;
- ``bitflip``, ``truncate``, ``splice``, ``junk``: damage to the raw bytes;
- ``field``: one field of the envelope or of the payload replaced by a hostile
  value (huge or negative ints, bignums, floats and NaN, CBOR tags, deep
  nesting, long strings, wrong types), keeping the original authenticator
  (an unauthenticated datagram that must be refused);
- ``resigned``: the same mutation of a captured query, re-encoded under a
  fresh identity with a valid MAC or signature, so that it passes
  authentication and reaches the handlers;
- ``nested``: raw CBOR nesting thousands deep.

The datagrams go out from many source sockets (the node's rate limit is per
source port on loopback), and the sender keeps at most ``--window``
datagrams ahead of what the node says it received (its ``/metrics``), so
the figures measure the node rather than a full socket buffer. At the end:
the time it took, the node's counters (every drop by cause, and what the
kernel dropped: sent minus received), its RSS before and after, whether
it still answers a put and a get through its API, and whether its log
holds a traceback. Progress goes to stderr; the report to stdout.

The script uses only the daemon's public surfaces (its HTTP API,
``/metrics`` and ``/v1/status``) and the documented datagram format of
``dhtkit.wire`` to re-sign; nothing of ``dhtkit.rpc``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import cbor2

from dhtkit.identity import Identity
from dhtkit.wire import mac, seal, session_key, sign
from tests.daemons import free_udp_port_with_tcp_after

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
#: Source sockets the fuzz is spread over.
SOURCES = 512
#: Fresh identities that re-sign mutated queries (each one's first datagram is a handshake).
IDENTITIES = 32
#: More identities, for the datagrams whose seq itself is hostile.
BURNERS = 8
#: Seconds between looks at the node's counters.
LOOK_EVERY = 0.5

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


# -- daemons ---------------------------------------------------------------------------


class Daemon:
    """One ``twistd -n dhtkit`` on 127.0.0.1, its log in its directory."""

    def __init__(self, root: Path, name: str, bootstrap: Daemon | None) -> None:
        self.dir = root / name
        self.dir.mkdir()
        self.port = free_udp_port_with_tcp_after()
        self.api = "http://127.0.0.1:{}".format(self.port + 1)
        self.log = self.dir / "twistd.log"
        argv = [*TWISTD, "-n", "--pidfile", "", "dhtkit", "-p", str(self.port)]
        argv += ["-d", str(self.dir / "data")]
        if bootstrap is not None:
            argv += ["-b", "127.0.0.1:{}".format(bootstrap.port)]
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                argv, cwd=self.dir, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.api + path, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise SystemExit("twistd exited:\n" + self.log.read_text(errors="replace"))
            try:
                if self.request("GET", "/v1/status")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("twistd never answered:\n" + self.log.read_text(errors="replace"))
            time.sleep(0.1)

    def status(self) -> dict[str, Any]:
        code, body = self.request("GET", "/v1/status")
        assert code == 200, body
        status: dict[str, Any] = json.loads(body)
        return status

    def metrics(self) -> dict[str, float]:
        """The counters of ``/metrics``, summed over labels: name -> value."""
        code, body = self.request("GET", "/metrics")
        assert code == 200, body
        totals: Counter[str] = Counter()
        for line in body.decode().splitlines():
            match = _SAMPLE.match(line)
            if match and not line.startswith("#"):
                name, labels, value = match.groups()
                key = name + (labels or "")
                try:
                    totals[key] += float(value)
                except ValueError:
                    continue
        return dict(totals)

    def rss_kib(self) -> int:
        for line in Path("/proc/{}/status".format(self.process.pid)).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return -1

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def find(metrics: dict[str, float], word: str) -> float:
    """The sum of the samples whose name ends with ``word`` (any prefix, any labels)."""
    total = 0.0
    for key, value in metrics.items():
        name = key.split("{", 1)[0]
        if name.endswith(word) and not name.endswith("_created"):
            total += value
    return total


# -- capture ---------------------------------------------------------------------------


class Capture(threading.Thread):
    """Every UDP datagram on the loopback interface to or from ``ports``."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.ports: set[int] = set()
        self.datagrams: list[tuple[int, bytes]] = []  # (destination port, payload)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                frame, address = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if address[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8:
                continue
            if frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            header = (ip[0] & 0x0F) * 4
            if ip[9] != socket.IPPROTO_UDP:
                continue
            source, destination, length = struct.unpack("!HHH", ip[header : header + 6])
            if source in self.ports or destination in self.ports:
                self.datagrams.append((destination, ip[header + 8 : header + length]))

    def stop(self) -> None:
        self.running = False
        self.join()
        self.sock.close()


def make_traffic(daemons: list[Daemon], rounds: int) -> None:
    """Plain and signed puts and gets through every daemon's API."""
    for i in range(rounds):
        writer, reader = daemons[i % len(daemons)], daemons[(i + 1) % len(daemons)]
        name = "fuzz-seed-{}".format(i)
        writer.request("PUT", "/v1/values/" + name, "value {}".format(i).encode())
        reader.request("GET", "/v1/values/" + name)
        code, body = writer.request("PUT", "/v1/signed/salt{}".format(i % 3), b"signed %d" % i)
        if code == 200:
            key = json.loads(body).get("public_key")
            if key:
                reader.request("GET", "/v1/signed/{}/salt{}".format(key, i % 3))


# -- mutations -------------------------------------------------------------------------


def _deep(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


HOSTILE: list[Any] = [
    2**64,
    2**64 - 1,
    -1,
    -(2**63),
    -(2**64),
    10**400,
    -(10**400),
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    1e308,
    None,
    True,
    "",
    "x" * 1200,
    b"",
    b"\xff" * 1100,
    [],
    {},
    [0] * 300,
    {str(i): i for i in range(100)},
    cbor2.CBORTag(36, "Content-Type: text/plain\r\n\r\n" + "a" * 900),
    cbor2.CBORTag(35, "(a+)+$" * 100),
    cbor2.CBORTag(2, b"\xff" * 600),
    cbor2.CBORTag(3, b"\xff" * 600),
    cbor2.CBORTag(1, 1e300),
    cbor2.CBORTag(0, "9999-99-99T99:99:99Z"),
    cbor2.CBORTag(4, [-(10**300), 10**300]),
    cbor2.CBORTag(30, [1, 0]),
    cbor2.CBORTag(258, [1, 2, 3]),
    cbor2.CBORTag(28, 1),
    cbor2.CBORTag(29, 0),
    cbor2.CBORTag(55799, 1),
    cbor2.CBORTag(99999, b"x"),
]


def _nested_value(rng: random.Random) -> Any:
    value: Any = rng.choice(HOSTILE[:14])
    for _ in range(rng.randrange(1, 40)):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def hostile(rng: random.Random) -> Any:
    if rng.random() < 0.1:
        return _nested_value(rng)
    return rng.choice(HOSTILE)


def mutate_value(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """``value`` with one element somewhere inside replaced by a hostile one."""
    if depth > 6 or rng.random() < 0.3:
        return hostile(rng)
    if isinstance(value, list) and value:
        copy = list(value)
        i = rng.randrange(len(copy))
        copy[i] = mutate_value(copy[i], rng, depth + 1)
        return copy
    if isinstance(value, dict) and value:
        copy = dict(value)
        key = rng.choice(list(copy))
        if rng.random() < 0.1:
            copy[hostile(rng) if rng.random() < 0.5 else key + "x"] = copy.pop(key)
        else:
            copy[key] = mutate_value(copy[key], rng, depth + 1)
        return copy
    return hostile(rng)


class Parsed:
    """A captured datagram and, when it decodes, its envelope's fields."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.fields: list[Any] | None = None
        self.auth = b""
        try:
            outer = cbor2.loads(raw)
            body = cbor2.loads(outer[0])
            if isinstance(body, list) and len(body) == 8:
                self.fields, self.auth = body, outer[1]
        except Exception:  # whatever does not decode stays raw only
            pass


class Fuzzer:
    """Makes datagrams from the captured ones."""

    KINDS = (
        ("replay", 8),
        ("bitflip", 14),
        ("truncate", 8),
        ("splice", 8),
        ("junk", 4),
        ("nested", 2),
        ("field", 22),
        ("resigned", 34),
    )

    def __init__(self, captured: list[bytes], target_key: bytes, seed: int) -> None:
        self.rng = random.Random(seed)
        self.captured = [Parsed(raw) for raw in captured]
        self.structured = [p for p in self.captured if p.fields is not None]
        self.queries = [p for p in self.structured if p.fields and p.fields[1] == 0]
        if not self.queries:
            raise SystemExit("no query was captured: nothing to re-sign")
        self.identities = [Identity.generate() for _ in range(IDENTITIES + BURNERS)]
        self.sessions = [session_key(i, target_key) for i in self.identities]
        self.last_seq = [0] * IDENTITIES
        names, weights = zip(*self.KINDS, strict=True)
        self.names: tuple[str, ...] = names
        self.weights: tuple[int, ...] = weights

    def next(self) -> tuple[str, bytes]:
        kind = self.rng.choices(self.names, self.weights)[0]
        return kind, getattr(self, "_" + kind)()

    def _raw(self) -> bytes:
        return self.rng.choice(self.captured).raw

    def _replay(self) -> bytes:
        return self._raw()

    def _bitflip(self) -> bytes:
        data = bytearray(self._raw())
        for _ in range(self.rng.randrange(1, 9)):
            i = self.rng.randrange(len(data) * 8)
            data[i // 8] ^= 1 << (i % 8)
        return bytes(data)

    def _truncate(self) -> bytes:
        data = self._raw()
        return data[: self.rng.randrange(len(data))]

    def _splice(self) -> bytes:
        a, b = self._raw(), self._raw()
        return a[: self.rng.randrange(len(a) + 1)] + b[self.rng.randrange(len(b) + 1) :]

    def _junk(self) -> bytes:
        return self.rng.randbytes(self.rng.randrange(1, 1400))

    def _nested(self) -> bytes:
        inner = _deep(self.rng.randrange(100, 1300))
        return inner if self.rng.random() < 0.5 else cbor2.dumps([inner, b"\x00" * 16])

    def _field(self) -> bytes:
        parsed = self.rng.choice(self.structured)
        assert parsed.fields is not None
        fields = list(parsed.fields)
        i = self.rng.randrange(len(fields))
        fields[i] = mutate_value(fields[i], self.rng)
        try:
            body = cbor2.dumps(fields)
            auth: Any = parsed.auth if self.rng.random() < 0.8 else hostile(self.rng)
            return cbor2.dumps([body, auth])[:1400]
        except (ValueError, TypeError, OverflowError, cbor2.CBOREncodeError):
            return parsed.raw

    def _resigned(self) -> bytes:
        parsed = self.rng.choice(self.queries)
        assert parsed.fields is not None
        version, kind, txid, method, payload = parsed.fields[:5]
        roll = self.rng.random()
        if roll < 0.6:
            payload = mutate_value(payload, self.rng)
        elif roll < 0.7:
            method = hostile(self.rng) if self.rng.random() < 0.5 else "no_such_method"
        elif roll < 0.8:
            txid = hostile(self.rng)
        elif roll < 0.85:
            kind = hostile(self.rng)
        # else: the query as it was, from someone new
        if self.rng.random() < 0.03:
            # A hostile seq from an identity of its own: a seq far ahead
            # would leave that identity's later datagrams all "replays".
            n = self.rng.randrange(IDENTITIES, IDENTITIES + BURNERS)
            seq = hostile(self.rng)
        else:
            n = self.rng.randrange(IDENTITIES)
            seq = max(self.last_seq[n] + 1, int(time.time() * 1_000_000))
            self.last_seq[n] = seq
        identity = self.identities[n]
        fields = [version, kind, txid, method, payload, identity.public_key, identity.node_id, seq]
        try:
            body = cbor2.dumps(fields)
        except (ValueError, TypeError, OverflowError, cbor2.CBOREncodeError):
            return parsed.raw
        auth = sign(body, identity) if self.rng.random() < 0.1 else mac(body, self.sessions[n])
        try:
            return seal(body, auth)
        except ValueError:  # too large for one datagram: send it anyway, cut
            return cbor2.dumps([body, auth])[:1400]


# -- the run ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=10**6, help="datagrams to send")
    parser.add_argument("--max-seconds", type=float, default=3600, help="stop sending after")
    parser.add_argument("--window", type=int, default=300, help="datagrams ahead of the node")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        raise SystemExit("fuzz_node.py captures loopback traffic with a packet socket: run as root")

    root = Path(tempfile.mkdtemp(prefix="dhtkit-fuzz-"))
    daemons: list[Daemon] = []
    try:
        report = run(args, root, daemons)
    finally:
        for daemon in daemons:
            daemon.stop()
    print(json.dumps(report, indent=2) if args.json else text(report))
    if report["tracebacks"] == 0:
        shutil.rmtree(root, ignore_errors=True)  # else the log stays, for a look


def progress(message: str) -> None:
    print("[fuzz] " + message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, root: Path, daemons: list[Daemon]) -> dict[str, Any]:
    capture = Capture()
    capture.start()
    progress("starting three daemons and capturing their traffic")
    for n in range(3):
        daemons.append(Daemon(root, "node{}".format(n), daemons[0] if daemons else None))
        capture.ports.add(daemons[-1].port)
        daemons[-1].wait_ready()
    time.sleep(1.0)
    make_traffic(daemons, 30)
    time.sleep(0.5)
    capture.stop()
    captured = [raw for _, raw in capture.datagrams if raw]
    progress("captured {} datagrams".format(len(captured)))
    target = daemons[0]
    target_key = find_public_key(daemons)
    fuzzer = Fuzzer(captured, target_key, args.seed)
    log_before = target.log.stat().st_size

    before = target.metrics()
    rss_before = target.rss_kib()
    sources = []
    for _ in range(SOURCES):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        sources.append(s)
    destination = ("127.0.0.1", target.port)
    received_before = find(before, "rpc_received_total")
    kinds: Counter[str] = Counter()
    send_errors = 0
    start = time.monotonic()
    next_look = next_report = start
    received = received_before
    sent = 0
    while sent < args.count:
        now = time.monotonic()
        if now - start > args.max_seconds:
            progress("--max-seconds reached")
            break
        if now >= next_look:
            metrics = target.metrics()
            received = find(metrics, "rpc_received_total") or received
            next_look = now + LOOK_EVERY
            if now >= next_report:
                next_report = now + 5.0
                progress(
                    "{:>8} sent, {:.0f} s, node received {:.0f}".format(
                        sent, now - start, received - received_before
                    )
                )
        if sent - (received - received_before) > args.window:
            time.sleep(0.01)
            next_look = min(next_look, time.monotonic())
            continue
        for _ in range(200):
            kind, data = fuzzer.next()
            kinds[kind] += 1
            try:
                sources[sent % SOURCES].sendto(data, destination)
            except OSError:
                send_errors += 1
            sent += 1
            if sent >= args.count:
                break
        for s in sources[:8]:  # the node answers some: do not let them pile up forever
            drain(s)
    for s in sources:
        drain(s)
    elapsed = time.monotonic() - start
    time.sleep(2.0)  # the node finishes what is in its socket buffer
    after = target.metrics()
    rss_after = target.rss_kib()
    progress("checking that the node still answers")
    began = time.monotonic()
    put = target.request("PUT", "/v1/values/after-the-fuzz", b"still here")
    put_s = time.monotonic() - began
    got = target.request("GET", "/v1/values/after-the-fuzz")
    got_s = time.monotonic() - began - put_s
    elsewhere = daemons[1].request("GET", "/v1/values/after-the-fuzz")
    log = target.log.read_text(errors="replace")
    written = log.encode()[log_before:].decode("utf-8", "replace").splitlines()
    # The fuzzer's own GET /metrics fill the access log: not the node's doing.
    own = [line for line in written if '"GET /metrics' in line]
    report: dict[str, Any] = {
        "captured": len(captured),
        "sent": sent,
        "send_errors": send_errors,
        "seconds": round(elapsed, 1),
        "rate_per_s": round(sent / elapsed) if elapsed else None,
        "kinds": dict(kinds),
        "counters": diff(before, after),
        "rss_kib": {"before": rss_before, "after": rss_after},
        "alive": target.process.poll() is None,
        "put_after": [put[0], round(put_s, 2)],
        "get_after": [got[0], got[1].decode("utf-8", "replace"), round(got_s, 2)],
        "get_from_another_node": [elsewhere[0], elsewhere[1].decode("utf-8", "replace")],
        "log_bytes_during_fuzz": sum(len(line) + 1 for line in written)
        - sum(len(line) + 1 for line in own),
        "tracebacks": log.count("Traceback"),
        "log": str(target.log),
    }
    report["not_received_by_the_node"] = sent - find(report["counters"], "rpc_received_total")
    return report


def find_public_key(daemons: list[Daemon]) -> bytes:
    """The first daemon's public key, as another daemon lists it among its contacts."""
    node_id = daemons[0].status()["node_id"]
    for other in daemons[1:]:
        code, body = other.request("GET", "/v1/contacts")
        if code != 200:
            continue
        reply = json.loads(body)
        contacts = reply["contacts"] if isinstance(reply, dict) else reply
        for contact in contacts:
            if contact.get("node_id") == node_id:
                return bytes.fromhex(contact["public_key"])
    raise SystemExit("no daemon lists the first one's public key")


def drain(s: socket.socket) -> None:
    try:
        while True:
            s.recv(2048)
    except BlockingIOError:
        pass


def diff(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counters that moved, by name."""
    moved = {}
    for key, value in after.items():
        change = value - before.get(key, 0.0)
        if change and ("total" in key or "dropped" in key):
            moved[key] = change
    return dict(sorted(moved.items()))


def text(report: dict[str, Any]) -> str:
    lines = [
        "captured datagrams: {}".format(report["captured"]),
        "sent: {} in {} s ({} /s), send errors {}".format(
            report["sent"], report["seconds"], report["rate_per_s"], report["send_errors"]
        ),
        "kinds: " + ", ".join("{} {}".format(k, v) for k, v in sorted(report["kinds"].items())),
        "not received by the node (kernel drops): {:.0f}".format(
            report["not_received_by_the_node"]
        ),
        "node counters that moved:",
    ]
    lines += ["  {:<60} {:>10.0f}".format(k, v) for k, v in report["counters"].items()]
    lines += [
        "RSS: {} KiB before, {} KiB after".format(
            report["rss_kib"]["before"], report["rss_kib"]["after"]
        ),
        "alive: {}; put after: HTTP {} in {} s; get after: HTTP {} {!r} in {} s".format(
            report["alive"], *report["put_after"], *report["get_after"]
        ),
        "get from another node: HTTP {} {!r}".format(*report["get_from_another_node"]),
        "log: {} bytes written during the fuzz (without the access log of the fuzzer's own"
        " scrapes), {} tracebacks ({})".format(
            report["log_bytes_during_fuzz"], report["tracebacks"], report["log"]
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
