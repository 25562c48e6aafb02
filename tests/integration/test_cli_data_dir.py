"""Only `up`, `migrate` and `init` may create a data dir; every other command names the problem instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from spendgate.cli import main


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("SPENDGATE_DATABASE_URL", "SPENDGATE_DATA_DIR", "SPENDGATE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


@pytest.mark.parametrize("args", [["keys", "list"], ["budgets", "list"], ["ledger", "rebuild"]])
def test_a_read_command_does_not_create_a_missing_data_dir(runner: CliRunner, tmp_path: Path,
                                                           args: list[str]) -> None:
    """`--data-dir /nonexistent/deep/dir keys list` fails with one clear line and creates nothing."""
    missing = tmp_path / "nonexistent" / "deep" / "dir"
    result = runner.invoke(main, ["--data-dir", str(missing), *args])
    assert result.exit_code != 0
    assert "no spendgate database in" in result.output and str(missing) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "nonexistent").exists()


def test_a_data_dir_that_is_a_file_is_named(runner: CliRunner, tmp_path: Path) -> None:
    """A data dir that is a file is an error naming it, not a traceback."""
    afile = tmp_path / "notadir"
    afile.write_text("x")
    result = runner.invoke(main, ["--data-dir", str(afile), "keys", "list"])
    assert result.exit_code != 0
    assert f"data dir {afile} is a file" in result.output and "Traceback" not in result.output


def test_init_creates_the_data_dir_and_then_reads_work(runner: CliRunner, tmp_path: Path) -> None:
    """`spendgate init` makes the embedded database; a read command then finds it."""
    data = tmp_path / "fresh"
    created = runner.invoke(main, ["--data-dir", str(data), "init"])
    assert created.exit_code == 0, created.output
    assert (data / "postgres" / "PG_VERSION").exists()
    listed = runner.invoke(main, ["--data-dir", str(data), "keys", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith("key_id")
