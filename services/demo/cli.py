"""``spendgate demo``. Imports beyond click happen inside the command: every ``spendgate`` call imports this."""

from __future__ import annotations

import click

from spendgate.core.clitools import Ctx, pass_ctx, run


@click.command("demo")
@click.option("--force", is_flag=True, help="Add the demo to a database that already holds keys or budgets.")
@pass_ctx
def demo(ctx: Ctx, force: bool) -> None:
    """Seed a month of made-up traffic (five teams, sixteen developers, sessions, downgrades, retry loops,
    cache hits, budgets at every stage, alerts and a forecast) through the real ledger into the configured
    database (the embedded one under the data dir by default), then say how to open the console.
    A database that already holds keys or budgets is refused unless --force; the demo's own is left as is."""
    from spendgate.core.logs import configure_logging
    from spendgate.demo.seed import seed

    settings = ctx.settings
    if settings.log_level in ("info", "warning"):  # the services' own lines (and the demo's failing webhook's)
        configure_logging("error", fmt=settings.log_format)
    done = run(seed(settings, force=force, progress=lambda line: click.echo(line, err=True)))
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    url = f"http://{settings.host}:{settings.admin_port}/"
    if done.already:
        click.echo(f"The demo is already in this database ({done.keys} keys); nothing was added.")
    else:
        click.echo(f"Seeded {done.events:,} usage events, {done.keys} keys, {done.budgets} budgets and "
                   f"{done.alerts} alerts.")
    start = "spendgate up" if token else "SPENDGATE_ADMIN_TOKEN=<choose a long random token> spendgate up"
    data_dir = f" --data-dir {ctx.settings.data_dir}" if ctx.settings.database_url is None else ""
    click.echo(f"\nStart it:          {start}{data_dir}\n"
               f"Open the console:  {url}\n"
               f"Sign in with the admin token: {token if token else 'the one you chose above'}")
    if done.sample_key:
        base_url = f"http://{settings.host}:{settings.proxy_port}/v1"
        click.echo(f"\nTry the self-service view as alice (a demo key):\n"
                   f"  OPENAI_API_KEY={done.sample_key} OPENAI_BASE_URL={base_url} spendgate me")


COMMANDS: list[click.Command] = [demo]
