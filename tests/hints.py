"""A stand-in for the RPC layer's ``watch_unreachable``, which tests drive by hand."""

from __future__ import annotations

from typing import Any


class Watches:
    """What an RPC layer's watch_unreachable keeps: address -> hints."""

    def __init__(self) -> None:
        self.hints: dict[Any, list[Any]] = {}

    def watch(self, address: Any, hint: Any) -> Any:
        self.hints.setdefault(address, []).append(hint)

        def unwatch() -> None:  # as the RPC layer's: once told, nothing to stop
            if hint in self.hints.get(address, []):
                self.hints[address].remove(hint)

        return unwatch

    def unreachable(self, address: Any) -> None:
        """An ICMP error for ``address``: tell its watchers, once."""
        for hint in self.hints.pop(address, []):
            hint()
