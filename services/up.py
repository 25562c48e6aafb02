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
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import click

from .core.clitools import Ctx, pass_ctx, run
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


def codex_snippet(base_url: str, model: str = "gpt-5.1") -> str:
    """The Codex ``config.toml`` lines that point Codex CLI at this gateway."""
    return (
        f'model = "{model}"\n'
        'model_provider = "spendgate"\n\n'
        "[model_providers.spendgate]\n"
        'name = "spendgate"\n'
        f'base_url = "{base_url}"\n'
        'env_key = "SPENDGATE_KEY"   # export SPENDGATE_KEY=<your sk-sg-... virtual key>\n'
        'wire_api = "responses"\n'
        "request_max_retries = 2\n"
        "stream_max_retries = 1\n"
    )


@click.command("up")
@click.option("--host", default=None, help="Proxy listen address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Proxy listen port (default 8080).")
@pass_ctx
def up(ctx: Ctx, host: str | None, port: int | None) -> None:
    """Run everything in one process: embedded PostgreSQL and bus, migrations, proxy, ledger, workers."""
    update: dict[str, object] = {k: v for k, v in (("host", host), ("proxy_port", port)) if v is not None}
    settings = ctx.settings.model_copy(update=update) if update else ctx.settings
    base_url = f"http://{settings.host}:{settings.proxy_port}/v1"

    def ready(runtime: Runtime) -> None:
        click.echo(f"spendgate is up: {base_url}  (data dir {settings.data_dir}, bus {settings.bus})")
        click.echo("Create a key with: spendgate keys create --developer <name> --team <team>")
        click.echo("Codex CLI: put this in $CODEX_HOME/config.toml (default ~/.codex/config.toml):\n")
        click.echo(codex_snippet(base_url))
        sys.stdout.flush()

    run(run_services(settings, on_ready=ready))
