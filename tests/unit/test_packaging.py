"""Packaging: every package directory ships in the wheel, and the import graph rules are declared."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = {"core", "domain", "store"}
"""The shared layers under the services: infrastructure, the pure domain, the table owners."""
COMPOSITION_ROOT = {"demo"}
"""Packages above the services, beside ``cli.py`` and ``up.py``: they run several services, so they are no area."""


def test_every_package_is_listed_for_the_wheel() -> None:
    """A package directory missing from pyproject's list works in an editable install but not in a wheel."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(("spendgate", *p.parent.relative_to(ROOT / "services").parts))
        for p in (ROOT / "services").rglob("__init__.py")
    }
    assert on_disk == listed


def test_every_area_is_in_the_independence_contract() -> None:
    """Services never import each other: every area under services/ is named in the import contract."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    independent = next(c for c in config if c["type"] == "independence")["modules"]
    areas = {f"spendgate.{p.name}" for p in (ROOT / "services").iterdir()
             if (p / "__init__.py").exists() and p.name not in SHARED | COMPOSITION_ROOT}
    assert areas == set(independent)
