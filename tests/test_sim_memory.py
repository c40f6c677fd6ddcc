"""The memory check that runs before a large simulation."""

from __future__ import annotations

from pathlib import Path

import pytest

from dhtkit.sim.memory import GIB, available_memory, check_fits


def test_reads_memavailable_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   1048576 kB\n")
    assert available_memory(str(meminfo)) == GIB


@pytest.mark.parametrize(
    "text", ["", "MemTotal: 5 kB\n", "MemAvailable:\n", "MemAvailable: lots kB\n"]
)
def test_unknown_when_meminfo_lacks_a_figure(tmp_path: Path, text: str) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(text)
    assert available_memory(str(meminfo)) is None


def test_unknown_without_meminfo(tmp_path: Path) -> None:
    assert available_memory(str(tmp_path / "absent")) is None


def test_refuses_what_does_not_fit_and_says_how_much_it_needs() -> None:
    check_fits(1000, 1000, 1_000_000)
    check_fits(10**9, 10**6, None)
    with pytest.raises(ValueError, match=r"1,001 nodes need about 0\.0 GiB"):
        check_fits(1001, 1000, 1_000_000)
