"""Lookups on real sockets after a third of the nodes stopped: with ICMP hints and without.

    python benchmarks/route_after_kill.py [--overlays kademlia,chord,pastry]
        [--nodes 30] [--kill 0.33] [--lookups 60] [--seed 1] [--json]

For each overlay, twice (each run a subprocess of this script, the two
taking turns): ``--nodes`` services of the overlay in one process, each on
its own UDP port on 127.0.0.1 with the real reactor, the registry's quick
maintenance periods and a 2 s RPC timeout, join one after another through
a random earlier node and run for 5 s; then a fraction ``--kill`` of them
(never node 0) stops at once, with no goodbye, and ``--lookups`` lookups of
random keys (``find_responsible``, 3 nodes) run one at a time from random
nodes left. Reported: the lookups' latency (p50, p90, max), those that
failed, the RPC timeouts the lookups waited out, and the ICMP errors the
nodes left heard.

The two runs differ only in the nodes' sockets: ``hints`` is what a
service opens (:mod:`dhtkit.udpport`: a stopped node's closed port answers
with an ICMP error, which the socket hears and a lookup acts on at once);
``no hints`` opens plain sockets, as dhtkit did before, so a dead node on
the way costs its RPC timeout. The maintenance rounds keep running
meanwhile and repair the routing state, so the later lookups meet fewer
dead nodes: the tail is the point.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Seconds the network runs after the joins, before the kill.
SETTLE_S = 5.0
#: The RPC timeout of every node (the service's default).
TIMEOUT_S = 2.0
MODES = ("hints", "no hints")


def progress(text: str) -> None:
    print("  " + text, file=sys.stderr, flush=True)


async def run_side(args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet import reactor, task

    from dhtkit import udpport
    from dhtkit.keyspace import key_for
    from dhtkit.overlays import OVERLAYS

    if args.no_hints:
        # Plain sockets, as before dhtkit heard ICMP errors.
        udpport.poll_based = lambda reactor: False  # type: ignore[assignment]
    entry = OVERLAYS[args.side]
    cls = entry.service()
    rng = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="dhtkit-routekill-")
    services: list[Any] = []
    for n in range(args.nodes):
        bootstrap = [services[rng.randrange(n)].address] if n else []
        service = cls(
            0,
            "127.0.0.1",
            Path(root) / "node{}".format(n),
            bootstrap,
            rpc_options={"timeout": TIMEOUT_S},
            rng=random.Random(n),
            **dict(entry.quick),
        )
        service.startService()
        services.append(service)
        await service.when_joined()
    await task.deferLater(reactor, SETTLE_S, lambda: None)
    stopped = set(rng.sample(range(1, args.nodes), round(args.kill * args.nodes)))
    for n in sorted(stopped):
        await services[n].stopService()
    left = [s for n, s in enumerate(services) if n not in stopped]
    before = sum(s.overlay.lookup_stats.stats()["lookup_timeouts"] for s in left)
    took: list[float] = []
    failed = 0
    for i in range(args.lookups):
        service = rng.choice(left)
        began = time.perf_counter()
        try:
            await service.overlay.find_responsible(key_for("route-{}".format(i)), 3)
        except Exception:
            failed += 1
        took.append((time.perf_counter() - began) * 1000)
    after = sum(s.overlay.lookup_stats.stats()["lookup_timeouts"] for s in left)
    hints = sum(s.rpc.stats()["unreachable_hints"] for s in left)
    for service in left:
        await service.stopService()
    took.sort()
    return {
        "overlay": args.side,
        "mode": "no hints" if args.no_hints else "hints",
        "stopped": len(stopped),
        "p50_ms": round(statistics.median(took), 2),
        "p90_ms": round(took[int(0.9 * (len(took) - 1))], 2),
        "max_ms": round(took[-1], 2),
        "failed": failed,
        "timeouts": after - before,
        "hints": hints,
    }


def side_main(args: argparse.Namespace) -> None:
    from twisted.internet import defer, reactor

    out: dict[str, Any] = {}

    def done(result: Any) -> None:
        out["result"] = result
        reactor.stop()

    def failed(failure: Any) -> None:
        failure.printTraceback()
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(run_side(args)).addCallbacks(done, failed))
    reactor.run()
    if "result" not in out:
        sys.exit(1)
    print(json.dumps(out["result"]))


def orchestrate(args: argparse.Namespace) -> None:
    rows = []
    for overlay in args.overlays:
        for mode in MODES:
            progress("{}, {}".format(overlay, mode))
            command = [sys.executable, str(Path(__file__).resolve()), "--side", overlay]
            for option in ("nodes", "kill", "lookups", "seed"):
                command += ["--" + option, str(getattr(args, option))]
            if mode == "no hints":
                command.append("--no-hints")
            child = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
            if child.returncode != 0:
                raise SystemExit("the {} run of {} failed".format(mode, overlay))
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(
        "Lookups one at a time after {:.0%} of {} nodes stopped (real UDP on 127.0.0.1, "
        "{} s RPC timeout), {} per row, seed {}:".format(
            args.kill, args.nodes, TIMEOUT_S, args.lookups, args.seed
        )
    )
    header = "{:<9} {:<9} {:>8} {:>8} {:>9} {:>7} {:>9} {:>6}"
    print(
        header.format(
            "overlay", "sockets", "p50 ms", "p90 ms", "max ms", "failed", "timeouts", "hints"
        )
    )
    for r in rows:
        print(
            header.format(
                r["overlay"], r["mode"], r["p50_ms"], r["p90_ms"], r["max_ms"], r["failed"],
                r["timeouts"], r["hints"],
            )
        )  # fmt: skip
    print(
        "timeouts: RPC timeouts the lookups waited out; hints: ICMP errors the nodes "
        "left heard (plain sockets hear none)."
    )
    if args.json:
        print(json.dumps({"rows": rows, "nodes": args.nodes, "kill": args.kill}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overlays", default="kademlia,chord,pastry")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--kill", type=float, default=0.33)
    parser.add_argument("--lookups", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--no-hints", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.nodes < 3 or args.lookups < 1 or not 0 < args.kill < 1:
        parser.error("--nodes must be at least 3, --lookups at least 1, --kill in (0, 1)")
    if args.side:
        side_main(args)
        return
    from dhtkit.overlays import OVERLAYS

    args.overlays = [o.strip() for o in args.overlays.split(",") if o.strip()]
    unknown = [o for o in args.overlays if o not in OVERLAYS]
    if unknown or not args.overlays:
        parser.error("--overlays: one or more of {}".format(", ".join(OVERLAYS)))
    orchestrate(args)


if __name__ == "__main__":
    main()
