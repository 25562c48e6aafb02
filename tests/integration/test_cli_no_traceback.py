"""No tracebacks: every command, found by walking the click tree, given bad arguments, answers with one
``error: …`` line on stderr and a non-zero exit, and creates no data dir."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from spendgate.cli import main
from spendgate.core.clitools import ERROR_PREFIX

CREATES_DATA_DIR = {"up", "init", "migrate", "demo"}
"""Commands that may make a data dir: a missing one is not a mistake for them."""
NO_DATABASE = {"fake-upstream", "forecast backtest", "alerts check", "me"}
"""Commands that never open the database (so a missing data dir is not theirs to notice)."""

FILLERS: dict[str, str] = {
    "scope": "org", "developer": "alice", "team": "platform", "until": "2099-01-01T00:00Z", "reason": "why",
    "route_name": "budget", "session_id": "s-1", "key_id": "sk-sg-abc", "by": "5",
    "limit_scope": "developer:alice", "name": "ci-bot",
}
"""Valid values for required parameters, so the bad one is what the command complains about."""

BAD: dict[str, list[str]] = {
    "scope": ["planet:mars", "team:"], "as_of": ["2099-01-01", "yesterday"], "until": ["2001-01-01T00:00Z", "soon"],
    "tz": ["Mars/Olympus_Mons"], "timezone": ["Mars/Olympus_Mons"], "from_": ["2026-13-01"], "to": ["2026-02-30"],
    "developer": ["", "  "], "team": [""], "cost_center": [""], "repo": [""], "thresholds": ["1,2", "95,80,110"],
    "daily": ["ten", "-5"], "monthly": ["0"], "reason": [" "], "actor": [""],
    "limit_scope": ["org", "planet:mars", "team:"], "rpm": ["ten", "-5", "0"], "tpm": ["-1", "10000000000"],
    "name": ["bad name!", ""],
}
"""Bad values for parameters whose type alone does not say what is wrong with them."""


def leaves(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command that runs something: leaves, and groups that run when called alone."""
    if not isinstance(command, click.Group) or command.invoke_without_command:
        yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from leaves(sub, (*path, name))


def groups(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(command, click.Group):
        yield path
        for name, sub in sorted(command.commands.items()):
            yield from groups(sub, (*path, name))


COMMANDS = [c for c in leaves(main) if c[0]]


def flag(param: click.Parameter) -> str:
    assert isinstance(param, click.Option)
    return max(param.opts, key=len)


def filled(command: click.Command, files: dict[str, Path], skip: str | None = None) -> list[str]:
    """Arguments giving every required parameter (but ``skip``) a valid value."""
    args: list[str] = []
    for p in command.params:
        if not p.required or p.name == skip:
            continue
        if isinstance(p.type, click.Path):
            value = str(files["yaml" if p.name == "proposal" else "csv"])
        elif isinstance(p.type, click.Choice):
            value = str(p.type.choices[0])
        else:
            value = FILLERS[p.name or ""]
        args += [value] if isinstance(p, click.Argument) else [flag(p), value]
    return args


def bad_values(param: click.Parameter) -> list[str]:
    """Values this parameter must refuse, from its type or :data:`BAD`."""
    t = param.type
    if param.name in BAD:
        return BAD[param.name or ""]
    if isinstance(t, click.Choice):
        return ["bogus"]
    if isinstance(t, click.IntRange | click.FloatRange):
        return ["x", "-1000000"]
    if isinstance(t, click.types.IntParamType | click.types.FloatParamType):
        return ["x"]
    if isinstance(t, click.Path) and t.exists:
        return ["/nonexistent/file"]
    return []


def cases(files: dict[str, Path]) -> Iterator[tuple[str, list[str]]]:
    for path, command in COMMANDS:
        name = " ".join(path)
        yield f"{name}: unknown option", [*path, *filled(command, files), "--no-such-option"]
        if any(p.required for p in command.params):
            yield f"{name}: nothing given", [*path]
        for p in command.params:
            if not isinstance(p, click.Option | click.Argument) or p.name == "data_dir_again":
                continue
            for value in bad_values(p):
                given = [value] if isinstance(p, click.Argument) else [flag(p), value]
                yield f"{name}: {p.name}={value!r}", [*path, *filled(command, files, skip=p.name), *given]
    for path in groups(main):
        yield f"{' '.join(path) or 'spendgate'}: unknown command", [*path, "no-such-command"]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in ("SPENDGATE_DATABASE_URL", "SPENDGATE_ADMIN_URL", "SPENDGATE_CONFIG", "SPENDGATE_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPENDGATE_DATA_DIR", str(tmp_path / "never-created"))
    monkeypatch.setenv("SPENDGATE_LOG_LEVEL", "error")
    return CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "p.yaml").write_text("budgets: []\n")
    (tmp_path / "s.csv").write_text("date,cost_usd\n2026-01-01,1\n")
    return {"yaml": tmp_path / "p.yaml", "csv": tmp_path / "s.csv"}


def one_error_line(result: Result, what: str) -> str:
    assert result.exit_code not in (0, None), f"{what}: exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output, f"{what}:\n{result.output}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), f"{what}: stderr was\n{result.stderr}"
    return lines[0]


def test_the_walk_reaches_every_command() -> None:
    """The walk finds the commands of every area (a new command is walked without editing this test)."""
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"keys list", "budgets show", "report chargeback", "sessions list", "sessions show", "forecast",
            "forecast backtest", "alerts dead", "policy show", "ledger rebuild", "up", "proxy", "admin"} <= names


def test_bad_arguments_get_one_error_line(runner: CliRunner, files: dict[str, Path], tmp_path: Path) -> None:
    """Unknown options, missing and invalid values, bad dates, unknown subcommands: one line, never a traceback."""
    seen = 0
    for what, args in cases(files):
        one_error_line(runner.invoke(main, args), what)
        seen += 1
    assert seen > 100
    assert not (tmp_path / "never-created").exists()


def test_a_missing_data_dir_is_named_and_not_created(runner: CliRunner, files: dict[str, Path],
                                                     tmp_path: Path) -> None:
    """Every command that opens the database, given a data dir that does not exist, names it and makes nothing."""
    missing = tmp_path / "no" / "such" / "dir"
    for path, command in COMMANDS:
        name = " ".join(path)
        if path[0] in CREATES_DATA_DIR or name in NO_DATABASE:
            continue
        env = {"SPENDGATE_ADMIN_TOKEN": "t"} if name == "admin" else {}
        extra = ["--port", "1"] if name == "proxy" else []
        result = runner.invoke(main, [*path, *filled(command, files), *extra, "--data-dir", str(missing)], env=env)
        line = one_error_line(result, name)
        assert f"no spendgate database in {missing}" in line or "port 1" in line, f"{name}: {line}"
    assert not (tmp_path / "no").exists()


def test_a_data_dir_that_is_a_file_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    """A data dir that is a file is named in one line by reads, writes and init alike."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args in (["keys", "list"], ["budgets", "set", "--scope", "org", "--daily", "5"], ["init"],
                 ["report", "chargeback"], ["sessions", "list"]):
        line = one_error_line(runner.invoke(main, ["--data-dir", str(afile), *args]), " ".join(args))
        assert f"{afile} is a file" in line


def test_an_unreachable_admin_api_is_one_line(runner: CliRunner, files: dict[str, Path]) -> None:
    """Every command with --api, pointed at a port nobody serves (or without the token), says so in one line."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with_api = [(p, c) for p, c in COMMANDS if any(q.name == "api_url" for q in c.params)]
    assert len(with_api) >= 8
    for path, command in with_api:
        args = [*path, *filled(command, files), "--api", url]
        line = one_error_line(runner.invoke(main, args, env={"SPENDGATE_ADMIN_TOKEN": "t"}), " ".join(path))
        assert "cannot reach the admin API" in line
        line = one_error_line(runner.invoke(main, args), " ".join(path))
        assert "SPENDGATE_ADMIN_TOKEN" in line


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    """Through the real entry point (a new process): a data dir that is a file and a bad date, one line each."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args in (["--data-dir", str(afile), "keys", "list"], ["report", "cache", "--from", "2026-02-31"]):
        done = subprocess.run([sys.executable, "-m", "spendgate", *args], capture_output=True, text=True,
                              timeout=60, check=False, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert done.stderr.startswith(ERROR_PREFIX) and len(done.stderr.strip().splitlines()) == 1, done.stderr
