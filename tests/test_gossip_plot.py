"""The plot of a simulation beside the theory (needs the ``plot`` extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dhtkit.gossip import theory
from dhtkit.gossip.plot import PlotUnavailable, plot_susceptible, require_matplotlib


def test_a_plot_is_written_as_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "gossip.png"
    curve, label = theory.susceptible_curve("si", "pull", 100, 12)
    simulated = [0.99, 0.98, 0.9, 0.6, 0.2, 0.01, 0.0]
    plot_susceptible(out, simulated, curve, title="pull", theory_label=label, nodes=100)
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_without_matplotlib_plotting_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailable, match="dhtkit\\[plot\\]"):
        require_matplotlib()
    with pytest.raises(PlotUnavailable):
        plot_susceptible(tmp_path / "x.png", [1.0], [1.0], title="x")
    assert not (tmp_path / "x.png").exists()
