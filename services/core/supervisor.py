"""The one supervised-task helper: every background loop of every service runs under it.

A *loop* is ``async def run(stop, beat)``: it works until ``stop`` is set and then returns, calls
``beat()`` after each iteration that went well, and raises when something fails. The supervisor

- restarts a loop that raised, after a capped exponential backoff with jitter
  (:class:`Backoff`, from ``settings.supervisor``), for as long as it takes;
- logs one structured line per failure, with the traceback, the task's name, the attempt and the
  delay before the next one;
- keeps the task's state in the process's :class:`~spendgate.core.health.Health`: ``ok`` while it
  runs and its last iteration went well, ``degraded`` from a failure until the next ``beat()``,
  ``down`` once it stopped or gave up.

A loop that returns once ``stop`` is set is not a failure. Cancellation propagates. The loop keeps
its own per-iteration logic (what to wait for, what to do); what happens when it fails is decided
here only, so this module holds the one ``except Exception`` of the background loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from spendgate.core.health import Health, Slot, State
from spendgate.core.logs import get_logger

log = get_logger(__name__)

Beat = Callable[[], None]
"""Called by a loop after each iteration that went well."""
Loop = Callable[[asyncio.Event, Beat], Awaitable[None]]
"""``run(stop, beat)``: one run of a background loop; returns once ``stop`` is set, raises on failure."""
Sleep = Callable[[float, asyncio.Event], Awaitable[None]]
"""Wait ``delay_s`` or until ``stop`` is set, whichever comes first."""


def no_beat() -> None:
    """The beat of a loop run outside a supervisor (a test, a benchmark): nobody listens."""


async def wait_or_stop(delay_s: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay_s):
            await stop.wait()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with equal jitter: attempt ``n`` waits between half and all of
    ``min(cap_s, base_s * 2 ** (n - 1))``."""

    base_s: float = 0.5
    cap_s: float = 10.0

    def ceiling_s(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2.0 ** min(max(attempt - 1, 0), 64))

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        ceiling = self.ceiling_s(attempt)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass
class Supervisor:
    """Runs loops under one restart policy and records their health in ``health``."""

    health: Health
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Sleep = wait_or_stop
    rng: random.Random = field(default_factory=random.Random)

    def spawn(self, name: str, loop: Loop, stop: asyncio.Event, *, ok_on_start: bool = False,
              fatal: tuple[type[Exception], ...] = ()) -> asyncio.Task[None]:
        """:meth:`run` in a task of its own, named ``name``."""
        return asyncio.create_task(self.run(name, loop, stop, ok_on_start=ok_on_start, fatal=fatal), name=name)

    async def run(self, name: str, loop: Loop, stop: asyncio.Event, *, ok_on_start: bool = False,
                  fatal: tuple[type[Exception], ...] = (), max_attempts: int | None = None) -> None:
        """Run ``loop`` until ``stop`` is set, restarting it whenever it raises.

        ``ok_on_start``: the loop never beats (a whole service), so each start counts as ok.
        ``fatal``: errors no restart can cure (a :class:`~spendgate.domain.errors.ConfigError`):
        logged, the task goes down and the error is raised to the caller.
        ``max_attempts``: give up (logged, ``down``) after this many failures in a row.
        """
        slot = self.health.slot(name)
        slot.state = State.OK
        beat = _beater(slot)
        ended_as_asked = False
        try:
            while True:
                if ok_on_start:
                    beat()
                try:
                    await loop(stop, beat)
                except fatal:
                    log.exception("background task failed and cannot recover", component=name)
                    slot.state = State.DOWN
                    raise
                except Exception:  # the supervisor: log with the traceback, back off, restart
                    slot.failures += 1
                    if stop.is_set():
                        log.exception("background task failed while stopping", component=name)
                        ended_as_asked = True
                        return
                    if max_attempts is not None and slot.failures >= max_attempts:
                        log.exception("background task failed; giving up", component=name,
                                      attempt=slot.failures)
                        slot.state = State.DOWN
                        return
                    delay_s = self.backoff.delay_s(slot.failures, self.rng)
                    slot.state = State.DEGRADED
                    log.exception("background task failed; restarting", component=name, attempt=slot.failures,
                                  retry_in_s=round(delay_s, 3))
                    await self.sleep(delay_s, stop)
                    if stop.is_set():
                        ended_as_asked = True
                        return
                else:
                    ended_as_asked = stop.is_set()
                    if not ended_as_asked:
                        log.warning("background task returned before it was asked to stop", component=name)
                    return
        except asyncio.CancelledError:
            ended_as_asked = True
            raise
        finally:
            slot.state = State.DOWN
            if ended_as_asked:
                self.health.release(slot)


def _beater(slot: Slot) -> Beat:
    def beat() -> None:
        if slot.state is State.DEGRADED:
            log.info("background task recovered", component=slot.name, after_failures=slot.failures)
        slot.failures = 0
        slot.state = State.OK

    return beat
