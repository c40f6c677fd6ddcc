"""Draw a simulation's susceptible fraction per round beside the theory.

matplotlib is an optional dependency (the ``plot`` extra) and is imported
only when a plot is drawn; :func:`require_matplotlib` lets a command fail
early with a clear message.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`PlotUnavailable` unless matplotlib can be imported."""
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise PlotUnavailable(
            "plotting needs matplotlib: pip install 'dhtkit[plot]' (or matplotlib)"
        )


def plot_susceptible(
    path: str | os.PathLike[str],
    simulated: Sequence[float],
    theory: Sequence[float],
    *,
    title: str,
    theory_label: str = "theory",
    nodes: int | None = None,
) -> None:
    """Write a PNG of the susceptible fraction per round, log scale.

    ``simulated[i]`` and ``theory[i]`` are the fractions after round ``i``
    (0: before the first round). Zeros cannot be drawn on a log scale: the
    curves stop there, and with ``nodes`` given a dotted line marks one node.

    :raises PlotUnavailable: matplotlib is not installed.
    """
    require_matplotlib()
    # Not pyplot: no global figure state, no GUI backend chosen behind our back.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(range(len(theory)), list(theory), "-", color="tab:gray", label=theory_label)
    axes.plot(range(len(simulated)), list(simulated), "o-", color="tab:blue", label="simulation")
    if nodes:
        axes.axhline(1 / nodes, linestyle=":", color="tab:red", label="one node (1/N)")
    axes.set_yscale("log", nonpositive="mask")
    axes.set_xlabel("round")
    axes.set_ylabel("susceptible fraction")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.fspath(path), format="png")  # whatever the name ends with
