"""GossipConfig: validated options and what they imply."""

from __future__ import annotations

import pytest

from dhtkit.gossip.config import GossipConfig


def test_defaults_are_anti_entropy_push_pull() -> None:
    config = GossipConfig()
    assert (config.model, config.mode) == ("si", "pushpull")
    assert config.push and config.pull


@pytest.mark.parametrize(("mode", "push", "pull"), [("push", True, False), ("pull", False, True)])
def test_modes(mode: str, push: bool, pull: bool) -> None:
    config = GossipConfig(mode=mode)
    assert (config.push, config.pull) == (push, pull)


@pytest.mark.parametrize(
    ("variant", "feedback", "counter"),
    [
        ("coin", True, False),
        ("counter", True, True),
        ("blind-coin", False, False),
        ("blind-counter", False, True),
    ],
)
def test_variants(variant: str, feedback: bool, counter: bool) -> None:
    config = GossipConfig(model="sir", variant=variant, k=3)
    assert (config.feedback, config.counter) == (feedback, counter)


@pytest.mark.parametrize(
    "options",
    [
        {"model": "sis"},
        {"mode": "shove"},
        {"variant": "dice"},
        {"k": 0.5},
        {"k": 0},
        {"variant": "counter", "k": 2.5},
        {"period": 0},
        {"jitter": 1.5},
        {"ttl": -1},
        {"max_updates": 0},
        {"max_update_bytes": 5000},
    ],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        GossipConfig(**options)  # type: ignore[arg-type]
