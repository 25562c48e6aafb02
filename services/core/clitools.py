"""Shared plumbing for every area's click commands: the root group, settings, the database, errors,
the options every command spells the same way, and async running.

The CLI convention (docs/DEVELOPING.md, "CLI") lives here once:

* every user error is one line on stderr, ``error: …``, and a non-zero exit (2 for bad usage or
  settings, 1 for everything else); warnings are one line, ``warning: …``, and the command goes on;
* global options (``--data-dir``) are accepted before or after the subcommand;
* output is ``--format table|csv|json`` (:data:`FORMATS`), a time zone is ``--timezone``, a read
  through a running admin API is ``--api URL``.

This module is cheap to import on purpose (click and the standard library): every command module
imports it, and a command such as ``spendgate keys list`` must answer in well under a second. What a
command needs beyond it (settings, asyncpg, aiohttp, its area's services) it imports inside its
function.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from spendgate.domain.errors import ConfigError, SpendgateError

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    import asyncpg

    from spendgate.core.config import Settings

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

ERROR_PREFIX = "error: "
WARNING_PREFIX = "warning: "
FORMATS = ("table", "csv", "json")
"""``--format`` of every list: an aligned table for people, CSV for spreadsheets, JSON for programs."""
DOCUMENT_FORMATS = ("table", "json")
"""``--format`` of a command that prints one nested document (a session, a budget): it has no rows for CSV."""


class CliError(click.ClickException):
    """A user error: printed as one line, ``error: …``, with exit status 1 (or ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares a class default; this error's own

    def show(self, file: Any = None) -> None:
        del file  # click's override signature; the one line always goes to stderr
        click.echo(f"{ERROR_PREFIX}{self.format_message()}", err=True)


def cli_actor() -> str:
    """Who ran a command that changes something, for the audit trail: ``cli:<operating-system user>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def warn(message: str) -> None:
    """A one-line warning on stderr; the command goes on."""
    click.echo(f"{WARNING_PREFIX}{message}", err=True)


def one_line(exc: BaseException) -> CliError:
    """Any error a person can cause, as a one-line :class:`CliError` (usage errors keep exit status 2)."""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return CliError(" ".join(exc.format_message().split()) + hint, exc.exit_code)
    if isinstance(exc, click.ClickException):
        return CliError(exc.format_message(), exc.exit_code)
    if isinstance(exc, SpendgateError):
        return CliError(exc.message)
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return CliError(f"{exc.strerror or exc}{where}")
    raise TypeError(f"not a user error: {exc!r}")


USER_ERRORS = (click.ClickException, SpendgateError, OSError)


class Root(click.Group):
    """The root of a ``spendgate`` command tree: one-line errors and global options after subcommands.

    Every error a person can cause (a bad option value, a missing argument, a missing scope, a data
    dir that is a file, a port in use, a file that cannot be written) reaches the terminal as one
    ``error: …`` line; only a bug shows a traceback. ``--data-dir`` is added to every subcommand, so
    ``spendgate keys list --data-dir X`` works like ``spendgate --data-dir X keys list``.
    """

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        self._add_global_options()
        with _user_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _user_errors():
            return super().invoke(ctx)

    def _add_global_options(self) -> None:
        for command in _walk(self):
            if command is not self and not any(p.name == "data_dir_again" for p in command.params):
                command.params.append(click.Option(
                    ["--data-dir", "data_dir_again"], type=click.Path(path_type=Path), expose_value=False,
                    callback=_set_data_dir, help="State directory (also accepted before the command)."))


def _walk(command: click.Command) -> Iterator[click.Command]:
    yield command
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from _walk(sub)


def _set_data_dir(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        found = ctx.find_object(Ctx)
        if found is not None:
            found.data_dir = value


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise  # a group called alone prints its help
    except USER_ERRORS as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            raise
        raise one_line(exc) from None


data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path), envvar="SPENDGATE_DATA_DIR",
    help="State directory (embedded database, spool). Default: SPENDGATE_DATA_DIR, else the user data dir.")
"""The root's ``--data-dir``; :class:`Root` accepts it after the subcommand too."""


class Ctx:
    """What every command receives: the settings, loaded once from file and environment, on first use."""

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        self._settings: Settings | None = None
        self._logging = False

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from spendgate.core.config import load_settings

            overrides: dict[str, Any] = {"data_dir": self.data_dir} if self.data_dir else {}
            try:
                self._settings = load_settings(**overrides)
            except ConfigError as exc:
                raise CliError(exc.message, exit_code=2) from None
            self.configure_logging()
        return self._settings

    def configure_logging(self) -> None:
        """Configure structlog from the settings, once, if anything loaded so far logs.

        A command that only reads (``keys list``) never imports structlog, which costs a tenth of a
        second (more beside ``rich``). Whatever logs imports it with its module (``log =
        get_logger(__name__)``), and every command imports what it uses before :func:`run`, which
        calls this again: logging is configured before the first line is logged.
        """
        if self._settings is not None and not self._logging and "structlog" in sys.modules:
            from spendgate.core.logs import configure_logging

            configure_logging(self._settings.log_level, fmt=self._settings.log_format)
            self._logging = True

    @contextlib.asynccontextmanager
    async def database(self) -> AsyncIterator[asyncpg.Pool]:
        """The configured or embedded database as it is: never migrated here, never a new data dir.

        Only ``up``, ``migrate`` and ``init`` migrate (and create); any other command on a database
        without spendgate's tables, or with older ones, is told to run ``spendgate migrate``.
        """
        import asyncpg

        from spendgate.core.db import create_pool, database_url_for

        s = self.settings
        async with database_url_for(s.database_dsn, s.pg_dir, borrow=True) as url:
            pool = await create_pool(url, min_size=1, max_size=4)
            try:
                yield pool
            except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
                where = "the configured database" if s.database_url else f"data dir {s.data_dir}"
                raise CliError(f"{where} is not migrated to this version ({exc}): run `spendgate migrate`") \
                    from None
            finally:
                await pool.close()


pass_ctx = click.make_pass_decorator(Ctx)


def run(coro: Coroutine[Any, Any, T], *, serving: bool = False) -> T:
    """Run a command's coroutine; a spendgate error becomes the one-line message and exit status 1.

    ``serving`` (``up``, ``proxy``, ``ledger`` and the other long-running services) runs it on uvloop's
    event loop when uvloop is installed (a default dependency on Linux and macOS): the proxy spends
    markedly less CPU per request on it (``benchmarks/proxy_overhead.py``). A short command keeps
    asyncio's loop and does not pay for importing uvloop.
    """
    import asyncio

    click_ctx = click.get_current_context(silent=True)
    ctx = click_ctx.find_object(Ctx) if click_ctx is not None else None
    if ctx is not None:
        ctx.configure_logging()
    try:
        with asyncio.Runner(loop_factory=fast_event_loop() if serving else None) as runner:
            return runner.run(coro)
    except SpendgateError as exc:
        raise CliError(exc.message) from None


def fast_event_loop() -> Callable[[], AbstractEventLoop] | None:
    """uvloop's event loop factory when uvloop is installed, else None (asyncio's own loop)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def format_option(*choices: str, default: str = "table") -> Callable[[F], F]:
    """``--format``: :data:`FORMATS` for lists, :data:`DOCUMENT_FORMATS` for one document."""
    names = choices or FORMATS
    return click.option("--format", "fmt", type=click.Choice(names), default=default, show_default=True,
                        help="table (aligned, 120 columns), " + ", ".join(n for n in names if n != "table")
                        + " (every field)")


def _api_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--api``: an http(s) URL of a running admin API (empty means none, as an unset variable)."""
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"use the admin API's URL, such as http://127.0.0.1:8081, not {value!r}")
    return value


api_option = click.option(
    "--api", "api_url", envvar="SPENDGATE_ADMIN_URL", default=None, metavar="URL", callback=_api_url,
    help="Read through a running admin API (e.g. http://127.0.0.1:8081) instead of the database; "
         "uses SPENDGATE_ADMIN_TOKEN. Default: SPENDGATE_ADMIN_URL.")


def _parsed_by(parser: str, what: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """An option callback that normalises a value with ``spendgate.domain.enforcement.scopes.<parser>``
    (imported when called: ``--help`` stays quick) and turns its ConfigError into a usage error."""

    def callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        from spendgate.domain.enforcement import scopes

        if value is None:
            return None
        try:
            return str(getattr(scopes, parser)(value))
        except ConfigError as exc:
            raise click.BadParameter(exc.message.removeprefix(f"bad {what} ")) from None

    return callback


valid_scope = _parsed_by("parse_scope", "scope")
"""An option callback: a scope as people write it (``team:platform``, ``org``), normalised."""
valid_model = _parsed_by("parse_model", "model")
"""An option callback: a model name as a per-model budget or limit names it (``gpt-5.1``)."""


def valid_timezone(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An option callback: an IANA time zone name (``Europe/Berlin``), refused when unknown."""
    from spendgate.domain.errors import ConfigError
    from spendgate.domain.periods import zone

    if value is None:
        return None
    try:
        zone(value)
    except ConfigError:
        raise click.BadParameter(f"unknown time zone {value[:60]!r}: use an IANA name such as Europe/Berlin") from None
    return value


timezone_option = click.option("--timezone", "tz", default=None, metavar="ZONE", callback=valid_timezone,
                               help="IANA time zone of the days, e.g. Europe/Berlin (default: default_timezone).")


def nonempty(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An option callback: a name given must not be empty or only spaces."""
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty")
    return value.strip() if value is not None else None


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """`` (did you mean 'alice'?)`` when a known name is close to ``value``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_port_free(host: str, port: int, flag: str) -> None:
    """Refuse (one line, naming ``flag``) a listen address another process already holds.

    Binds as the servers do (``SO_REUSEADDR``, so connections in TIME_WAIT do not count) to every
    address ``host`` resolves to, then lets go: the server binds a moment later.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise CliError(f"port {port} on {host} is already in use (another spendgate?): choose "
                                   f"another with {flag}") from None
                raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


force_option = click.option("--force", is_flag=True, help="Replace the output file when it already exists.")
"""Every command that writes a file the user names refuses to replace one unless told to."""


def check_output_file(path: Path, *, force: bool, flag: str) -> None:
    """Refuse, before any work is done, an output file that cannot be written: a folder, a missing
    folder, or an existing file without ``--force`` (a mistyped path must not replace a file silently)."""
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory: name a file", param_hint=f"'{flag}'")
    if not path.parent.is_dir():
        why = "is not a directory" if path.parent.exists() else "does not exist"
        raise click.BadParameter(f"{path.parent} {why}", param_hint=f"'{flag}'")
    if path.exists() and not path.is_file():  # a device or a pipe: --force on /dev/sda must not write the disk
        raise click.BadParameter(f"{path} is not a regular file: name a file", param_hint=f"'{flag}'")
    if path.exists() and not force:
        raise CliError(f"{path} already exists: pass --force to replace it, or name another file")


def write_output_file(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path``: created exclusively unless ``force`` (so a file that appeared since
    :func:`check_output_file` is not replaced either); one-line errors."""
    try:
        with path.open("w" if force else "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise CliError(f"{path} already exists: pass --force to replace it, or name another file") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
