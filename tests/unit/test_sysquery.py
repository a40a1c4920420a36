"""node.sysquery: the strict SELECT subset — tokens, types, column names, evaluation, errors.

Expected values are what PostgreSQL 15 returns for the same statement. Known deviations are
checked against what PostgreSQL does.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from node import protocol as P
from node import sysquery as q
from node.elog import PGError


class FakeSession:
    """What views and functions receive as `s`; the evaluator itself never looks inside."""

    def __init__(self) -> None:
        self.calls: list[str] = []


ROWS = [
    {"a": 3, "b": "x"},
    {"a": 1, "b": None},
    {"a": None, "b": "z"},
    {"a": 2, "b": "y"},
]


@pytest.fixture
def view() -> Iterator[FakeSession]:
    """A temporary view `tv(a int4, b text)`, removed afterwards."""
    assert "tv" not in q.VIEWS

    def rows(s: Any) -> list[dict[str, Any]]:
        s.calls.append("tv")
        return [dict(r) for r in ROWS]

    q.VIEWS["tv"] = q.ViewDef([("a", P.INT4), ("b", P.TEXT)], rows)
    try:
        yield FakeSession()
    finally:
        del q.VIEWS["tv"]


def run(sql: str, params: list[Any] | None = None, session: Any = None) -> q.Result:
    return q.run_select(sql, session if session is not None else FakeSession(), params or [])


def one(sql: str, params: list[Any] | None = None) -> tuple[str, int, Any]:
    """(column name, type OID, value) of a one-column, one-row SELECT."""
    res = run(sql, params)
    assert len(res.columns) == 1 and len(res.rows) == 1, res
    return res.columns[0].name, res.columns[0].type_oid, res.rows[0][0]


def value(sql: str, params: list[Any] | None = None) -> Any:
    return one(sql, params)[2]


def error(sql: str, params: list[Any] | None = None, session: Any = None) -> PGError:
    with pytest.raises(PGError) as ei:
        run(sql, params, session)
    return ei.value


# ---- tokenizer ------------------------------------------------------------------------------


def test_tokenize_kinds_and_positions() -> None:
    toks = q.tokenize("SELECT 1.5, 'it''s' AS \"X\", $2::int4 -- c\n/* d */ FROM t;")
    assert [(t.kind, t.text, t.pos) for t in toks] == [
        ("ident", "SELECT", 1),
        ("num", "1.5", 8),
        ("op", ",", 11),
        ("str", "'it''s'", 13),
        ("ident", "AS", 21),
        ("qident", '"X"', 24),
        ("op", ",", 27),
        ("param", "$2", 29),
        ("op", "::", 31),
        ("ident", "int4", 33),
        ("ident", "FROM", 51),
        ("ident", "t", 56),
        ("op", ";", 57),
    ]


def test_tokenize_bad_character() -> None:
    with pytest.raises(PGError) as ei:
        q.tokenize("SELECT 1 @ 2")
    assert (ei.value.sqlstate, ei.value.message, ei.value.position) == (
        "42601",
        'syntax error at or near "@"',
        10,
    )


# ---- literals, types, column names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "name", "oid", "val"),
    [
        ("SELECT 1", "?column?", P.INT4, 1),
        ("SELECT 1 AS x", "x", P.INT4, 1),
        ("SELECT 1 x", "x", P.INT4, 1),
        ('SELECT 1 AS "Foo"', "Foo", P.INT4, 1),
        ("SELECT 1 AS Foo", "foo", P.INT4, 1),
        ("SELECT 'a'", "?column?", P.TEXT, "a"),
        ("SELECT 'it''s'", "?column?", P.TEXT, "it's"),
        ("SELECT E'a\\nb'", "?column?", P.TEXT, "a\nb"),
        ("SELECT 1.5", "?column?", P.NUMERIC, Decimal("1.5")),
        ("SELECT .5", "?column?", P.NUMERIC, Decimal("0.5")),
        ("SELECT 2147483648", "?column?", P.INT8, 2147483648),
        ("SELECT true", "bool", P.BOOL, True),
        ("SELECT false", "bool", P.BOOL, False),
        ("SELECT NULL", "?column?", P.TEXT, None),
        ("SELECT '5'::int4", "int4", P.INT4, 5),
        ("SELECT ' 5 '::int8", "int8", P.INT8, 5),
        ("SELECT 1::int8", "int8", P.INT8, 1),
        ("SELECT 1::text", "text", P.TEXT, "1"),
        ("SELECT CAST(1 AS text)", "text", P.TEXT, "1"),
        ("SELECT CAST('1' AS bigint)", "int8", P.INT8, 1),
        ("SELECT 'yes'::boolean", "bool", P.BOOL, True),
        ("SELECT 1::numeric", "numeric", P.NUMERIC, Decimal(1)),
        ("SELECT '1.5'::double precision", "float8", P.FLOAT8, 1.5),
        ("SELECT 'ab'::varchar(10)", "varchar", P.VARCHAR, "ab"),
        ("SELECT NULL::int4", "int4", P.INT4, None),
        ("SELECT $1", "?column?", P.TEXT, "p1"),
        ("SELECT $1::int4 + 1", "?column?", P.INT4, 6),
    ],
)
def test_literal_types_and_names(sql: str, name: str, oid: int, val: Any) -> None:
    """Column name as FigureColname gives it, type OID for RowDescription, value."""
    params = ["5"] if "$1::int4" in sql else ["p1"]
    got = one(sql, params)
    assert got == (name, oid, val)
    assert type(got[2]) is type(val)


def test_multiple_columns_and_tag() -> None:
    res = run("SELECT 1 AS a, 'x' AS b, true")
    assert [(c.name, c.type_oid) for c in res.columns] == [("a", P.INT4), ("b", P.TEXT), ("bool", P.BOOL)]
    assert res.rows == [[1, "x", True]]
    assert res.tag == "SELECT 1"


@pytest.mark.parametrize("sql", ["SELECT (1 + 1)::int8", "SELECT $1::int8"])
def test_cast_of_expression_named_after_type(sql: str) -> None:
    assert one(sql, ["1"])[0] == "int8"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 'x'::int4", 'invalid input syntax for type integer: "x"'),
        ("SELECT 'x'::int2", 'invalid input syntax for type smallint: "x"'),
        ("SELECT '2.5'::int4", 'invalid input syntax for type integer: "2.5"'),
        ("SELECT 'maybe'::bool", 'invalid input syntax for type boolean: "maybe"'),
    ],
)
def test_bad_cast_input(sql: str, message: str) -> None:
    e = error(sql)
    assert (e.sqlstate, e.message) == ("22P02", message)


def test_unknown_type() -> None:
    e = error("SELECT 1::nosuchtype")
    assert (e.sqlstate, e.message) == ("42704", 'type "nosuchtype" does not exist')


# ---- arithmetic -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "oid", "val"),
    [
        ("SELECT 1 + 2 * 3", P.INT4, 7),
        ("SELECT (1 + 2) * 3", P.INT4, 9),
        ("SELECT 10 - 2 - 3", P.INT4, 5),
        ("SELECT -7 / 2", P.INT4, -3),  # int division truncates toward zero
        ("SELECT 7 / -2", P.INT4, -3),
        ("SELECT 7 / 2", P.INT4, 3),
        ("SELECT 5 % 3", P.INT4, 2),
        ("SELECT 5 / 2.0", P.NUMERIC, Decimal("2.5")),
        ("SELECT -(1)", P.INT4, -1),
        ("SELECT 2147483648 - 1", P.INT8, 2147483647),
        ("SELECT 'a' || 1", P.TEXT, "a1"),
        ("SELECT 1.5::float8 * 2", P.FLOAT8, 3.0),
    ],
)
def test_arithmetic(sql: str, oid: int, val: Any) -> None:
    _, got_oid, got = one(sql)
    assert (got_oid, got) == (oid, val)


@pytest.mark.parametrize("sql", ["SELECT 1 / 0", "SELECT 1 % 0", "SELECT 1.0 / 0", "SELECT 1::float8 / 0"])
def test_division_by_zero(sql: str) -> None:
    e = error(sql)
    assert (e.sqlstate, e.message) == ("22012", "division by zero")


@pytest.mark.parametrize(("sql", "val"), [("SELECT -7 % 2", -1), ("SELECT -5 % 3", -2)])
def test_modulo_sign(sql: str, val: int) -> None:
    assert value(sql) == val


def test_int8_division_exact() -> None:
    assert value("SELECT 9223372036854775807 / 1") == 9223372036854775807


@pytest.mark.parametrize("sql", ["SELECT 2147483647 + 1", "SELECT 99999::int2", "SELECT 9999999999::int4"])
def test_integer_out_of_range(sql: str) -> None:
    assert error(sql).sqlstate == "22003"


def test_numeric_to_int_rounds() -> None:
    assert value("SELECT 7.5::int4") == 8


# ---- logic, comparison, NULL ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "val"),
    [
        ("SELECT false AND NULL", False),
        ("SELECT NULL AND true", None),
        ("SELECT NULL OR true", True),
        ("SELECT true OR NULL", True),
        ("SELECT NULL OR false", None),
        ("SELECT NOT NULL", None),
        ("SELECT NOT false", True),
        ("SELECT 1 = NULL", None),
        ("SELECT NULL = NULL", None),
        ("SELECT NULL IS NULL", True),
        ("SELECT 1 IS NULL", False),
        ("SELECT 1 IS NOT NULL", True),
        ("SELECT NULL IS NOT TRUE", True),
        ("SELECT false IS FALSE", True),
        ("SELECT 1 IN (1, 2)", True),
        ("SELECT 3 IN (1, 2)", False),
        ("SELECT 3 NOT IN (1, 2)", True),
        ("SELECT 1 IN (1, NULL)", True),
        ("SELECT NULL IN (1, 2)", None),
        ("SELECT '1' = 1", True),
        ("SELECT 2 > 1 AND 1 <> 2", True),
        ("SELECT 1 != 1", False),
        ("SELECT 'b' >= 'a'", True),
    ],
)
def test_three_valued_logic(sql: str, val: bool | None) -> None:
    _, oid, got = one(sql)
    assert oid == P.BOOL
    assert got is val


def test_null_and_false() -> None:
    assert value("SELECT NULL AND false") is False


@pytest.mark.parametrize("sql", ["SELECT 3 IN (1, NULL)", "SELECT 3 NOT IN (1, NULL)"])
def test_in_list_with_null(sql: str) -> None:
    assert value(sql) is None


# ---- parameters -----------------------------------------------------------------------------


def test_params() -> None:
    assert value("SELECT $1::int4 * $2::int4", ["6", "7"]) == 42
    assert value("SELECT $1 IS NULL", [None]) is True
    e = error("SELECT $2", ["x"])
    assert (e.sqlstate, e.message) == ("42P02", "there is no parameter $2")


# ---- FROM a view ----------------------------------------------------------------------------


def test_count_star_over_view(view: FakeSession) -> None:
    res = run("SELECT count(*) FROM tv", session=view)
    assert [(c.name, c.type_oid) for c in res.columns] == [("count", P.INT8)]
    assert res.rows == [[4]]
    assert view.calls == ["tv"]
    assert run("SELECT count(*) FROM tv WHERE a > 1", session=view).rows == [[2]]
    assert run("SELECT count(a) FROM tv", session=view).rows == [[3]]
    assert run("SELECT count(*) FROM tv WHERE false", session=view).rows == [[0]]
    assert run("SELECT count(*)").rows == [[1]]


def test_count_star_no_from_where_false() -> None:
    assert run("SELECT count(*) WHERE false").rows == [[0]]


def test_star_and_types(view: FakeSession) -> None:
    res = run("SELECT * FROM tv", session=view)
    assert [(c.name, c.type_oid) for c in res.columns] == [("a", P.INT4), ("b", P.TEXT)]
    assert res.rows == [[3, "x"], [1, None], [None, "z"], [2, "y"]]
    assert res.tag == "SELECT 4"


def test_where(view: FakeSession) -> None:
    assert run("SELECT b FROM tv WHERE b IS NULL", session=view).rows == [[None]]
    assert run("SELECT a FROM tv WHERE a IN (1, 2)", session=view).rows == [[1], [2]]
    assert run("SELECT a FROM tv WHERE a > '1'", session=view).rows == [[3], [2]]
    assert run("SELECT t.a FROM tv AS t WHERE t.a = 3", session=view).rows == [[3]]
    assert run("SELECT a FROM pg_catalog.tv WHERE NOT (a < 3)", session=view).rows == [[3]]
    assert run("SELECT a FROM tv WHERE a > 10", session=view).tag == "SELECT 0"


def test_order_limit_offset(view: FakeSession) -> None:
    """ORDER BY: NULLS LAST ascending, NULLS FIRST descending (PG's defaults)."""
    assert run("SELECT a FROM tv ORDER BY a", session=view).rows == [[1], [2], [3], [None]]
    assert run("SELECT a FROM tv ORDER BY a DESC", session=view).rows == [[None], [3], [2], [1]]
    assert run("SELECT a FROM tv ORDER BY b DESC, a", session=view).rows == [[1], [None], [2], [3]]
    res = run("SELECT a FROM tv ORDER BY a LIMIT 2 OFFSET 1", session=view)
    assert (res.rows, res.tag) == ([[2], [3]], "SELECT 2")
    assert run("SELECT a FROM tv ORDER BY a OFFSET 3", session=view).rows == [[None]]
    assert run("SELECT a FROM tv ORDER BY a OFFSET 1 LIMIT 1", session=view).rows == [[2]]
    assert run("SELECT a FROM tv LIMIT 0", session=view).rows == []
    assert len(run("SELECT a FROM tv LIMIT NULL", session=view).rows) == 4
    # ORDER BY n is the n-th output column, not the constant n
    assert run("SELECT b, a FROM tv ORDER BY 2 DESC", session=view).rows == \
        run("SELECT b, a FROM tv ORDER BY a DESC", session=view).rows  # fmt: skip
    assert run("SELECT a FROM tv ORDER BY 1", session=view).rows == [[1], [2], [3], [None]]
    e = error("SELECT a FROM tv ORDER BY 2", session=view)
    assert (e.sqlstate, e.message) == ("42P10", "ORDER BY position 2 is not in select list")


@pytest.mark.parametrize(
    ("sql", "state"), [("SELECT a FROM tv LIMIT -1", "2201W"), ("SELECT a FROM tv OFFSET -1", "2201X")]
)
def test_negative_limit_offset(view: FakeSession, sql: str, state: str) -> None:
    assert error(sql, session=view).sqlstate == state


def test_offset_null(view: FakeSession) -> None:
    assert len(run("SELECT a FROM tv OFFSET NULL", session=view).rows) == 4


def test_negated_column(view: FakeSession) -> None:
    res = run("SELECT -a FROM tv", session=view)
    assert [(c.name, c.type_oid) for c in res.columns] == [("?column?", P.INT4)]


def test_column_errors(view: FakeSession) -> None:
    e = error("SELECT zz FROM tv", session=view)
    assert (e.sqlstate, e.message) == ("42703", 'column "zz" does not exist')
    e = error('SELECT "x"')
    assert (e.sqlstate, e.message) == ("42703", 'column "x" does not exist')
    e = error("SELECT a, count(*) FROM tv", session=view)
    assert e.sqlstate == "42803"
    assert error("SELECT count(*) + 1 FROM tv", session=view).sqlstate == "42803"


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message", "position"),
    [
        ("SELECT 1 +", "syntax error at end of input", 11),
        ("SELECT", "syntax error at end of input", 7),
        ("SELECT 1 FROM", "syntax error at end of input", 14),
        ("SELECT 1 2 3", 'syntax error at or near "2"', 10),
        ("SELECT 1 ^ 2", 'syntax error at or near "^"', 10),
        ("SELECT 1; SELECT 2", 'syntax error at or near "SELECT"', 11),
        ("SELECT (1", "syntax error at end of input", 10),
        ("SELECT 1 AS", "syntax error at end of input", 12),
        ("SELECT from", 'syntax error at or near "from"', 8),
    ],
)
def test_syntax_errors(sql: str, message: str, position: int) -> None:
    e = error(sql)
    assert (e.sqlstate, e.message, e.position) == ("42601", message, position)


def test_unknown_function() -> None:
    e = error("SELECT no_such_fn(1)")
    assert (e.sqlstate, e.message) == ("42883", "function no_such_fn() does not exist")
    assert e.hint and "explicit type casts" in e.hint


def test_registered_function_binding() -> None:
    """The FUNCTIONS seam: positional, named (=>) and default arguments."""

    def impl(s: Any, x: Any, y: Any) -> str:
        return f"{x}-{y}"

    q.FUNCTIONS["t_fn"] = q.Function(impl, P.TEXT, ("x", "y"), {"y": "dflt"})
    try:
        assert one("SELECT t_fn(1)") == ("t_fn", P.TEXT, "1-dflt")
        assert value("SELECT t_fn(1, 2)") == "1-2"
        assert value("SELECT t_fn(y => 'b', x => 'a')") == "a-b"
        assert error("SELECT t_fn(1, 2, 3)").sqlstate == "42883"
        assert error("SELECT t_fn(z => 1)").sqlstate == "42883"
        assert error("SELECT t_fn()").message == "function t_fn requires argument x"
    finally:
        del q.FUNCTIONS["t_fn"]


@pytest.mark.parametrize(
    ("sql", "want"),
    [
        ("SELECT 'abc' LIKE 'a%'", True), ("SELECT 'abc' LIKE 'A%'", False), ("SELECT 'abc' ILIKE 'A%'", True),
        ("SELECT 'abc' LIKE 'a_c'", True), ("SELECT 'abbc' LIKE 'a_c'", False), ("SELECT 'a_c' LIKE 'a\\_c'", True),
        ("SELECT 'abc' LIKE 'a\\_c'", False), ("SELECT 'x.y' LIKE 'x.y'", True), ("SELECT 'xzy' LIKE 'x.y'", False),
        ("SELECT 'abc' NOT LIKE 'a%'", False), ("SELECT 'abc' NOT ILIKE 'X%'", True), ("SELECT NULL LIKE 'a'", None),
        ("SELECT 'a' || 'b' LIKE 'ab'", True), ("SELECT 'line1\nline2' LIKE 'line1%'", True),
    ],
)  # fmt: skip
def test_like(sql: str, want: bool | None) -> None:
    """[NOT] LIKE / ILIKE as PostgreSQL evaluates them (binds looser than ||, NULL in, NULL out)."""
    r = run(sql)
    assert r.rows[0][0] == want


@pytest.mark.parametrize(
    ("sql", "sqlstate", "message"),
    [
        ("SELECT 1 FROM nope", "42P01", 'relation "nope" does not exist'),
        ("SELECT 1 FROM foo.bar", "42P01", 'relation "foo.bar" does not exist'),
        ("SELECT DISTINCT 1", "0A000", "SELECT DISTINCT is not supported by pgbed yet"),
        ("SELECT 'a' LIKE 'a' ESCAPE '#'", "0A000", "LIKE ... ESCAPE is not supported by pgbed yet"),
        ("SELECT 'a' LIKE 'a\\'", "22025", "LIKE pattern must not end with escape character"),
        ("SELECT 1 BETWEEN 0 AND 2", "0A000", "BETWEEN is not supported by pgbed yet"),
        ("SELECT CASE WHEN true THEN 1 END", "0A000", "CASE is not supported by pgbed yet"),
        ("SELECT (SELECT 1)", "0A000", "subquery is not supported by pgbed yet"),
        ("SELECT 1 UNION SELECT 2", "0A000", "UNION is not supported by pgbed yet"),
        ("SELECT 1 = ANY($1)", "0A000", "ANY (array or subquery) is not supported by pgbed yet"),
        ("SELECT 1 <> ALL($1)", "0A000", "ALL (array or subquery) is not supported by pgbed yet"),
        ("SELECT *", "42601", "SELECT * with no tables specified is not valid"),
    ],
)
def test_unsupported_and_missing(sql: str, sqlstate: str, message: str) -> None:
    e = error(sql)
    assert (e.sqlstate, e.message) == (sqlstate, message)


@pytest.mark.parametrize(
    "sql", ["SELECT a FROM tv JOIN tv u", "SELECT a FROM tv, tv", "SELECT a FROM tv t, tv"]
)
def test_joins_unsupported(view: FakeSession, sql: str) -> None:
    e = error(sql, session=view)
    assert (e.sqlstate, e.message) == ("0A000", "a join is not supported by pgbed yet")


@pytest.mark.parametrize("sql", ["SELECT a FROM tv GROUP BY a", "SELECT count(*) FROM tv HAVING true"])
def test_group_having_unsupported(view: FakeSession, sql: str) -> None:
    assert error(sql, session=view).sqlstate == "0A000"
