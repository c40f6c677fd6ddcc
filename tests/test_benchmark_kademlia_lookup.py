"""benchmarks/kademlia_lookup.py reads back what it puts, in every mode.

The benchmark's figures mean something only if its gets find the values
its puts stored: a run of dhtkit's side with a few nodes, for each kind of
value, must read every one back (before and after a kill).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "kademlia_lookup.py"


@pytest.mark.parametrize("kind", ["plain", "immutable", "signed"])
def test_every_get_of_the_benchmark_returns_the_value_put(kind: str) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--side",
            "ours",
            "--nodes",
            "8",
            "--puts",
            "4",
            "--gets",
            "4",
            "--kind",
            kind,
            "--store",
            "memory",
            "--kill",
            "0.25",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(run.stdout.splitlines()[0])
    assert report["puts_ok"] == report["puts"] == 4
    assert report["get_outcomes"] == {"right": 4}
    assert report["after_kill"]["get_outcomes"] == {"right": 4}
