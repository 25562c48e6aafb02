"""A command that writes a file the user names (--save, --out) refuses, before any work, a path it must not
write: a folder, a missing folder (said as missing), and a device or pipe even with --force (as root, `--force
/dev/sda` would have written the disk)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from spendgate.core.clitools import check_output_file


@pytest.mark.parametrize(("path", "force", "words"), [
    ("/dev/null", True, "/dev/null is not a regular file"),
    ("/dev/zero", False, "/dev/zero is not a regular file"),
    ("{tmp}", True, "is a directory: name a file"),
    ("{tmp}/missing/x.yaml", False, "missing does not exist"),
    ("{tmp}/file.txt/x.yaml", False, "file.txt is not a directory"),
])
def test_an_output_path_that_is_not_a_file_to_write_is_refused(tmp_path: Path, path: str, force: bool,
                                                               words: str) -> None:
    """Each is a one-line usage error naming the path, whatever --force says."""
    (tmp_path / "file.txt").write_text("mine")
    with pytest.raises(click.BadParameter) as caught:
        check_output_file(Path(path.format(tmp=tmp_path)), force=force, flag="--save")
    assert words in caught.value.message


def test_a_regular_file_is_replaced_only_with_force(tmp_path: Path) -> None:
    """A new file passes; an existing one needs --force, and then passes."""
    target = tmp_path / "out.yaml"
    check_output_file(target, force=False, flag="--save")
    target.write_text("x")
    with pytest.raises(click.ClickException, match="already exists: pass --force"):
        check_output_file(target, force=False, flag="--save")
    check_output_file(target, force=True, flag="--save")
