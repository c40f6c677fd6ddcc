"""Shared fixtures: hypothesis profiles and a guard against logged errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from twisted.logger import LogLevel, globalLogPublisher

settings.register_profile(
    "ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


class LoggedErrors:
    """Errors logged during a test; a test that expects some takes them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical) or "log_failure" in event:
            self.events.append(event)

    def take(self) -> list[dict[str, Any]]:
        """Return the errors logged so far and forget them."""
        taken, self.events = self.events, []
        return taken


@pytest.fixture(autouse=True)
def logged_errors() -> Iterator[LoggedErrors]:
    """Fail any test that logs an error it did not take."""
    errors = LoggedErrors()
    globalLogPublisher.addObserver(errors)
    try:
        yield errors
    finally:
        globalLogPublisher.removeObserver(errors)
    left = errors.take()
    if left:
        pytest.fail("unexpected errors logged: {}".format([e.get("log_format") for e in left]))
