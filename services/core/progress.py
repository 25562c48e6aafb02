"""Progress lines for a person waiting on a slow step (``spendgate up``'s first database set-up).

A :data:`Progress` takes one line of text; commands that have a person in front of them pass one that
prints (``up`` writes to stderr), everything else gets :func:`quiet`. :func:`ticking` says how long a
step has been running every few seconds, so a set-up that takes half a minute on a slow disk never
looks hung.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Progress = Callable[[str], None]
TICK_S = 5.0


def quiet(_line: str) -> None:
    """Say nothing (no person is waiting)."""


async def ticking(step: Awaitable[T], progress: Progress, what: str, *, every_s: float = TICK_S) -> T:
    """Await ``step``; every ``every_s`` while it runs say ``… still <what> (N s)``."""
    task = asyncio.ensure_future(step)
    started = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every_s)
            if done:
                return task.result()
            progress(f"  … still {what} ({time.monotonic() - started:.0f} s)")
    finally:
        if not task.done():
            task.cancel()
