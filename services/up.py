"""``spendgate up``: the embedded default in one process.

Embedded PostgreSQL under the data dir (unless ``SPENDGATE_DATABASE_URL`` is set), the Postgres bus
(unless ``SPENDGATE_BUS`` names Kafka), migrations, then every service that has landed, each a
``serve(runtime, stop)`` coroutine in ``spendgate.<area>.service``. SIGTERM / SIGINT set ``stop``;
each service drains within its own deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from .core.config import Settings
from .core.logs import get_logger
from .core.runtime import Runtime, open_runtime

log = get_logger(__name__)

SERVICES = ("ledger", "proxy", "alerter", "forecaster", "admin")

Serve = Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]]


def landed_services(names: tuple[str, ...] = SERVICES) -> dict[str, Serve]:
    found: dict[str, Serve] = {}
    for name in names:
        try:
            module = importlib.import_module(f"spendgate.{name}.service")
        except ModuleNotFoundError as exc:
            if exc.name != f"spendgate.{name}.service":
                raise
            continue
        found[name] = module.serve
    return found


async def run_services(settings: Settings, names: tuple[str, ...] = SERVICES,
                       *, on_ready: Callable[[Runtime], None] | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with open_runtime(settings) as runtime:
        services = landed_services(names)
        tasks = [asyncio.create_task(fn(runtime, stop), name=name) for name, fn in services.items()]
        log.info("services started", services=sorted(services), bus=settings.bus)
        if on_ready is not None:
            on_ready(runtime)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
