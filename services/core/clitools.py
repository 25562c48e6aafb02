"""Shared plumbing for every area's click commands: settings loading and async running."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from spendgate.core.config import Settings, load_settings
from spendgate.core.logs import configure_logging
from spendgate.domain.errors import ConfigError, SpendgateError

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, turning spendgate errors into a clear message and exit code 1."""
    try:
        return asyncio.run(coro)
    except SpendgateError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)


class Ctx:
    """What every command receives: the settings, loaded once from file and environment."""

    def __init__(self, data_dir: Path | None) -> None:
        self._data_dir = data_dir
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            overrides: dict[str, Any] = {"data_dir": self._data_dir} if self._data_dir else {}
            try:
                self._settings = load_settings(**overrides)
            except ConfigError as exc:
                click.echo(f"error: {exc.message}", err=True)
                sys.exit(2)
            configure_logging(self._settings.log_level, fmt=self._settings.log_format)
        return self._settings


pass_ctx = click.make_pass_decorator(Ctx)
