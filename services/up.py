"""``spendgate up``: the embedded default in one process.

Embedded PostgreSQL under the data dir (unless ``SPENDGATE_DATABASE_URL`` is set), the Postgres bus
(unless ``SPENDGATE_BUS`` names Kafka), migrations, then every service of :func:`services`, each a
``serve(runtime, stop)`` coroutine of its area. SIGTERM / SIGINT set ``stop``;
each service drains within its own deadline.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from spendgate.core.clitools import Ctx, check_port_free, pass_ctx, run, warn

if TYPE_CHECKING:
    from spendgate.core.config import Settings
    from spendgate.runtime import Runtime, Serve


def services() -> dict[str, Serve]:
    """Every service ``spendgate up`` runs, named in code: a missing one is an import error, not a skip.

    Imported when called, not with this module: the root command imports it, and ``spendgate keys
    list`` has no use for the proxy, aiohttp or numpy.
    """
    from spendgate.admin import guard as guard_service
    from spendgate.admin import service as admin_service
    from spendgate.alerter import service as alerter_service
    from spendgate.forecaster import service as forecaster_service
    from spendgate.ledger import service as ledger_service
    from spendgate.proxy import service as proxy_service
    from spendgate.reconcile import service as reconcile_service

    return {
        "ledger": ledger_service.serve,
        "proxy": proxy_service.serve,
        "alerter": alerter_service.serve,
        "forecaster": forecaster_service.serve,
        "admin": admin_service.serve,
        "reconcile": reconcile_service.serve,
        "guard": guard_service.serve,
    }


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


def claude_code_snippet(base_url: str) -> str:
    """The environment Claude Code needs to go through the gateway (``base_url`` without ``/v1``: the CLI
    appends ``/v1/messages`` itself). Without ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` the CLI also
    calls api.anthropic.com and sends the configured key there: the virtual key would leak."""
    return (
        f"export ANTHROPIC_BASE_URL={base_url.removesuffix('/v1')}\n"
        "export ANTHROPIC_API_KEY=<your sk-sg-... virtual key>\n"
        "export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1   # else Claude Code sends that key to Anthropic too\n"
    )


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def first_run_warnings(settings: Settings) -> list[str]:
    """What would make a first run silently useless: no provider key for a real provider, no admin token."""
    found = []
    upstream_host = urlsplit(settings.upstream_url).hostname or ""
    if settings.upstream_key is None and upstream_host not in LOOPBACK_HOSTS:
        found.append(
            f"no upstream key: requests are forwarded to {settings.upstream_url} without a provider key and "
            "will fail (401). Set SPENDGATE_UPSTREAM_KEY (or OPENAI_API_KEY); to try spendgate without one, "
            "run `spendgate fake-upstream` in another terminal and start with "
            "SPENDGATE_UPSTREAM_URL=http://127.0.0.1:9090/v1")
    if (settings.admin_token is None or not settings.admin_token.get_secret_value()) and settings.console.oidc is None:
        found.append("no admin token: the admin API stays off (and `--api` reports with it). "
                     "Set SPENDGATE_ADMIN_TOKEN to enable it")
    return found


def _anthropic_upstreams(settings: Settings) -> str:
    pool = [f"{u.name} {u.url}" for u in settings.upstreams if u.kind == "anthropic"]
    return ", ".join(pool) if pool else settings.anthropic_upstream_url


def ready_banner(settings: Settings) -> str:
    """What ``up`` prints once it runs: where the proxy and the admin API listen, and the next steps."""
    base_url = f"http://{settings.host}:{settings.proxy_port}/v1"
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    admin = (f"http://{settings.host}:{settings.admin_port}  (console at /, OpenAPI at /openapi.json)"
             if token or settings.console.oidc is not None
             else "off: set SPENDGATE_ADMIN_TOKEN to enable it (or sign-in, named tokens: docs/console.md)")
    return (
        f"spendgate is up  (data dir {settings.data_dir}, bus {settings.bus})\n"
        f"  proxy      {base_url}  -> upstream {settings.upstream_url}\n"
        f"             /v1/messages -> Anthropic upstream {_anthropic_upstreams(settings)}\n"
        f"  admin API  {admin}\n\n"
        "Create a key with: spendgate keys create --developer <name> --team <team>\n"
        "Codex CLI: put this in $CODEX_HOME/config.toml (default ~/.codex/config.toml):\n\n"
        + codex_snippet(base_url)
        + "\nClaude Code: set these in its environment (docs/claude-code.md):\n\n"
        + claude_code_snippet(base_url)
    )


def _say(line: str) -> None:
    click.echo(line, err=True)


@click.command("up")
@click.option("--host", default=None, help="Listen address of the proxy and the admin API (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Proxy listen port (default 8080).")
@click.option("--admin-port", type=click.IntRange(1, 65535), default=None,
              help="Admin API listen port (default 8081; the API runs when SPENDGATE_ADMIN_TOKEN is set).")
@pass_ctx
def up(ctx: Ctx, host: str | None, port: int | None, admin_port: int | None) -> None:
    """Run everything in one process: embedded PostgreSQL and bus, migrations, proxy, ledger, workers.

    Progress and warnings go to stderr, the URLs and the Codex snippet to stdout once it runs.
    """
    from spendgate.runtime import run_services

    update: dict[str, object] = {k: v for k, v in (("host", host), ("proxy_port", port),
                                                   ("admin_port", admin_port)) if v is not None}
    settings = ctx.settings.model_copy(update=update) if update else ctx.settings
    check_port_free(settings.host, settings.proxy_port, "--port")
    if settings.admin_token is not None and settings.admin_token.get_secret_value():
        check_port_free(settings.host, settings.admin_port, "--admin-port")
    for warning in first_run_warnings(settings):
        warn(warning)

    def ready(runtime: Runtime) -> None:
        click.echo(ready_banner(settings))
        sys.stdout.flush()

    run(run_services(settings, services(), on_ready=ready, create=True, progress=_say), serving=True)
