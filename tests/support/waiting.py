"""The one bounded wait of the real-socket tests: poll a condition on the reactor."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from twisted.internet import task


async def until(reactor: Any, predicate: Callable[[], Any], what: str = "the condition",
                seconds: float = 30.0, step: float = 0.02) -> Any:
    """Poll ``predicate()`` every ``step`` seconds until it returns something truthy, and
    return that; a predicate may be async (its result is awaited).  Fails after ``seconds``."""
    for _ in range(max(1, int(seconds / step))):
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await task.deferLater(reactor, step, lambda: None)
    raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")


__all__ = ["until"]
