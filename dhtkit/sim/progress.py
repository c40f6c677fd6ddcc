"""A progress bar on stderr for long simulations: stage, count, rate and ETA.

``dhtkit sim`` prints its JSON on stdout; the bar goes to stderr, drawn in
place with carriage returns, and only where someone watches (a terminal)
unless asked for. The first and the last state of each stage are always
drawn; in between, at most one redraw every :attr:`Progress.every` seconds of
wall time, so that a bar costs nothing next to the simulation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

__all__ = ["Progress", "simulated", "wanted"]

_WIDTH = 24


def wanted(stream: IO[str], forced: bool) -> bool:
    """Whether to draw: asked for (``--progress``), or ``stream`` is a terminal."""
    if forced:
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 86400:
        return "{}d{:02d}h".format(seconds // 86400, seconds % 86400 // 3600)
    if seconds >= 3600:
        return "{}h{:02d}m".format(seconds // 3600, seconds % 3600 // 60)
    return "{}m{:02d}s".format(seconds // 60, seconds % 60)


def simulated(elapsed: float, total: float) -> str:
    """A note for :meth:`Progress.note`: ``simulated 3h20m of 30d00h``."""
    return "simulated {} of {}".format(_duration(elapsed), _duration(total))


class Progress:
    """One bar, stage after stage (``joined``, ``put``, ``looked up``, ``rounds``).

    :param stream: where to draw (stderr); None draws nothing.
    :param every: seconds of wall time between redraws.
    :param clock: the wall clock (injected in tests).
    """

    def __init__(
        self,
        stream: IO[str] | None,
        *,
        every: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.every = every
        self.clock = clock
        self.name = ""
        self.total = 0
        self.done = 0
        self._started = 0.0
        self._drawn = float("-inf")
        self._note = ""

    def stage(self, name: str, total: int) -> None:
        """Begin counting ``total`` things called ``name``."""
        self.name, self.total, self.done = name, total, 0
        self._note = ""
        self._started = self.clock()
        self._draw(force=True)

    def advance(self, count: int = 1) -> None:
        """``count`` more done; the stage ends (with a newline) when all are."""
        self.done += count
        finished = self.done >= self.total
        self._draw(force=finished)
        if finished and self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        """Show ``text`` after the bar, until the stage ends: how far a stage
        has gone between its counts (the simulated time of a long lookup
        window, whose lookups may be hours apart)."""
        self._note = text
        self._draw(force=False)

    def finish(self) -> None:
        """End the stage where it stands (a spread that ended before its round limit)."""
        if self.done < self.total:
            self.total = self.done
            self._draw(force=True)
            if self.stream is not None:
                self.stream.write("\n")
                self.stream.flush()

    def line(self) -> str:
        """The bar as it stands: ``name done/total [###...] rate/s ETA``."""
        total = max(self.total, 1)
        filled = min(_WIDTH, _WIDTH * self.done // total)
        elapsed = self.clock() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.done >= self.total:
            tail = "in {}".format(_duration(elapsed))
        elif rate > 0:
            tail = "ETA {}".format(_duration((self.total - self.done) / rate))
        else:
            tail = "ETA ?"
        bar = "{} {:,}/{:,} [{}{}] {:,.1f}/s {}".format(
            self.name, self.done, self.total, "#" * filled, "." * (_WIDTH - filled), rate, tail
        )
        return "{}, {}".format(bar, self._note) if self._note else bar

    def _draw(self, force: bool) -> None:
        if self.stream is None:
            return
        now = self.clock()
        if not force and now - self._drawn < self.every:
            return
        self._drawn = now
        # Padded, so that a shorter line hides the end of a longer one.
        self.stream.write("\r" + self.line().ljust(78))
        self.stream.flush()
