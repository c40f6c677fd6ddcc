"""Every benchmark that runs on the virtual network runs to its end.

Nothing else runs the scripts of ``benchmarks/``, and one of them had
stopped with a traceback for weeks while the code under it changed. Each
runs here at its smallest size, as a user runs it (a subprocess from the
repository's root): it must exit 0 and print what it measures.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_benchmark_runs_to_its_end(script: str) -> None:
    args, expected = RUNS[script]
    run = subprocess.run(
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
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert expected in run.stdout
