"""Draw an overlay simulation: the hop histogram, and success and latency over time.

matplotlib is optional (the ``plot`` extra), imported only here, as
:mod:`dhtkit.gossip.plot` does for gossip; :func:`require_matplotlib` is
that module's, so both commands fail the same way without it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from dhtkit.gossip.plot import PlotUnavailable, require_matplotlib

__all__ = ["PlotUnavailable", "overlay_figure", "plot_overlay", "require_matplotlib"]


def plot_overlay(path: str | os.PathLike[str], result: Mapping[str, Any], *, title: str) -> None:
    """Write a PNG of a ``dhtkit sim OVERLAY`` report (its JSON, as a dict).

    Left: how many lookups took each number of hops, with the published
    figure as a line. Right: the success rate and the median lookup latency
    in each bin of the lookup window (the churn's effect over time).

    :raises PlotUnavailable: matplotlib is not installed.
    """
    figure = overlay_figure(result, title=title)
    figure.savefig(os.fspath(path), format="png")  # whatever the name ends with


def overlay_figure(result: Mapping[str, Any], *, title: str) -> Any:
    """The matplotlib ``Figure`` that :func:`plot_overlay` writes.

    A bin whose lookups all failed has no latency: its point is left out
    (a gap in the line), not drawn at 0 ms, which would read as fast.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    hops_axes, time_axes = figure.subplots(1, 2)
    histogram = {int(h): n for h, n in result["hop_histogram"].items()}
    hops_axes.bar(list(histogram), list(histogram.values()), color="tab:blue")
    theory = result["theory"]
    hops_axes.axvline(theory["hops"], linestyle="--", color="tab:gray", label=theory["label"])
    hops_axes.axvline(result["hops"]["mean"], color="tab:red", label="simulated mean")
    hops_axes.set_xlabel("hops")
    hops_axes.set_ylabel("lookups")
    hops_axes.legend()
    bins = [b for b in result["timeline"] if b["lookups"]]
    minutes = [b["t_s"] / 60 for b in bins]
    time_axes.plot(minutes, [b["success_rate"] for b in bins], "o-", color="tab:green")
    time_axes.set_ylim(0, 1.05)
    time_axes.set_xlabel("simulated minutes")
    time_axes.set_ylabel("reads that found the value", color="tab:green")
    latency_axes = time_axes.twinx()
    latencies = [math.nan if b["latency_ms_p50"] is None else b["latency_ms_p50"] for b in bins]
    latency_axes.plot(minutes, latencies, "s--", color="tab:purple")
    latency_axes.set_ylabel("median lookup latency (ms)", color="tab:purple")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
