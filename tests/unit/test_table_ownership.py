"""One owner per table: SQL naming a table appears only in its owner's folder (see ``spendgate.store``).

The scan reads the string literals of every module under ``services/`` (f-strings too; docstrings and
other bare string statements are prose and skipped), finds the table names that follow SQL keywords
(``FROM``, ``JOIN``, ``INTO``, ``UPDATE``, ``TABLE``, ``TRUNCATE``, ``ON``, ``REFERENCES``, ``USING``;
quoted and schema-qualified names included) or that are looked up by name (``to_regclass('…')``,
``information_schema``'s ``table_name = '…'``), and fails naming file:line for each one outside its
owner. A family may read (FROM/JOIN) the tables it declares in ``also_reads``, never write them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spendgate.store import FAMILIES, OWNER_OF, Family

SERVICES = Path(__file__).resolve().parents[2] / "services"

_NAME = r'(?:"?[A-Za-z_][A-Za-z0-9_]*"?\s*\.\s*)?"?([A-Za-z_][A-Za-z0-9_]*)"?'
"""A table name, optionally schema-qualified, either part optionally double-quoted; group 1 is the table."""
_KEYWORD = re.compile(
    r"\b(DELETE\s+FROM|FROM|JOIN|INSERT\s+INTO|INTO|UPDATE|TABLE|TRUNCATE|ONLY|ON|REFERENCES|USING)\s+",
    re.IGNORECASE,
)
_LIST_END = re.compile(
    r"\b(WHERE|ON|USING|GROUP|ORDER|LIMIT|SET|VALUES|SELECT|RETURNING|IN|JOIN|CROSS|LEFT|RIGHT|INNER|FULL|"
    r"NATURAL|UNION|HAVING|WINDOW|FOR|DO|ADD|DROP|ALTER|RENAME)\b|[();]",
    re.IGNORECASE,
)
_BY_NAME = re.compile(
    r"to_regclass\s*\(\s*'" + _NAME.replace('"?', "") + r"'|table_name\s*=\s*'([A-Za-z_][A-Za-z0-9_]*)'",
    re.IGNORECASE,
)
_READS = {"FROM", "JOIN", "USING"}
"""Positions that only read; every other keyword (and ``DELETE FROM``) writes or defines."""


@dataclass(frozen=True, slots=True)
class Mention:
    table: str
    line: int
    reads: bool


def mentions(sql: str, first_line: int = 1) -> Iterator[Mention]:
    """Every table name SQL text names, with its line and whether it is only read there."""
    for m in _KEYWORD.finditer(sql):
        keyword = " ".join(m.group(1).upper().split())
        rest = sql[m.end():]
        end = _LIST_END.search(rest)
        listing = rest[: end.start() if end else len(rest)]
        if keyword in ("TABLE", "TRUNCATE", "ONLY", "ON", "REFERENCES"):
            listing = re.sub(r"^(IF\s+(NOT\s+)?EXISTS|ONLY)\s+", "", listing, flags=re.IGNORECASE)
        for part in listing.split(","):
            found = re.match(r"\s*" + _NAME, part)
            if found:
                yield Mention(found.group(1).lower(), first_line + sql[: m.start()].count("\n"), keyword in _READS)
    for m in _BY_NAME.finditer(sql):
        yield Mention((m.group(1) or m.group(2)).lower(), first_line + sql[: m.start()].count("\n"), True)


def _bare_strings(tree: ast.AST) -> set[int]:
    """ids of string constants that are whole statements: docstrings and attribute docstrings (prose)."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.JoinedStr)}


def string_literals(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal that is not a bare statement; an f-string's holes read ``{}``."""
    tree = ast.parse(source)
    prose = _bare_strings(tree)
    inside_fstrings = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(tree):
        if id(node) in prose or id(node) in inside_fstrings:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
                           for v in node.values)
            yield node.lineno, text


def _family_of(path: Path) -> Family | None:
    rel = path.relative_to(SERVICES).as_posix()
    return next((f for f in FAMILIES if rel.startswith(f.folder + "/")), None)


def violations(path: Path, source: str) -> list[str]:
    """``file:line: table …`` for each mention of a table outside what the file's family may name."""
    family = _family_of(path)
    out: list[tuple[int, str]] = []
    for line, text in string_literals(source):
        for m in mentions(text, line):
            owner = OWNER_OF.get(m.table)
            if owner is None or owner is family:
                continue
            if family is not None and m.reads and m.table in family.also_reads:
                continue
            where = path.relative_to(SERVICES.parent).as_posix()
            out.append((m.line, f"{where}:{m.line}: {m.table} belongs to {owner.folder}"))
    return [text for _, text in sorted(out)]


def all_violations() -> list[str]:
    return [v for path in sorted(SERVICES.rglob("*.py")) for v in violations(path, path.read_text())]


def test_no_table_is_named_outside_its_owner() -> None:
    """Every SQL statement naming a table lives in the folder of the family that owns it."""
    found = all_violations()
    assert not found, f"{len(found)} table mentions outside their owner:\n" + "\n".join(found)


def test_every_created_table_has_one_declared_owner() -> None:
    """Each table a migration creates is declared by exactly the family whose folder holds that migration."""
    created: dict[str, str] = {}
    for path in sorted(SERVICES.rglob("migrations/*.py")):
        for _line, text in string_literals(path.read_text()):
            for m in re.finditer(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?" + _NAME, text, re.IGNORECASE):
                created[m.group(1).lower()] = path.relative_to(SERVICES).as_posix()
    assert created, "no CREATE TABLE found: the scan is broken"
    assert set(created) == set(OWNER_OF), "tables created and tables declared differ"
    for table, where in created.items():
        assert where.startswith(OWNER_OF[table].folder + "/"), f"{table} is created in {where}"
    assert all(t in OWNER_OF and OWNER_OF[t].name != f.name for f in FAMILIES for t in f.also_reads)


def test_the_scan_finds_every_form_of_naming_a_table() -> None:
    """Plain, quoted, schema-qualified, listed, f-string and by-name forms are found; prose is not SQL."""
    source = '''
"""Docstring prose: read FROM balances and JOIN budgets."""
# a comment: SELECT * FROM balances
def f(table: str) -> None:
    """Reads FROM usage_events (prose)."""
    a = "SELECT spent_micros FROM balances WHERE scope = $1"
    b = f"SELECT {table} FROM public.usage_events u JOIN \\"sessions\\" s USING (session_id)"
    c = """UPDATE budgets SET x = 1;
           TRUNCATE balances, sessions, session_turns"""
    d = "SELECT to_regclass('public.forecasts')"
    e = "SELECT 1 FROM information_schema.columns WHERE table_name = 'forecasts'"
    g = "DELETE FROM enforcement_pending WHERE instance = $1"
    h = "INSERT INTO dead_letters (consumer) VALUES ($1)"
    i = "rebuilt balances and sessions from {} events"
'''
    found = [(m.table, m.line, m.reads) for line, text in string_literals(source) for m in mentions(text, line)
             if m.table in OWNER_OF]
    assert sorted(found) == sorted([
        ("balances", 6, True), ("usage_events", 7, True), ("sessions", 7, True), ("budgets", 8, False),
        ("balances", 9, False), ("sessions", 9, False), ("session_turns", 9, False), ("forecasts", 10, True),
        ("forecasts", 11, True), ("enforcement_pending", 12, False), ("dead_letters", 13, False),
    ])


def test_a_family_may_only_read_what_it_declares() -> None:
    """The keys store may read usage_events (declared) but not write it, nor read a table it does not declare."""
    path = SERVICES / "store" / "keys" / "store.py"
    source = '''
a = "SELECT team FROM usage_events"
b = "INSERT INTO usage_events (event_id) VALUES ($1)"
c = "SELECT 1 FROM budgets"
'''
    assert [v.split(": ", 1)[1] for v in violations(path, source)] == [
        "usage_events belongs to store/usage", "budgets belongs to store/budgets",
    ]
    assert [v.split(":")[1] for v in violations(path, source)] == ["3", "4"]
