"""System queries a backend answers before the SQL engine exists (storage issue).

What it does: parses and evaluates a small, strict subset of PostgreSQL's grammar —
`SELECT <expressions> [FROM pg_stat_activity | pgbed_injection_points [alias]] [WHERE ...]
[ORDER BY ...] [LIMIT n] [OFFSET n]` with literals, `$n` parameters, column references,
function calls, `::`/CAST casts, arithmetic, comparisons, AND/OR/NOT, IS [NOT] NULL, IN,
[NOT] LIKE / ILIKE and
count(*) — plus SHOW/SET/RESET, BEGIN/COMMIT/ROLLBACK and CHECKPOINT, which the backend
handles. Values carry PostgreSQL type OIDs so RowDescription and the text encoding are right.

What it deliberately does not do: be a SQL engine. Anything outside the subset is
`feature_not_supported` (0A000) naming the construct — never a wrong answer. The storage issue
replaces the evaluator with sqlglot + SQLite, where the same functions become SQLite functions
and the views virtual tables; the function table below is the seam.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from node import protocol as P
from node.elog import PGError

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
    | (?P<estr>[eE]'(?:[^'\\]|''|\\.)*')
    | (?P<str>'(?:[^']|'')*')
    | (?P<param>\$\d+)
    | (?P<qident>"(?:[^"]|"")*")
    | (?P<ident>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<op>::|<>|!=|<=|>=|=>|\|\||[-+*/%=<>(),.;\[\]])
    )""",
    re.VERBOSE,
)

KEYWORDS = {
    "select", "from", "where", "and", "or", "not", "is", "null", "true", "false", "as", "order",
    "by", "asc", "desc", "limit", "offset", "in", "cast", "distinct", "group", "having", "union",
    "join", "nulls", "first", "last", "like", "ilike", "between", "case", "with",
}  # fmt: skip

TYPE_NAMES: dict[str, int] = {
    "int2": P.INT2, "smallint": P.INT2, "int4": P.INT4, "int": P.INT4, "integer": P.INT4,
    "int8": P.INT8, "bigint": P.INT8, "float8": P.FLOAT8, "float4": P.FLOAT4, "real": P.FLOAT4,
    "numeric": P.NUMERIC, "decimal": P.NUMERIC, "text": P.TEXT, "varchar": P.VARCHAR,
    "bool": P.BOOL, "boolean": P.BOOL, "name": P.NAME, "oid": P.OID, "timestamptz": P.TIMESTAMPTZ,
    "pg_lsn": P.PG_LSN, "inet": P.INET,
}  # fmt: skip
OID_TYPE_NAME = {P.INT2: "int2", P.INT4: "int4", P.INT8: "int8", P.FLOAT8: "float8", P.FLOAT4: "float4",
                 P.NUMERIC: "numeric", P.TEXT: "text", P.VARCHAR: "varchar", P.BOOL: "bool",
                 P.NAME: "name", P.OID: "oid", P.TIMESTAMPTZ: "timestamptz", P.PG_LSN: "pg_lsn",
                 P.INET: "inet"}  # fmt: skip


def unsupported(what: str) -> PGError:
    return PGError(f"{what} is not supported by pgbed yet", "0A000")


@dataclass
class Tok:
    kind: str
    text: str
    pos: int  # 1-based character position, for ErrorResponse P


def tokenize(sql: str) -> list[Tok]:
    toks: list[Tok] = []
    i = 0
    n = len(sql)
    while i < n:
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if sql[i].isspace():
            i += 1
            continue
        m = _TOKEN.match(sql, i)
        if not m or m.end() == i:
            raise PGError(f'syntax error at or near "{sql[i]}"', "42601", position=i + 1)
        kind = m.lastgroup or "op"
        start = m.start(kind)
        toks.append(Tok(kind, m.group(kind), start + 1))
        i = m.end()
    return toks


# -- expressions ------------------------------------------------------------------------------


@dataclass
class Expr:
    kind: str  # lit, param, col, func, op, unop, cast, isnull, in, star
    value: Any = None
    typ: int = P.TEXT
    args: list[Expr] = field(default_factory=list)
    name: str = "?column?"
    named: dict[str, Expr] = field(default_factory=dict)


class Parser:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.toks = tokenize(sql)
        self.i = 0

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, *words: str) -> bool:
        t = self.peek()
        return t is not None and t.kind in ("ident", "op") and t.text.lower() in words

    def take(self, *words: str) -> bool:
        if self.at(*words):
            self.i += 1
            return True
        return False

    def error_here(self) -> PGError:
        t = self.peek()
        if t is None:
            return PGError("syntax error at end of input", "42601", position=len(self.sql) + 1)
        return PGError(f'syntax error at or near "{t.text}"', "42601", position=t.pos)

    def expect(self, word: str) -> None:
        if not self.take(word):
            raise self.error_here()

    def ident(self) -> str:
        t = self.peek()
        if t is None or t.kind not in ("ident", "qident"):
            raise self.error_here()
        self.i += 1
        return t.text[1:-1].replace('""', '"') if t.kind == "qident" else t.text.lower()

    # precedence climbing
    def expr(self) -> Expr:
        return self.or_()

    def or_(self) -> Expr:
        e = self.and_()
        while self.take("or"):
            e = Expr("op", "or", P.BOOL, [e, self.and_()])
        return e

    def and_(self) -> Expr:
        e = self.not_()
        while self.take("and"):
            e = Expr("op", "and", P.BOOL, [e, self.not_()])
        return e

    def not_(self) -> Expr:
        if self.take("not"):
            return Expr("unop", "not", P.BOOL, [self.not_()])
        return self.cmp()

    def cmp(self) -> Expr:
        e = self.concat()
        while True:
            t = self.peek()
            if t and t.kind == "op" and t.text in ("=", "<>", "!=", "<", ">", "<=", ">="):
                self.i += 1
                op = "<>" if t.text == "!=" else t.text
                e = Expr("op", op, P.BOOL, [e, self.concat()])
            elif self.at("is"):
                self.i += 1
                neg = self.take("not")
                if self.take("null"):
                    e = Expr("isnull", neg, P.BOOL, [e])
                elif self.at("true", "false"):
                    want = self.peek().text.lower() == "true"  # type: ignore[union-attr]
                    self.i += 1
                    e = Expr("istrue", (want, neg), P.BOOL, [e])
                else:
                    raise self.error_here()
            elif self.at("in") or (self.at("not") and (self.peek(1) or Tok("", "", 0)).text.lower() == "in"):
                neg = self.take("not")
                self.expect("in")
                self.expect("(")
                items = [self.expr()]
                while self.take(","):
                    items.append(self.expr())
                self.expect(")")
                e = Expr("in", neg, P.BOOL, [e, *items])
            elif self.at("like", "ilike") or (self.at("not") and (self.peek(1) or Tok("", "", 0)).text.lower()
                                               in ("like", "ilike")):  # fmt: skip
                neg = self.take("not")
                ci = self.take("ilike")
                if not ci:
                    self.expect("like")
                pattern = self.concat()
                if self.at("escape"):
                    raise unsupported("LIKE ... ESCAPE")
                e = Expr("like", (neg, ci), P.BOOL, [e, pattern])
            elif self.at("between"):
                raise unsupported("BETWEEN")
            else:
                return e

    def concat(self) -> Expr:
        e = self.add()
        while self.take("||"):
            e = Expr("op", "||", P.TEXT, [e, self.add()])
        return e

    def add(self) -> Expr:
        e = self.mul()
        while self.at("+", "-"):
            op = self.peek().text  # type: ignore[union-attr]
            self.i += 1
            r = self.mul()
            e = Expr("op", op, _arith_type(e.typ, r.typ), [e, r])
        return e

    def mul(self) -> Expr:
        e = self.unary()
        while self.at("*", "/", "%"):
            op = self.peek().text  # type: ignore[union-attr]
            self.i += 1
            r = self.unary()
            e = Expr("op", op, _arith_type(e.typ, r.typ), [e, r])
        return e

    def unary(self) -> Expr:
        if self.take("-"):
            inner = self.unary()
            if inner.kind == "lit" and isinstance(inner.value, int) and not isinstance(inner.value, bool):
                v = -inner.value  # fold the sign into the literal, as PostgreSQL's grammar does
                return Expr("lit", v, P.INT4 if v >= -(2**31) else P.INT8 if v >= -(2**63) else P.NUMERIC)
            return Expr("unop", "-", inner.typ, [inner])
        if self.take("+"):
            return self.unary()
        return self.postfix()

    def postfix(self) -> Expr:
        e = self.primary()
        while self.take("::"):
            e = self.cast_to(e)
        return e

    def type_name(self) -> int:
        name = self.ident()
        if name in ("double", "character") and self.at("precision", "varying"):
            self.i += 1
            name = "float8" if name == "double" else "varchar"
        if self.take("("):  # varchar(10), numeric(10,2): typmod accepted, not enforced
            while not self.take(")"):
                if self.peek() is None:
                    raise self.error_here()
                self.i += 1
        typ = TYPE_NAMES.get(name)
        if typ is None:
            raise PGError(f'type "{name}" does not exist', "42704")
        return typ

    def cast_to(self, e: Expr) -> Expr:
        typ = self.type_name()
        # FigureColname: a cast takes its operand's name when that is strong (a column or a
        # function), otherwise the type's name.
        strong = e.kind in ("col", "func", "agg") or (e.kind == "cast" and e.name != "?column?")
        return Expr("cast", typ, typ, [e], name=e.name if strong else OID_TYPE_NAME.get(typ, "?column?"))

    def primary(self) -> Expr:
        t = self.peek()
        if t is None:
            raise self.error_here()
        self.i += 1
        if t.kind == "num":
            if re.fullmatch(r"\d+", t.text):
                v = int(t.text)
                return Expr("lit", v, P.INT4 if v < 2**31 else P.INT8 if v < 2**63 else P.NUMERIC)
            from decimal import Decimal

            return Expr("lit", Decimal(t.text), P.NUMERIC)
        if t.kind == "str":
            return Expr("lit", t.text[1:-1].replace("''", "'"), P.UNKNOWN)
        if t.kind == "estr":
            body = t.text[2:-1].replace("''", "'")
            return Expr("lit", body.encode("latin-1", "backslashreplace").decode("unicode_escape"), P.UNKNOWN)
        if t.kind == "param":
            return Expr("param", int(t.text[1:]) - 1, P.UNKNOWN)
        if t.kind == "op" and t.text == "(":
            if self.at("select"):
                raise unsupported("subquery")
            e = self.expr()
            self.expect(")")
            return e
        if t.kind == "op" and t.text == "*":
            return Expr("star")
        if t.kind in ("ident", "qident"):
            word = t.text.lower() if t.kind == "ident" else t.text[1:-1]
            if t.kind == "ident":
                if word == "null":
                    return Expr("lit", None, P.UNKNOWN, name="?column?")
                if word in ("true", "false"):
                    return Expr("lit", word == "true", P.BOOL, name="bool")
                if word == "cast" and self.at("("):
                    self.i += 1
                    inner = self.expr()
                    self.expect("as")
                    e = self.cast_to(inner)
                    self.expect(")")
                    return e
                if word == "case":
                    raise unsupported("CASE")
                if word in ("any", "some", "all") and self.at("("):  # x = ANY ($1): needs arrays
                    raise unsupported(f"{word.upper()} (array or subquery)")
                if word in ("current_user", "session_user", "user", "current_role"):
                    return Expr("func", word, P.NAME, name=word)
                if word in ("current_timestamp", "localtimestamp"):
                    return Expr("func", "now", P.TIMESTAMPTZ, name=word)
                if word in KEYWORDS:
                    raise PGError(f'syntax error at or near "{t.text}"', "42601", position=t.pos)
            if self.take("("):
                return self.func_call(word)
            if self.take("."):
                word = self.ident()  # qualified column: the only FROM item is the qualifier
            return Expr("col", word, P.TEXT, name=word)
        raise PGError(f'syntax error at or near "{t.text}"', "42601", position=t.pos)

    def func_call(self, name: str) -> Expr:
        args: list[Expr] = []
        named: dict[str, Expr] = {}
        if name == "count" and self.take("*"):
            self.expect(")")
            return Expr("agg", "count", P.INT8, [], name="count")
        if not self.take(")"):
            while True:
                t0, t1 = self.peek(), self.peek(1)
                if t0 and t1 and t0.kind == "ident" and t1.text == "=>":
                    self.i += 2
                    named[t0.text.lower()] = self.expr()
                else:
                    args.append(self.expr())
                if self.take(")"):
                    break
                self.expect(",")
        if name == "count":
            return Expr("agg", "count", P.INT8, args, name="count")
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise PGError(f"function {name}() does not exist", "42883",
                          hint="No function matches the given name and argument types. You might need to "
                          "add explicit type casts.")  # fmt: skip
        return Expr("func", name, fn.rettype, args, name=name, named=named)


def _arith_type(a: int, b: int) -> int:
    if P.NUMERIC in (a, b) or P.FLOAT8 in (a, b):
        return P.FLOAT8 if P.FLOAT8 in (a, b) else P.NUMERIC
    if P.INT8 in (a, b):
        return P.INT8
    return P.INT4


# -- statements -------------------------------------------------------------------------------


@dataclass
class Select:
    items: list[tuple[Expr, str]]
    source: str | None
    where: Expr | None
    order: list[tuple[Expr, bool]]
    limit: Expr | None
    offset: Expr | None
    source_args: list[Expr] = field(default_factory=list)


def parse_select(sql: str) -> Select:
    p = Parser(sql)
    p.expect("select")
    if p.at("distinct"):
        raise unsupported("SELECT DISTINCT")
    items: list[tuple[Expr, str]] = []
    while True:
        e = p.expr()
        alias = e.name
        if p.take("as"):
            alias = p.ident()
        elif p.peek() is not None and p.peek().kind in ("ident", "qident") and not p.at(  # type: ignore[union-attr]
            "from", "where", "order", "limit", "offset", "group", "having", "union"
        ):
            alias = p.ident()
        items.append((e, alias))
        if not p.take(","):
            break
    source = None
    if p.take("from"):
        source = p.ident()
        if p.take("."):
            schema, source = source, p.ident()
            if schema not in ("pg_catalog", "public"):
                raise PGError(f'relation "{schema}.{source}" does not exist', "42P01")
        source_args: list[Expr] = []
        if p.take("("):  # FROM f(): a record function answered by the view of the same name
            if source in SRFS:  # or a set-returning function with arguments
                if not p.take(")"):
                    while True:
                        source_args.append(p.expr())
                        if p.take(")"):
                            break
                        p.expect(",")
            else:
                p.expect(")")
                if source not in TABLE_FUNCTIONS:
                    raise unsupported(f"{source}() in FROM")
        elif source in TABLE_FUNCTIONS or source in SRFS:
            raise PGError(f'relation "{source}" does not exist', "42P01")
        if source not in VIEWS and source not in SRFS:
            raise PGError(f'relation "{source}" does not exist', "42P01")
        if p.take("as") or (p.peek() is not None and p.peek().kind == "ident" and not p.at(  # type: ignore[union-attr]
                "where", "order", "limit", "offset", "group", "join", "union", "having")):  # fmt: skip
            p.ident()
        if p.at(",", "join"):
            raise unsupported("a join")
    where = p.expr() if p.take("where") else None
    if p.at("group", "having", "union"):
        raise unsupported(p.peek().text.upper())  # type: ignore[union-attr]
    order: list[tuple[Expr, bool]] = []
    if p.take("order"):
        p.expect("by")
        while True:
            e = p.expr()
            desc = p.take("desc")
            if not desc:
                p.take("asc")
            order.append((e, desc))
            if not p.take(","):
                break
    limit = offset = None
    for _ in range(2):
        if p.take("limit"):
            limit = p.expr()
        elif p.take("offset"):
            offset = p.expr()
    p.take(";")
    if p.peek() is not None:
        raise p.error_here()
    return Select(items, source, where, order, limit, offset, source_args if source else [])


# -- evaluation -------------------------------------------------------------------------------


@dataclass
class Function:
    impl: Callable[..., Any]
    rettype: int
    params: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    volatile_rows: bool = False


FUNCTIONS: dict[str, Function] = {}


def register(name: str, rettype: int, params: tuple[str, ...] = (), **defaults: Any) -> Callable[..., Any]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        FUNCTIONS[name] = Function(fn, rettype, params, defaults)
        return fn

    return deco


@dataclass
class ViewDef:
    columns: list[tuple[str, int]]
    rows: Callable[[Any], list[dict[str, Any]]]


VIEWS: dict[str, ViewDef] = {}
TABLE_FUNCTIONS: set[str] = set()  # names whose `FROM f()` is the view of the same name


@dataclass
class SRF:
    """A set-returning function used in FROM: `SELECT * FROM f(args)`."""

    columns: list[tuple[str, int]]
    impl: Callable[..., list[dict[str, Any]]]
    params: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)


SRFS: dict[str, SRF] = {}


def register_srf(name: str, columns: list[tuple[str, int]], params: tuple[str, ...] = (),
                 **defaults: Any) -> Callable[..., Any]:  # fmt: skip
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        SRFS[name] = SRF(columns, fn, params, defaults)
        return fn

    return deco


_INT_RANGE = {P.INT2: (-(2**15), 2**15 - 1, "smallint"), P.INT4: (-(2**31), 2**31 - 1, "integer"),
              P.INT8: (-(2**63), 2**63 - 1, "bigint"), P.OID: (0, 2**32 - 1, "OID")}


def check_range(v: int, typ: int) -> int:
    lo, hi, name = _INT_RANGE[typ]
    if not lo <= v <= hi:
        raise PGError(f"{name} out of range", "22003")
    return v


def _round_half_away(v: Any) -> int:
    from decimal import ROUND_HALF_UP, Decimal

    return int(Decimal(str(v)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def coerce(value: Any, typ: int) -> Any:
    """Cast a value to a type OID (the `::` and CAST semantics we need)."""
    if value is None:
        return None
    try:
        if typ in (P.INT2, P.INT4, P.INT8, P.OID):
            if isinstance(value, bool):
                v = int(value)
            elif isinstance(value, str):
                v = int(value.strip())
            elif isinstance(value, int):
                v = value
            else:
                v = _round_half_away(value)  # numeric/float → int rounds half away from zero
            return check_range(v, typ)
        if typ in (P.FLOAT8, P.FLOAT4):
            return float(value)
        if typ == P.NUMERIC:
            from decimal import Decimal

            return Decimal(str(value))
        if typ == P.BOOL:
            if isinstance(value, str):
                b = P.parse_bool(value.strip())
                if b is None:
                    raise PGError(f'invalid input syntax for type boolean: "{value}"', "22P02")
                return b
            return bool(value)
        if typ in (P.TEXT, P.VARCHAR, P.NAME, P.INET, P.UNKNOWN):
            return value if isinstance(value, str) else _to_text(value)
        if typ == P.PG_LSN:
            return P.parse_lsn(value) if isinstance(value, str) else int(value)
        if typ == P.TIMESTAMPTZ:
            return value
    except (ValueError, ArithmeticError):
        name = OID_TYPE_NAME.get(typ, "unknown")
        name = {"int4": "integer", "int8": "bigint", "int2": "smallint", "float8": "double precision"}.get(name, name)
        raise PGError(f'invalid input syntax for type {name}: "{value}"', "22P02") from None
    return value


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return P.encode_text(value, _infer(value)).decode()


def _infer(value: Any) -> int:
    if isinstance(value, bool):
        return P.BOOL
    if isinstance(value, int):
        return P.INT8
    if isinstance(value, float):
        return P.FLOAT8
    return P.TEXT


class Evaluator:
    def __init__(self, session: Any, params: list[Any]) -> None:
        self.session = session
        self.params = params

    def eval(self, e: Expr, row: dict[str, Any] | None) -> Any:
        k = e.kind
        if k == "lit":
            return e.value
        if k == "param":
            if e.value >= len(self.params):
                raise PGError(f"there is no parameter ${e.value + 1}", "42P02")
            return self.params[e.value]
        if k == "col":
            if row is None or e.value not in row:
                raise PGError(f'column "{e.value}" does not exist', "42703")
            return row[e.value]
        if k == "cast":
            return coerce(self.eval(e.args[0], row), e.value)
        if k == "func":
            return self.call(e, row)
        if k == "isnull":
            v = self.eval(e.args[0], row)
            return (v is not None) if e.value else (v is None)
        if k == "istrue":
            want, neg = e.value
            v = self.eval(e.args[0], row)
            r = v is not None and bool(v) == want
            return not r if neg else r
        if k == "like":
            neg, ci = e.value
            v, pat = self.eval(e.args[0], row), self.eval(e.args[1], row)
            if v is None or pat is None:
                return None
            r = like_regex(_to_text(pat), ci).fullmatch(_to_text(v)) is not None
            return not r if neg else r
        if k == "in":
            v = self.eval(e.args[0], row)
            vals = [self.eval(a, row) for a in e.args[1:]]
            if v is None:
                return None
            if any(x is not None and _eq(v, x) for x in vals):
                return not e.value
            if any(x is None for x in vals):
                return None  # x IN (1, NULL) is NULL, not false, when nothing matched
            return bool(e.value)
        if k == "unop":
            v = self.eval(e.args[0], row)
            if e.value == "not":
                return None if v is None else not v
            if v is None:
                return None
            if isinstance(v, str):
                v = coerce(v, P.NUMERIC)
            return -v
        if k == "op":
            return self.binop(e, row)
        if k == "agg":
            raise PGError("aggregate functions are not allowed here", "42803")
        if k == "star":
            raise unsupported("*")
        raise unsupported(k)

    def binop(self, e: Expr, row: dict[str, Any] | None) -> Any:
        op = e.value
        if op == "and":
            a = self.eval(e.args[0], row)
            if a is False:
                return False
            b = self.eval(e.args[1], row)
            if b is False:
                return False
            return None if a is None or b is None else True
        if op == "or":
            a = self.eval(e.args[0], row)
            if a is True:
                return True
            b = self.eval(e.args[1], row)
            if b is True:
                return True
            return None if a is None or b is None else False
        a = self.eval(e.args[0], row)
        b = self.eval(e.args[1], row)
        if a is None or b is None:
            return None
        if op == "||":
            return _to_text(a) + _to_text(b)
        if op in ("=", "<>", "<", ">", "<=", ">="):
            a, b = _align(a, b)
            try:
                return {"=": a == b, "<>": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
            except TypeError:
                raise PGError(f"operator does not exist: {type(a).__name__} {op} {type(b).__name__}",
                              "42883") from None  # fmt: skip
        a, b = coerce(a, e.typ), coerce(b, e.typ)
        integral = e.typ in (P.INT2, P.INT4, P.INT8)
        try:
            if op == "+":
                r = a + b
            elif op == "-":
                r = a - b
            elif op == "*":
                r = a * b
            elif op in ("/", "%"):
                if b == 0:
                    raise PGError("division by zero", "22012")
                if integral:
                    # C semantics: the quotient truncates toward zero and the remainder takes
                    # the dividend's sign (Python's // and % floor instead).
                    q = abs(a) // abs(b)
                    q = q if (a >= 0) == (b >= 0) else -q
                    r = q if op == "/" else a - b * q
                elif op == "/":
                    r = a / b
                else:
                    import math

                    r = math.fmod(a, b) if isinstance(a, float) else a % b
            else:
                raise unsupported(f"operator {op}")
        except TypeError:
            raise PGError(f"operator does not exist: {op}", "42883") from None
        return check_range(r, e.typ) if integral else r

    def call(self, e: Expr, row: dict[str, Any] | None) -> Any:
        fn = FUNCTIONS.get(e.value)
        if fn is None:
            raise PGError(f"function {e.value}() does not exist", "42883")
        args = [self.eval(a, row) for a in e.args]
        kwargs = {k: self.eval(v, row) for k, v in e.named.items()}
        if len(args) > len(fn.params):
            raise PGError(f"function {e.value} with {len(args)} arguments does not exist", "42883")
        bound: dict[str, Any] = dict(fn.defaults)
        for name, v in zip(fn.params, args, strict=False):
            bound[name] = v
        for k, v in kwargs.items():
            if k not in fn.params:
                raise PGError(f"function {e.value} has no parameter \"{k}\"", "42883")
            bound[k] = v
        missing = [p for p in fn.params if p not in bound]
        if missing:
            raise PGError(f"function {e.value} requires argument {missing[0]}", "42883")
        return fn.impl(self.session, **bound)


def like_regex(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
    """A LIKE pattern as a regex: % any string, _ one character, backslash escapes the next
    character (PostgreSQL's default escape); a trailing lone backslash is PostgreSQL's 22025."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern):
                raise PGError("LIKE pattern must not end with escape character", "22025")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if case_insensitive else 0))


def _align(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, str) and not isinstance(b, str):
        return coerce(a, _infer(b)), b
    if isinstance(b, str) and not isinstance(a, str):
        return a, coerce(b, _infer(a))
    return a, b


def _eq(a: Any, b: Any) -> bool:
    a, b = _align(a, b)
    return bool(a == b)


@dataclass
class Result:
    columns: list[P.Column]
    rows: list[list[Any]]
    tag: str


def _result_type(e: Expr, source_cols: dict[str, int], param_oids: list[int] | None = None) -> int:
    if e.kind == "col":
        return source_cols.get(e.value, P.TEXT)
    if e.kind == "param":
        oids = param_oids or []
        oid = oids[e.value] if e.value < len(oids) else 0
        return oid if oid and oid != P.UNKNOWN else P.TEXT
    if e.kind == "unop" and e.value == "-":
        return _result_type(e.args[0], source_cols, param_oids)
    if e.kind == "op" and e.value in ("+", "-", "*", "/", "%"):
        return _arith_type(_result_type(e.args[0], source_cols, param_oids),
                           _result_type(e.args[1], source_cols, param_oids))
    if e.typ == P.UNKNOWN:
        return P.TEXT
    return e.typ


def run_select(sql: str, session: Any, params: list[Any], param_oids: list[int] | None = None) -> Result:
    sel = parse_select(sql)
    ev = Evaluator(session, params)
    view = VIEWS.get(sel.source) if sel.source else None
    if sel.source in SRFS:
        srf = SRFS[sel.source]
        args = [ev.eval(a, None) for a in sel.source_args]
        if len(args) > len(srf.params):
            raise PGError(f"function {sel.source} with {len(args)} arguments does not exist", "42883")
        bound = dict(srf.defaults)
        bound.update(zip(srf.params, args, strict=False))
        missing = [x for x in srf.params if x not in bound]
        if missing:
            raise PGError(f"function {sel.source} requires argument {missing[0]}", "42883")
        srf_rows = srf.impl(session, **bound)
        view = ViewDef(srf.columns, lambda _s: srf_rows)
    source_cols = dict(view.columns) if view else {}
    items: list[tuple[Expr, str]] = []
    for e, alias in sel.items:
        if e.kind == "star":
            if view is None:
                raise PGError("SELECT * with no tables specified is not valid", "42601")
            items.extend((Expr("col", c, t, name=c), c) for c, t in view.columns)
        else:
            items.append((e, alias))
    rows: list[dict[str, Any] | None] = list(view.rows(session)) if view else [None]
    if sel.where is not None:
        rows = [r for r in rows if ev.eval(sel.where, r) is True]
    aggregate = any(e.kind == "agg" for e, _ in items)
    if aggregate:
        out = []
        for e, _ in items:
            if e.kind != "agg":
                raise PGError(f'column "{e.name}" must appear in the GROUP BY clause or be used in an aggregate '
                              "function", "42803")  # fmt: skip
            if e.args:
                out.append(sum(1 for r in rows if ev.eval(e.args[0], r) is not None))
            else:
                out.append(len(rows))
        data = [out]
    else:
        for e, desc in reversed(sel.order):
            if e.kind == "lit" and isinstance(e.value, int) and not isinstance(e.value, bool):
                # ORDER BY n names the n-th output column, as in PostgreSQL
                if not 1 <= e.value <= len(items):
                    raise PGError(f"ORDER BY position {e.value} is not in select list", "42P10")
                e = items[e.value - 1][0]

            def key(r: dict[str, Any] | None, e: Expr = e) -> tuple[int, Any]:
                return _sort_key(ev.eval(e, r))

            rows.sort(key=key, reverse=desc)
        data = [[ev.eval(e, r) for e, _ in items] for r in rows]
    off_v = ev.eval(sel.offset, None) if sel.offset is not None else None
    off = 0 if off_v is None else int(off_v)
    if off < 0:
        raise PGError("OFFSET must not be negative", "2201X")
    lim_v = ev.eval(sel.limit, None) if sel.limit is not None else None
    if lim_v is not None and int(lim_v) < 0:
        raise PGError("LIMIT must not be negative", "2201W")
    data = data[off:] if lim_v is None else data[off : off + int(lim_v)]
    columns = [P.Column.for_type(alias, _result_type(e, source_cols, param_oids)) for e, alias in items]
    return Result(columns, data, f"SELECT {len(data)}")


def _sort_key(v: Any) -> tuple[int, Any]:
    return (1, 0) if v is None else (0, v)
