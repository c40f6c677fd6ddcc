"""Start-up of the ``dhtkit`` command: this tree against a baseline tree, in one run.

    python benchmarks/cli_startup.py --baseline PATH [--runs 20] [--json]

Two command lines are timed, each in a fresh interpreter started as the
``dhtkit`` console script starts it (``from dhtkit.cli import main``):

- ``dhtkit --version``;
- ``dhtkit get NAME --wait 0`` against an empty data directory, so that it
  fails at once ("no running node found") after the whole start-up: the
  parser, the client, the reactor.

``--baseline`` is another checkout of dhtkit, e.g. ``git worktree add
../baseline <commit>``. The two trees take turns run by run, so that a busy
spell of the machine hits both. Reported per tree and command: the median
and the p90 of the wall time of ``--runs`` runs, and the modules loaded (the
dhtkit ones, and all), counted with ``-X importtime`` in one more run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine_busy_s  # benchmarks/machine.py

HERE = Path(__file__).resolve().parent.parent
ENTRY = "import sys; from dhtkit.cli import main; sys.exit(main())"
COMMANDS = {
    "--version": ["--version"],
    "get --wait 0": ["get", "a-name", "--wait", "0"],
}


def _run(tree: Path, argv: list[str], data_dir: str, *flags: str) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), DHTKIT_DATA_DIR=data_dir)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-c", ENTRY, *argv],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - began
    if argv == ["--version"] and done.returncode != 0:
        raise SystemExit("{}: dhtkit --version failed: {}".format(tree, done.stderr.strip()))
    return took, done.stderr


def _modules(tree: Path, argv: list[str], data_dir: str) -> tuple[int, int]:
    """The dhtkit modules and all modules that ``argv`` imports, from ``-X importtime``."""
    _, err = _run(tree, argv, data_dir, "-X", "importtime")
    names = [
        line.rsplit("|", 1)[1].strip()
        for line in err.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    ]
    names = [name for name in names if name != "imported package"]
    return sum(1 for name in names if name.split(".")[0] == "dhtkit"), len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, metavar="PATH")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = {"this tree": HERE, "baseline": args.baseline.resolve()}
    for tree in trees.values():
        if not (tree / "dhtkit" / "__init__.py").is_file():
            raise SystemExit("{} is not a dhtkit tree".format(tree))
    times: dict[tuple[str, str], list[float]] = {
        (side, command): [] for side in trees for command in COMMANDS
    }
    with tempfile.TemporaryDirectory(prefix="dhtkit-startup-") as data_dir:
        for tree in trees.values():  # a warm-up: the .pyc files, the disk cache
            for argv in COMMANDS.values():
                _run(tree, argv, data_dir)
        busy_before, began = machine_busy_s(), time.perf_counter()
        for _ in range(args.runs):
            for command, argv in COMMANDS.items():
                for side, tree in trees.items():
                    times[side, command].append(_run(tree, argv, data_dir)[0])
        wall = time.perf_counter() - began
        busy_after = machine_busy_s()
        modules = {
            (side, command): _modules(tree, argv, data_dir)
            for side, tree in trees.items()
            for command, argv in COMMANDS.items()
        }
    rows: list[dict[str, Any]] = []
    for (side, command), runs in times.items():
        ordered = sorted(runs)
        rows.append(
            {
                "tree": side,
                "command": command,
                "median_ms": round(statistics.median(ordered) * 1000, 1),
                "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
                "dhtkit_modules": modules[side, command][0],
                "all_modules": modules[side, command][1],
            }
        )
    # The CPU others used while we measured: we use one core at most.
    others = None
    if busy_before is not None and busy_after is not None:
        others = max(0.0, (busy_after - busy_before) - wall) / wall
    if args.json:
        print(json.dumps({"runs": args.runs, "others_busy_cores": others, "rows": rows}))
        return
    print("{} runs each, trees taking turns".format(args.runs))
    print("{:<10} {:<14} {:>10} {:>8} {:>15} {:>12}".format(
        "tree", "command", "median ms", "p90 ms", "dhtkit modules", "all modules"
    ))  # fmt: skip
    for row in rows:
        print("{tree:<10} {command:<14} {median_ms:>10} {p90_ms:>8} {dhtkit_modules:>15} "
              "{all_modules:>12}".format(**row))  # fmt: skip
    if others is not None:
        print("the rest of the machine kept about {:.2f} cores busy meanwhile".format(others))


if __name__ == "__main__":
    main()
