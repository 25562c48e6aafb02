"""Alembic over raw SQL: every table family's revisions, found beside the store module that owns them.

``0001`` (in ``versions/``) is the root; each family's branch grows from it in its own folder
(:data:`VERSION_LOCATIONS`, one per :data:`spendgate.store.FAMILIES` entry), so ``heads`` applies them all.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from spendgate.store import FAMILIES

HERE = Path(__file__).parent
_SERVICES = HERE.parent.parent
VERSION_LOCATIONS: tuple[Path, ...] = (HERE / "versions", *(_SERVICES / f.folder / "migrations" for f in FAMILIES))


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(str(p) for p in VERSION_LOCATIONS))
    cfg.attributes["dsn"] = url
    return cfg


def migrate_sync(url: str, revision: str = "heads") -> None:
    """Apply alembic migrations up to ``revision`` (blocking; call from a thread in async code).

    Each table family owns a branch rooted at 0001 (``down_revision = "0001"``,
    ``branch_labels = ("<family>",)``), so "heads" applies them all.
    """
    from alembic import command

    command.upgrade(_alembic_config(url), revision)


async def migrate(url: str, revision: str = "heads") -> None:
    await asyncio.to_thread(migrate_sync, url, revision)


