"""Wait on a condition with a deadline: the only synchronisation tests use (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, until: Callable[[T], bool] = bool, timeout_s: float = 10.0,
    interval_s: float = 0.02, what: str = "condition",
) -> T:
    """Call ``probe`` until ``until(result)`` holds; fail with the last result after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {result!r}")
        await asyncio.sleep(interval_s)
