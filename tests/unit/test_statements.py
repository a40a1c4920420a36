"""node.statements: simple-query splitting and SET value lists (PostgreSQL's scan.l rules)."""

from __future__ import annotations

import pytest

from node.elog import PGError
from node.statements import _first_word, _value_list, split_statements


@pytest.mark.parametrize(
    ("sql", "parts"),
    [
        ("SELECT 1", ["SELECT 1"]),
        ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
        ("SELECT 1;", ["SELECT 1"]),
        ("SELECT 1;  \n\t ", ["SELECT 1"]),
        ("  SELECT 1  ", ["SELECT 1"]),
        ("SELECT ';'; SELECT 2", ["SELECT ';'", "SELECT 2"]),
        ("SELECT 'it''s;'; x", ["SELECT 'it''s;'", "x"]),
        ('SELECT ";" AS x', ['SELECT ";" AS x']),
        ("SELECT 1 -- ; c\n; SELECT 2", ["SELECT 1 -- ; c", "SELECT 2"]),
        ("SELECT 1 /* a ; b */ ; SELECT 2", ["SELECT 1 /* a ; b */", "SELECT 2"]),
        ("SELECT 1; -- trailing", ["SELECT 1"]),
        ("SELECT 1;/* c */", ["SELECT 1"]),
        ("SELECT 1;\n-- a\n/* b */\n", ["SELECT 1"]),
        (";;", []),
        ("; ;SELECT 1;;", ["SELECT 1"]),
        ("", []),
        ("   ", []),
        ("-- only a comment", []),
    ],
)
def test_split_statements(sql: str, parts: list[str]) -> None:
    """Semicolons inside quotes and comments do not split; empty statements are dropped."""
    assert split_statements(sql) == parts


@pytest.mark.parametrize(
    ("sql", "parts"),
    [
        ("SELECT E'a\\';b'", ["SELECT E'a\\';b'"]),
        ("SELECT $$a;b$$", ["SELECT $$a;b$$"]),
        ("/* x /* ; */ ; */ SELECT 1", ["/* x /* ; */ ; */ SELECT 1"]),
    ],
)
def test_split_statements_postgres_quoting(sql: str, parts: list[str]) -> None:
    assert split_statements(sql) == parts


@pytest.mark.parametrize("sql", ["/* app */ SELECT 1", "-- c\nSELECT 1"])
def test_first_word_skips_comments(sql: str) -> None:
    assert _first_word(sql) == "select"


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("1", ["1"]),
        ("'a'", ["a"]),
        ("UTC", ["UTC"]),
        ("'Europe/Paris'", ["Europe/Paris"]),
        ("a, b", ["a", "b"]),
        ("a,b ,  c", ["a", "b", "c"]),
        ("'a, b', c", ["a, b", "c"]),
        ("'it''s'", ["it's"]),
        ("'', b", ["", "b"]),
        (" x ", ["x"]),
    ],
)
def test_value_list(value: str, items: list[str]) -> None:
    """SET name TO value[, ...]: quoted strings keep commas and doubled quotes collapse."""
    assert _value_list(value) == items


@pytest.mark.parametrize("value", ["", "   "])
def test_value_list_empty(value: str) -> None:
    with pytest.raises(PGError) as ei:
        _value_list(value)
    assert (ei.value.sqlstate, ei.value.message) == ("42601", "syntax error at end of input")


def test_first_word() -> None:
    assert _first_word("  SeLeCt 1") == "select"
    assert _first_word("begin;") == "begin"
    assert _first_word("(1)") == ""
