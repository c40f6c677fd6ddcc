"""What the machine was doing while a benchmark measured (Linux; None elsewhere).

Shared by the benchmarks, which report the CPU that other processes used
during each measurement so that a figure taken on a busy machine says so.
"""

from __future__ import annotations

import os


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine spent busy, summed over CPUs (Linux only)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
