"""The proxy area's commands: ``proxy`` (the proxy alone) and ``fake-upstream``.

Imports beyond click happen inside the commands: this module is imported by every ``spendgate`` call.
"""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING

import click

from spendgate.core.clitools import FORMATS, CliError, Ctx, check_port_free, format_option, pass_ctx, run

if TYPE_CHECKING:
    from spendgate.core.config import Settings


def _with_listen(settings: Settings, host: str | None, port: int | None) -> Settings:
    update: dict[str, object] = {}
    if host:
        update["host"] = host
    if port is not None:
        update["proxy_port"] = port
    return settings.model_copy(update=update) if update else settings


@click.command("proxy")
@click.option("--host", default=None, help="Listen address (default: settings.host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Listen port (default: settings.proxy_port, 8080).")
@pass_ctx
def proxy(ctx: Ctx, host: str | None, port: int | None) -> None:
    """Run the metered proxy alone (scale-out: SPENDGATE_DATABASE_URL and SPENDGATE_BUS=kafka://…)."""
    from spendgate.proxy.service import serve
    from spendgate.runtime import run_services

    settings = _with_listen(ctx.settings, host, port)
    check_port_free(settings.host, settings.proxy_port, "--port")
    run(run_services(settings, {"proxy": serve}), serving=True)


@click.command("fake-upstream")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=9090, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Delay before the headers.")
@click.option("--chunks", type=click.IntRange(1), default=8, show_default=True, help="Text deltas per answer.")
@click.option("--chunk-interval-ms", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Pause between deltas.")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Keep what was served for GET /_fake/served (off for long benchmarks).")
@click.option("--azure-api-key", default=None,
              help="The api-key its Azure OpenAI routes (/openai/...) accept; unset: any non-empty one.")
def fake_upstream(host: str, port: int, latency_ms: float, chunks: int, chunk_interval_ms: float,
                  record: bool, azure_api_key: str | None) -> None:
    """Serve a fake OpenAI API (Responses, Chat Completions, Azure OpenAI's paths) for tests, benchmarks
    and demos. POST /_fake/script {"scenarios": [...]} scripts the next answers: error:429@5 (a 429 with
    Retry-After: 5), error:503, close (connection dropped), hang."""
    from spendgate.proxy.fake_upstream import FakeConfig, run_fake_upstream

    check_port_free(host, port, "--port")
    config = FakeConfig(latency_ms=latency_ms, chunks=chunks, chunk_interval_ms=chunk_interval_ms, record=record,
                        azure_api_key=azure_api_key)

    async def main() -> None:
        import asyncio

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        click.echo(f"fake upstream on http://{host}:{port}/v1", err=True)
        await run_fake_upstream(host, port, config, stop)

    run(main())


def _base_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    from spendgate.domain.errors import ConfigError
    from spendgate.proxy.me_client import me_url

    value = value or DEFAULT_BASE_URL
    try:
        me_url(value)
    except ConfigError as exc:
        raise click.BadParameter(exc.message) from None
    return value


DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"


@click.command("me")
@click.option("--key", envvar="OPENAI_API_KEY", default=None, metavar="SK_SG_KEY",
              help="Your spendgate virtual key (sk-sg-...). Default: OPENAI_API_KEY.")
@click.option("--base-url", envvar="OPENAI_BASE_URL", default=None, metavar="URL", callback=_base_url,
              help=f"The gateway's URL, as your agent uses it. Default: OPENAI_BASE_URL, else {DEFAULT_BASE_URL}.")
@click.option("--sessions", type=click.IntRange(0, 50), default=10, show_default=True,
              help="How many of your costliest sessions this month to list.")
@format_option(*FORMATS)
def me(key: str | None, base_url: str, sessions: int, fmt: str) -> None:
    """What you have left: your budgets (yours, your team's, your cost center's, the org's), spent, stage and
    reset time, today's cost and your costliest sessions, asked of the gateway with your virtual key.
    CSV lists the budget lines; JSON is the gateway's whole answer."""
    from spendgate.proxy.me_client import fetch_me, show

    if not key or not key.strip():
        raise CliError("no key: pass your spendgate virtual key with --key or set OPENAI_API_KEY", exit_code=2)
    click.echo(show(run(fetch_me(base_url, key, sessions=sessions)), fmt))


COMMANDS: list[click.Command] = [proxy, fake_upstream, me]
