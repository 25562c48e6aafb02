"""The supervised-task helper: restarts with capped backoff, one log line per failure, health states.

The supervisor's sleep is injected (it records the delay and returns at once), so nothing here waits
on a clock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest
import structlog
from structlog.testing import capture_logs

from spendgate.core import supervisor as supervisor_module
from spendgate.core.health import Health, State
from spendgate.core.supervisor import Backoff, Beat, Loop, Supervisor
from spendgate.domain.errors import BusUnavailableError, ConfigError
from tests.support.waiting import eventually

FAILED = "background task failed; restarting"


@pytest.fixture(autouse=True)
def uncached_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh logger proxy per test: the module's own may have cached the processors of a test that ran
    before (cache_logger_on_first_use), and would then bypass ``capture_logs``."""
    monkeypatch.setattr(supervisor_module, "log", structlog.get_logger(supervisor_module.__name__))


class TopOfRange(random.Random):
    """Jitter that always picks the top of its range: every delay is the ceiling itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Recorder:
    """The injected sleep: records each delay and the task's state at that moment, returns at once."""

    def __init__(self, health: Health, name: str = "t") -> None:
        self.health, self.name = health, name
        self.delays: list[float] = []
        self.states: list[State] = []

    async def __call__(self, delay_s: float, stop: asyncio.Event) -> None:
        self.delays.append(delay_s)
        self.states.append(self.health.tasks()[self.name])


def supervisor(health: Health, sleep: Recorder, *, base_s: float = 0.5, cap_s: float = 4.0) -> Supervisor:
    return Supervisor(health, Backoff(base_s=base_s, cap_s=cap_s), sleep=sleep, rng=TopOfRange())


def failing(times: int) -> Loop:
    """A loop that raises on its first ``times`` runs, then beats and runs until stop."""
    runs = 0

    async def loop(stop: asyncio.Event, beat: Beat) -> None:
        nonlocal runs
        runs += 1
        if runs <= times:
            raise BusUnavailableError(f"poisoned (run {runs})")
        beat()
        await stop.wait()

    return loop


def errors(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in logs if e["log_level"] == "error"]


def test_backoff_grows_from_base_and_is_capped() -> None:
    """The ceiling doubles per attempt up to the cap, jitter stays within its upper half, huge attempts stay capped."""
    b = Backoff(base_s=0.5, cap_s=10.0)
    assert [b.ceiling_s(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.ceiling_s(100_000) == 10.0
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = b.ceiling_s(attempt)
        assert all(ceiling / 2 <= b.delay_s(attempt, rng) <= ceiling for _ in range(50))


async def test_failures_restart_with_growing_capped_delays_and_one_log_line_each() -> None:
    """Five failures: restarts after 0.5, 1, 2, 4, 4 s, one error line each (traceback, name, attempt, delay)."""
    health = Health()
    sleep = Recorder(health)
    stop = asyncio.Event()
    sup = supervisor(health, sleep)
    with capture_logs() as logs:
        task = asyncio.create_task(sup.run("t", failing(5), stop))
        await _until(lambda: health.tasks().get("t") is State.OK and len(sleep.delays) == 5)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert sleep.delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    lines = errors(logs)
    assert [e["event"] for e in lines] == [FAILED] * 5
    assert [e["attempt"] for e in lines] == [1, 2, 3, 4, 5]
    assert [e["retry_in_s"] for e in lines] == sleep.delays
    assert all(e["component"] == "t" and e["exc_info"] is True for e in lines)


async def test_health_goes_ok_degraded_ok() -> None:
    """A task is ok while running, degraded from a failure until its next good iteration, then ok again."""
    health = Health()
    sleep = Recorder(health)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor(health, sleep).run("ledger.consumer", failing(2), stop))
    sleep.name = "ledger.consumer"
    await _until(lambda: len(sleep.delays) == 2 and health.tasks()["ledger.consumer"] is State.OK)
    assert sleep.states == [State.DEGRADED, State.DEGRADED]
    assert health.components() == {"ledger": State.OK}
    stop.set()
    await asyncio.wait_for(task, 5)
    assert health.tasks() == {}


async def test_a_good_iteration_resets_the_backoff() -> None:
    """After a beat the next failure waits the base delay again, not the grown one."""
    health = Health()
    sleep = Recorder(health)
    stop = asyncio.Event()
    runs = 0

    async def loop(stop: asyncio.Event, beat: Beat) -> None:
        nonlocal runs
        runs += 1
        if runs in (1, 2, 4):
            raise BusUnavailableError("down")
        beat()
        if runs == 3:
            raise BusUnavailableError("down again, after a good iteration")
        await stop.wait()

    task = asyncio.create_task(supervisor(health, sleep).run("t", loop, stop))
    await _until(lambda: runs == 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sleep.delays == [0.5, 1.0, 0.5, 1.0]


async def test_returning_once_stop_is_set_is_not_a_failure() -> None:
    """A loop that returns after stop is set is neither logged nor restarted, and its entry is released."""
    health = Health()
    sleep = Recorder(health)
    stop = asyncio.Event()
    started = asyncio.Event()

    async def loop(stop: asyncio.Event, beat: Beat) -> None:
        started.set()
        await stop.wait()

    with capture_logs() as logs:
        task = asyncio.create_task(supervisor(health, sleep).run("t", loop, stop))
        await asyncio.wait_for(started.wait(), 5)
        assert health.report() == {"status": "ok", "components": {"t": "ok"}, "tasks": {"t": "ok"}}
        stop.set()
        await asyncio.wait_for(task, 5)
    assert logs == [] and sleep.delays == []
    assert health.tasks() == {}


async def test_returning_before_stop_leaves_the_task_down() -> None:
    """A loop that ends on its own is not restarted; a warning says so and the task shows down."""
    health = Health()

    async def loop(stop: asyncio.Event, beat: Beat) -> None:
        return None

    with capture_logs() as logs:
        await asyncio.wait_for(supervisor(health, Recorder(health)).run("t", loop, asyncio.Event()), 5)
    assert [e["event"] for e in logs] == ["background task returned before it was asked to stop"]
    assert health.tasks() == {"t": State.DOWN}
    assert health.status() is State.DEGRADED


async def test_cancellation_propagates_through_the_loop_and_the_backoff() -> None:
    """Cancelling a supervised task cancels the running loop (its cleanup runs) and is not a failure."""
    health = Health()
    cleaned = asyncio.Event()
    started = asyncio.Event()

    async def loop(stop: asyncio.Event, beat: Beat) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    with capture_logs() as logs:
        task = asyncio.create_task(Supervisor(health).run("t", loop, asyncio.Event()))
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert cleaned.is_set() and errors(logs) == [] and health.tasks() == {}

    backing_off = asyncio.Event()

    async def parked(delay_s: float, stop: asyncio.Event) -> None:
        backing_off.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(Supervisor(health, sleep=parked).run("t", failing(1), asyncio.Event()))
    await asyncio.wait_for(backing_off.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert health.tasks() == {}


async def test_a_fatal_error_is_raised_not_retried() -> None:
    """An error listed as fatal (a ConfigError) is logged once, leaves the task down and reaches the caller."""
    health = Health()
    sleep = Recorder(health)

    async def loop(stop: asyncio.Event, beat: Beat) -> None:
        raise ConfigError("no price for gpt-7-mini")

    with capture_logs() as logs, pytest.raises(ConfigError):
        await supervisor(health, sleep).run("t", loop, asyncio.Event(), fatal=(ConfigError,))
    assert sleep.delays == [] and len(errors(logs)) == 1
    assert health.tasks() == {"t": State.DOWN}


async def test_gives_up_after_max_attempts() -> None:
    """With max_attempts the task stops retrying after that many failures in a row and shows down."""
    health = Health()
    sleep = Recorder(health)
    with capture_logs() as logs:
        await asyncio.wait_for(supervisor(health, sleep).run("t", failing(10), asyncio.Event(), max_attempts=3), 5)
    assert sleep.delays == [0.5, 1.0]
    assert [e["event"] for e in errors(logs)] == [FAILED, FAILED, "background task failed; giving up"]
    assert health.tasks() == {"t": State.DOWN}


async def test_a_failure_while_stopping_is_logged_and_not_retried() -> None:
    """A loop that raises after stop was set is logged once and not restarted."""
    health = Health()
    sleep = Recorder(health)
    stop = asyncio.Event()

    async def loop(stop: asyncio.Event, beat: Beat) -> None:
        stop.set()
        raise BusUnavailableError("closing")

    with capture_logs() as logs:
        await asyncio.wait_for(supervisor(health, sleep).run("t", loop, stop), 5)
    assert sleep.delays == []
    assert [e["event"] for e in errors(logs)] == ["background task failed while stopping"]


async def test_ok_on_start_counts_each_restart_as_ok() -> None:
    """A task that never beats (a whole service) is ok again as soon as it is restarted."""
    health = Health()
    sleep = Recorder(health)
    stop = asyncio.Event()
    runs = 0

    async def serve(stop: asyncio.Event, beat: Beat) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise BusUnavailableError("start-up failed")
        await stop.wait()

    task = asyncio.create_task(supervisor(health, sleep).run("t", serve, stop, ok_on_start=True))
    await _until(lambda: runs == 2)
    assert sleep.states == [State.DEGRADED] and health.tasks() == {"t": State.OK}
    stop.set()
    await asyncio.wait_for(task, 5)


def test_health_rolls_tasks_up_into_components() -> None:
    """A component is ok when all its tasks are, down when all are, else degraded; status is ok only if all are ok."""
    health = Health()
    consumer, outbox, proxy = health.slot("ledger.consumer"), health.slot("ledger.outbox"), health.slot("proxy")
    worker_a, worker_b = health.slot("alerter.delivery"), health.slot("alerter.delivery")
    for slot in (consumer, outbox, proxy, worker_a, worker_b):
        slot.state = State.OK
    assert health.report() == {
        "status": "ok",
        "components": {"alerter": "ok", "ledger": "ok", "proxy": "ok"},
        "tasks": {"alerter.delivery": "ok", "ledger.consumer": "ok", "ledger.outbox": "ok", "proxy": "ok"},
    }
    consumer.state = State.DEGRADED
    worker_a.state = State.DOWN
    assert health.components() == {"alerter": State.DEGRADED, "ledger": State.DEGRADED, "proxy": State.OK}
    worker_b.state = State.DOWN
    assert health.components()["alerter"] is State.DOWN
    assert health.status() is State.DEGRADED
    health.release(worker_a)
    health.release(worker_b)
    assert "alerter" not in health.components()


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Yield to the supervised task until ``condition`` holds (the injected sleep returns at once)."""

    async def probe() -> bool:
        return condition()

    await eventually(probe, timeout_s=timeout_s, interval_s=0, what="the supervised task")
