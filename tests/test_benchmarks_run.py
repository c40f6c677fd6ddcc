"""The benchmarks run to their end, and kademlia_lookup reads back what it puts.

Nothing else runs the scripts of ``benchmarks/``, and one of them had
stopped with a traceback for weeks while the code under it changed. Each
runs here at its smallest size, as a user runs it (a subprocess from the
repository's root): it must exit 0 and print what it measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RUNS = {
    "hostile_values.py": ([], '"gets_failed": 0'),
    "join_cost.py": (["--overlay", "kademlia", "--nodes", "60", "--joins", "2"], "per join:"),
    "sim_memory.py": (["--overlay", "chord", "--nodes", "50"], "sessions per node"),
    "gossip_rounds.py": (["--sizes", "100", "--seeds", "1"], "100"),
    "pastry_lookup.py": (
        ["--min-exp", "7", "--max-exp", "7", "--lookups", "20", "--settle", "10"],
        "128",
    ),
    "sybil_eclipse.py": (["--nodes", "100", "--keys", "2", "--reads", "5"], "eclipsed"),
    "listen_churn.py": (["--nodes", "20", "--versions", "3"], "in order once: True"),
    "hostile_datagrams.py": (["--seconds", "0.05", "--flood", "5000"], "flood"),
    "value_store.py": (["--records", "50"], "puts/s"),
    "store_quota.py": ([], "refused_fraction"),
}


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/script`` as a user does, from the repository's root."""
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        # hostile_values builds its networks with the tests' helpers (its
        # README line sets PYTHONPATH=. too); the others use the installed dhtkit.
        env={**os.environ, "PYTHONPATH": str(ROOT)} if script == "hostile_values.py" else None,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_benchmark_runs_to_its_end(script: str) -> None:
    args, expected = RUNS[script]
    run = run_benchmark(script, *args)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert expected in run.stdout


@pytest.mark.parametrize("kind", ["plain", "immutable", "signed"])
def test_every_get_of_kademlia_lookup_returns_the_value_put(kind: str) -> None:
    # Its figures mean something only if its gets find what its puts
    # stored: dhtkit's side, a few nodes, before and after a kill.
    run = run_benchmark(
        "kademlia_lookup.py",
        *("--side", "ours", "--nodes", "8", "--puts", "4", "--gets", "4"),
        *("--kind", kind, "--store", "memory", "--kill", "0.25"),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.splitlines()[0])
    assert report["puts_ok"] == report["puts"] == 4
    assert report["get_outcomes"] == {"right": 4}
    assert report["after_kill"]["get_outcomes"] == {"right": 4}
