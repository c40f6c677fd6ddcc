"""The progress bar: stages, rate, ETA, throttling, and when it is drawn."""

from __future__ import annotations

import io

from dhtkit.sim.progress import Progress, simulated, wanted


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_stage_draws_count_rate_and_eta_then_ends_with_a_newline() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = Progress(out, every=1.0, clock=clock)
    bar.stage("joined", 100)
    clock.now += 10
    bar.advance(25)
    assert "joined 25/100" in bar.line() and "2.5/s" in bar.line() and "ETA 0m30s" in bar.line()
    clock.now += 30
    bar.advance(75)
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert "joined 100/100 [########################] 2.5/s in 0m40s" in text


def test_redraws_are_throttled_but_the_last_is_always_drawn() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = Progress(out, every=1.0, clock=clock)
    bar.stage("looked up", 1000)
    for _ in range(999):
        bar.advance()
    assert out.getvalue().count("\r") == 1  # the first state only: no time passed
    bar.advance()
    assert out.getvalue().count("\r") == 2 and "1,000/1,000" in out.getvalue()


def test_a_redraw_once_the_interval_passed() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = Progress(out, every=1.0, clock=clock)
    bar.stage("put", 10)
    bar.advance()
    clock.now += 1.5
    bar.advance()
    assert out.getvalue().count("\r") == 2 and "put 2/10" in out.getvalue()


def test_finish_ends_a_stage_early() -> None:
    out = io.StringIO()
    bar = Progress(out, clock=_Clock())
    bar.stage("rounds", 150)
    bar.advance(8)
    bar.finish()
    assert out.getvalue().endswith("\n") and "rounds 8/8" in out.getvalue()


def test_without_a_stream_nothing_is_drawn() -> None:
    bar = Progress(None)
    bar.stage("joined", 2)
    bar.advance(2)
    assert bar.done == 2


def test_drawn_on_a_terminal_or_when_asked() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wanted(Terminal(), forced=False)
    assert not wanted(io.StringIO(), forced=False)
    assert wanted(io.StringIO(), forced=True)


def test_a_note_follows_the_bar_until_the_next_stage() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = Progress(out, every=1.0, clock=clock)
    bar.stage("looked up", 10)
    bar.note(simulated(3 * 3600 + 20 * 60, 30 * 86400))
    assert bar.line().endswith(", simulated 3h20m of 30d00h")
    bar.stage("rounds", 5)
    assert "simulated" not in bar.line()
