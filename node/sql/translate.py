"""PostgreSQL statement -> Plan (SQLite SQL + result typing + catalog changes), with a cache.

What it does: `translate(sql, catalog, search_path)` classifies one statement, and for DML/DDL parses
it with sqlglot (`read="postgres"`; the sqlglotc wheel, when installed, overlays compiled modules
onto sqlglot itself, so nothing needs enabling — `SQLGLOTC` reports it), rewrites the AST and
generates SQLite SQL. The rewrite pass:
- resolves every table through search_path to its mangled SQLite name (alias = the PG name, so
  `t.col` keeps working), 42P01 with position for unknown relations;
- types expressions from the catalog (column OIDs/typmods) and a small inference table
  (count -> int8, sum(int4) -> int8, sum(int8|numeric) -> numeric, avg -> numeric, literals, casts);
- rewrites what SQLite gets wrong: `::` casts -> `pg_cast` (numeric stays an exact string, bool 0/1,
  PG input errors), `/` -> `pg_div` (22012, integer truncation), numeric `+ - *` / sum / avg -> exact
  Decimal functions, now()/current_timestamp/clock_timestamp -> µs + `+00` text, `~`/`~*` -> pg_regex,
  generate_series -> the `pg_series` table-valued function, `$n` -> `?n`, ON CONFLICT / index
  column `NULLS LAST` noise removed, RETURNING qualifiers stripped, literals coerced to the
  column types they are assigned to or compared with (22P02 at translate time, as PG reports it);
- builds CREATE TABLE/INDEX SQL by hand (STRICT tables, PG constraint names t_pkey, t_col_key,
  t_col_check, serial PRIMARY KEY -> rowid alias, other serials -> pgbed_sequence default);
- decomposes data-modifying CTEs into steps (each DML CTE's RETURNING captured into a temp table).
`SELECT … FOR UPDATE/SHARE` is reported as `for_update` (the executor must take the write lock).

What it deliberately does not do: execute anything (see execute.py), session commands (SET/SHOW
and transaction control are only classified; the backend owns them), planning or optimisation,
intervals, arrays, window-frame subtleties, DISTINCT ON, LATERAL, FK constraints, ALTER TABLE.
Unsupported constructs raise PGError 0A000 naming the construct, never a silently wrong answer.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import sqlglot
import sqlglot.errors
from sqlglot import exp

from node import protocol as P
from node.elog import PGError
from node.sql import values as V
from node.sql.catalog import (
    Catalog,
    ColumnInfo,
    ConstraintInfo,
    IndexInfo,
    PgType,
    TableInfo,
    mangle,
    resolve_type,
    sequence_name,
)

logging.getLogger("sqlglot").setLevel(logging.ERROR)

try:  # sqlglotc overlays compiled .so files onto sqlglot's own modules
    from sqlglot import tokens as _tokens

    SQLGLOTC = bool(getattr(_tokens, "SQLGLOTC_INSTALLED", False))
except ImportError:  # pragma: no cover
    SQLGLOTC = False

TypeRef = tuple[int, int]  # (oid, typmod)


# -- plan -------------------------------------------------------------------------------------
@dataclass
class ResultColumn:
    name: str
    oid: int | None  # None: type from the first non-NULL value at execution (values.value_oid)
    typmod: int = -1


@dataclass
class Step:
    """One SQLite statement of a plan. `capture` names a temp table that receives its rows."""

    sql: str
    capture: str | None = None
    capture_columns: list[str] = field(default_factory=list)


@dataclass
class CreateTable:
    table: TableInfo
    sequences: list[str]


@dataclass
class DropTable:
    sqlite_name: str


@dataclass
class CreateSchema:
    name: str


@dataclass
class DropSchema:
    name: str
    tables: list[str]


@dataclass
class CreateIndex:
    index: IndexInfo
    unique_columns: tuple[str, ...] | None


@dataclass
class DropIndex:
    index: IndexInfo


DdlAction = CreateTable | DropTable | CreateSchema | DropSchema | CreateIndex | DropIndex


@dataclass
class Plan:
    kind: str
    steps: list[Step] = field(default_factory=list)
    nparams: int = 0
    param_types: list[TypeRef | None] = field(default_factory=list)
    columns: list[ResultColumn] | None = None  # None: statement returns no rows
    is_write: bool = False
    for_update: bool = False
    table_names: list[str] = field(default_factory=list)  # SQLite names touched
    ddl: list[DdlAction] = field(default_factory=list)
    tag: str = ""  # complete tag, or prefix when `tag_counts` (e.g. "INSERT 0", "SELECT")
    tag_counts: bool = False
    notices: list[tuple[str, str]] = field(default_factory=list)  # (sqlstate, message) to send first
    target: str | None = None  # SQLite name of the DML target (error mapping)
    insert_rows: list[list[Any]] = field(default_factory=list)  # per row: column -> literal | ('param', n)
    insert_columns: list[str] = field(default_factory=list)
    name: str | None = None  # savepoint name, SET/SHOW variable
    value: str | None = None  # SET value (raw text)
    sql: str = ""  # original PG text

    @property
    def sqlite_sql(self) -> str:
        """The final SQLite statement (the one whose rows/rowcount are the statement's result)."""
        return self.steps[-1].sql if self.steps else ""


# -- cache ------------------------------------------------------------------------------------
_CACHE: OrderedDict[tuple[str, int, tuple[str, ...]], Plan] = OrderedDict()
CACHE_SIZE = 2048
stats = {"hits": 0, "misses": 0}


def clear_cache() -> None:
    _CACHE.clear()


def translate(sql: str, catalog: Catalog, search_path: list[str]) -> Plan:
    """One PostgreSQL statement -> Plan. Cached by (sql, catalog version, search_path)."""
    key = (sql, catalog.version, tuple(search_path))
    plan = _CACHE.get(key)
    if plan is not None:
        stats["hits"] += 1
        _CACHE.move_to_end(key)
        return plan
    stats["misses"] += 1
    plan = _translate(sql, catalog, search_path)
    plan.sql = sql
    _CACHE[key] = plan
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return plan


# -- session commands: classified without sqlglot --------------------------------------------
_ID = r'("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_SESSION_PATTERNS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"^(BEGIN|START\s+TRANSACTION)\b.*$", re.I | re.S), "begin", "BEGIN"),
    (re.compile(r"^(COMMIT|END)(\s+(WORK|TRANSACTION))?\s*(AND\s+NO\s+CHAIN)?$", re.I), "commit", "COMMIT"),
    (re.compile(r"^ROLLBACK(\s+(WORK|TRANSACTION))?\s+TO\s+(SAVEPOINT\s+)?" + _ID + "$", re.I),
     "rollback_to", "ROLLBACK"),
    (re.compile(r"^(ROLLBACK|ABORT)(\s+(WORK|TRANSACTION))?\s*(AND\s+NO\s+CHAIN)?$", re.I), "rollback", "ROLLBACK"),
    (re.compile(r"^SAVEPOINT\s+" + _ID + "$", re.I), "savepoint", "SAVEPOINT"),
    (re.compile(r"^RELEASE\s+(SAVEPOINT\s+)?" + _ID + "$", re.I), "release", "RELEASE"),
    (re.compile(r"^SET\s+(SESSION\s+|LOCAL\s+)?(.+?)\s*(=|\s+TO\s+)\s*(.+)$", re.I | re.S), "set", "SET"),
    (re.compile(r"^SET\s+(SESSION\s+|LOCAL\s+)?(TRANSACTION|SESSION\s+CHARACTERISTICS|TIME\s+ZONE)\b.*$",
                re.I | re.S), "set", "SET"),
    (re.compile(r"^RESET\s+(.+)$", re.I), "set", "RESET"),
    (re.compile(r"^SHOW\s+(.+)$", re.I), "show", "SHOW"),
]  # fmt: skip


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def _session_plan(text: str) -> Plan | None:
    for rx, kind, tag in _SESSION_PATTERNS:
        m = rx.match(text)
        if not m:
            continue
        plan = Plan(kind=kind, tag=tag)
        if kind in ("savepoint", "release", "rollback_to"):
            plan.name = _unquote(m.group(m.lastindex or 1))
        elif kind == "set" and tag == "SET" and m.lastindex and m.lastindex >= 4:
            plan.name = m.group(2).strip().lower()
            plan.value = m.group(4).strip()
        elif kind == "set" and tag == "RESET":
            plan.name = m.group(1).strip().lower()
        elif kind == "show":
            plan.name = m.group(1).strip().lower()
            plan.columns = [ResultColumn(plan.name, P.TEXT)]
        return plan
    return None


# -- errors -----------------------------------------------------------------------------------
def _position_of(sql: str, line: int, col: int, token: str) -> int:
    lines = sql.split("\n")
    offset = sum(len(x) + 1 for x in lines[: max(line - 1, 0)])
    pos = offset + col - len(token) + 1
    return max(pos, 1)


_STATEMENT_WORDS = frozenset(
    "select insert update delete with create drop truncate begin start commit end rollback abort savepoint "
    "release set show reset values table explain lock copy alter grant revoke analyze vacuum checkpoint "
    "prepare execute deallocate discard listen notify unlisten declare fetch close move comment do call "
    "reindex cluster refresh security import load".split()
)


def _syntax_error(sql: str, err: sqlglot.errors.ParseError) -> PGError:
    first = re.match(r"\s*([A-Za-z_]+)", sql)
    if first and first.group(1).lower() not in _STATEMENT_WORDS:
        return PGError(f'syntax error at or near "{first.group(1)}"', "42601", position=first.start(1) + 1)
    if err.errors:
        e = err.errors[0]
        tok = e.get("highlight") or ""
        if tok:
            pos = _position_of(sql, int(e.get("line") or 1), int(e.get("col") or 1), tok)
            return PGError(f'syntax error at or near "{tok}"', "42601", position=pos)
    return PGError("syntax error at end of input", "42601", position=len(sql) + 1)


def unsupported(what: str) -> PGError:
    return PGError(f"{what} is not supported by pgbed", "0A000")


# -- typing helpers ---------------------------------------------------------------------------
_INTS = (P.INT2, P.INT4, P.INT8)
_FLOATS = (P.FLOAT4, P.FLOAT8)
_BOOL_NODES = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.And, exp.Or, exp.Not, exp.In, exp.Like,
               exp.ILike, exp.Is, exp.Between, exp.Exists, exp.RegexpLike, exp.RegexpILike, exp.Boolean,
               exp.NullSafeEQ, exp.NullSafeNEQ)  # fmt: skip
_CMP_NODES = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_TEXT_FUNCS = (exp.Lower, exp.Upper, exp.Substring, exp.Trim, exp.DPipe, exp.Concat, exp.ConcatWs, exp.Initcap,
               exp.Left, exp.Right, exp.Repeat, exp.Pad)  # fmt: skip
_ANON_TYPES = {"pg_sleep": P.VOID, "clock_timestamp": P.TIMESTAMPTZ, "statement_timestamp": P.TIMESTAMPTZ,
               "transaction_timestamp": P.TIMESTAMPTZ, "now": P.TIMESTAMPTZ, "nextval": P.INT8,
               "currval": P.INT8, "date_trunc": P.TIMESTAMPTZ, "md5": P.TEXT, "concat": P.TEXT,
               "length": P.INT4, "char_length": P.INT4, "strpos": P.INT4, "random": P.FLOAT8,
               "version": P.TEXT}  # fmt: skip
_FUNC_RENAMES = {"clock_timestamp": "pg_clock_timestamp", "statement_timestamp": "pg_statement_timestamp",
                 "transaction_timestamp": "pg_now", "now": "pg_now", "date_trunc": "pg_date_trunc",
                 "nextval": "pg_nextval", "currval": "pg_currval", "pg_sleep": "pg_sleep"}  # fmt: skip
_UNSUPPORTED_NODES: dict[type, str] = {
    exp.Interval: "interval", exp.Array: "ARRAY", exp.Unnest: "unnest", exp.Lateral: "LATERAL",
    exp.JSONExtract: "the -> operator", exp.JSONExtractScalar: "the ->> operator",
    exp.Extract: "EXTRACT", exp.ArrayContains: "array containment",
}  # fmt: skip


def _type_of_dtype(dt: exp.DataType) -> PgType:
    params = []
    for p in dt.expressions:
        if isinstance(p, exp.DataTypeParam) and isinstance(p.this, exp.Literal) and not p.this.is_string:
            params.append(int(p.this.this))
    name = dt.this.name if hasattr(dt.this, "name") else str(dt.this)
    user = dt.args.get("kind")
    if name == "USERDEFINED" and user is not None:
        return resolve_type(name, params, str(user))
    return resolve_type(name, params)


def _arith_type(a: TypeRef | None, b: TypeRef | None) -> TypeRef | None:
    oa, ob = (a[0] if a else None), (b[0] if b else None)
    if oa in _FLOATS or ob in _FLOATS:
        return (P.FLOAT8, -1)
    if oa == P.NUMERIC or ob == P.NUMERIC:
        return (P.NUMERIC, -1)
    if oa in _INTS and ob in _INTS:
        return (max(oa, ob, key=_INTS.index), -1)  # type: ignore[arg-type]
    if oa in _INTS and ob is None:
        return (oa, -1)
    if ob in _INTS and oa is None:
        return (ob, -1)
    return None


def _literal_type(lit: exp.Literal) -> TypeRef | None:
    if lit.is_string:
        return (P.TEXT, -1)
    s = str(lit.this)
    if re.fullmatch(r"\d+", s):
        v = int(s)
        return (P.INT4, -1) if v < 2**31 else ((P.INT8, -1) if v < 2**63 else (P.NUMERIC, -1))
    return (P.NUMERIC, -1)


def _sqlite_literal(v: object) -> exp.Expression:
    if v is None:
        return exp.Null()
    if isinstance(v, bool):
        return exp.Literal.number(int(v))
    if isinstance(v, (int, float)):
        return exp.Literal.number(v)
    if isinstance(v, bytes):
        return exp.HexString(this=v.hex())
    return exp.Literal.string(str(v))


def _func(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


_CAST_NAMES = {"integer": "int4", "bigint": "int8", "smallint": "int2", "boolean": "bool", "double precision": "float8",
               "real": "float4", "character varying": "varchar", "character": "bpchar",
               "timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp"}  # fmt: skip


def _output_name(e: exp.Expression) -> str:
    """The column name PostgreSQL gives a select-list item."""
    if isinstance(e, exp.Alias):
        return e.alias
    if isinstance(e, exp.Column):
        return e.name
    if isinstance(e, exp.Cast):
        inner = e.this
        if isinstance(inner, (exp.Column, exp.Cast, exp.Func)) and not isinstance(inner, exp.Literal):
            return _output_name(inner)  # type: ignore[arg-type]
        try:
            base = _type_of_dtype(e.to).name.split("(")[0]
            return _CAST_NAMES.get(base, base)
        except PGError:
            return "?column?"
    if isinstance(e, exp.Count):
        return "count"
    if isinstance(e, exp.CurrentTimestamp):
        return "now" if e.meta.get("pg_name") is None else str(e.meta["pg_name"])
    if isinstance(e, exp.Anonymous):
        return str(e.this).lower()
    if isinstance(e, exp.Case):
        return "case"
    if isinstance(e, exp.Exists):
        return "exists"
    if isinstance(e, exp.Coalesce):
        return "coalesce"
    if isinstance(e, exp.Paren):
        return _output_name(e.this)
    if isinstance(e, exp.Func) and not isinstance(e, (exp.Binary, exp.Unary)):
        names = e.sql_names() if hasattr(e, "sql_names") else []
        return (names[0] if names else e.key).lower()
    return "?column?"


# -- the translator ---------------------------------------------------------------------------
class _Translator:
    def __init__(self, sql: str, catalog: Catalog, search_path: list[str]) -> None:
        self.sql = sql
        self.catalog = catalog
        self.search_path = search_path
        self.sources: dict[str, dict[str, TypeRef | None]] = {}  # alias -> column -> type
        self.source_order: list[str] = []
        self.types: dict[int, TypeRef | None] = {}
        self.param_types: dict[int, TypeRef] = {}
        self.nparams = 0
        self.table_names: list[str] = []
        self.cte_names: set[str] = set()
        self.cte_temp: dict[str, str] = {}  # DML CTE name -> temp table
        self.for_update = False

    # positions and identifiers
    def pos(self, node: exp.Expression) -> int | None:
        ident = node if isinstance(node, exp.Identifier) else node.find(exp.Identifier)
        if ident is not None and "start" in ident.meta:
            return int(ident.meta["start"]) + 1
        return None

    def lower_identifiers(self, root: exp.Expression) -> None:
        for ident in root.find_all(exp.Identifier):
            if not ident.quoted and isinstance(ident.this, str):
                ident.set("this", ident.this.lower())

    # tables
    def resolve(self, table: exp.Table) -> TableInfo:
        name = table.name
        schema = table.db or None
        ti = self.catalog.lookup(name, self.search_path, schema)
        if ti is None:
            full = f"{schema}.{name}" if schema else name
            raise PGError(f'relation "{full}" does not exist', "42P01", position=self.pos(table))
        return ti

    def rewrite_tables(self, root: exp.Expression) -> None:
        for cte in root.find_all(exp.CTE):
            self.cte_names.add(cte.alias)
        for col in root.find_all(exp.Column):
            if col.args.get("db") is not None:  # schema.table.column -> table.column (alias = table name)
                col.set("db", None)
                col.set("catalog", None)
        for table in list(root.find_all(exp.Table)):
            if not isinstance(table.this, exp.Identifier):
                self.rewrite_table_function(table)
                continue
            name = table.name
            if not table.db and name in self.cte_names:
                alias = table.alias or name
                if name in self.cte_temp:
                    table.set("this", exp.to_identifier(self.cte_temp[name], quoted=True))
                    table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
                continue
            ti = self.resolve(table)
            alias = table.alias or ti.name
            self.sources[alias] = {c.name: (c.type.oid, c.type.typmod) for c in ti.columns}
            self.sources.setdefault(ti.sqlite_name, self.sources[alias])
            self.source_order.append(alias)
            if ti.sqlite_name not in self.table_names:
                self.table_names.append(ti.sqlite_name)
            table.set("db", None)
            table.set("catalog", None)
            table.set("this", exp.to_identifier(ti.sqlite_name, quoted=True))
            parent = table.parent
            in_dml_target = isinstance(parent, (exp.Insert, exp.Delete)) or (
                isinstance(parent, exp.Update) and parent.this is table
            )
            if in_dml_target:
                table.meta["pg_alias"] = alias
                if table.alias == ti.sqlite_name:
                    table.set("alias", None)
                    continue
            if alias != ti.sqlite_name and not table.alias:
                table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))

    def rewrite_table_function(self, table: exp.Table) -> None:
        fn = table.this
        if isinstance(fn, exp.ExplodingGenerateSeries) or (
            isinstance(fn, exp.Anonymous) and str(fn.this).lower() == "generate_series"
        ):
            raw = [fn.args.get("start"), fn.args.get("end"), fn.args.get("step")] if not isinstance(
                fn, exp.Anonymous) else list(fn.expressions)  # fmt: skip
            args: list[exp.Expression] = [a for a in raw if isinstance(a, exp.Expression)]
            talias = table.args.get("alias")
            alias = talias.name if talias is not None and talias.name else "generate_series"
            colname = alias
            if talias is not None and talias.columns:
                colname = talias.columns[0].name
            vcol = exp.column("value")
            vcol.meta["internal"] = True
            sub = exp.select(exp.alias_(vcol, colname, quoted=True)).from_(
                exp.Table(this=_func("pg_series", *args))
            )
            new = exp.Subquery(this=sub, alias=exp.TableAlias(this=exp.to_identifier(alias)))
            new.meta["typed"] = True
            argtypes = [self.typeof_quick(a) for a in args]
            t = (P.INT8, -1) if any(x and x[0] == P.INT8 for x in argtypes) else (P.INT4, -1)
            if any(x and x[0] == P.NUMERIC for x in argtypes):
                t = (P.NUMERIC, -1)
            self.sources[alias] = {colname: t}
            self.source_order.append(alias)
            table.replace(new)
            return
        raise unsupported(f"function {fn.sql('postgres')} in FROM")

    def typeof_quick(self, e: exp.Expression) -> TypeRef | None:
        if isinstance(e, exp.Literal):
            return _literal_type(e)
        return self.types.get(id(e))

    # columns
    def column_type(self, col: exp.Column) -> TypeRef | None:
        if col.meta.get("internal"):
            return None
        name = col.name
        if col.table:
            src = self.sources.get(col.table)
            if src is None:
                return None
            if name not in src and not isinstance(col.this, exp.Star):
                if all(v is not None for v in src.values()) or src:
                    raise PGError(f"column {col.table}.{name} does not exist", "42703", position=self.pos(col))
            return src.get(name)
        found: list[TypeRef | None] = [src[name] for src in self._distinct_sources() if name in src]
        if not found:
            if self.sources and not self.cte_names and not isinstance(col.this, exp.Star) and not self._in_alias_ref(
                    col):  # fmt: skip
                raise PGError(f'column "{name}" does not exist', "42703", position=self.pos(col))
            return None
        if len(found) > 1 and isinstance(col.parent, (exp.Select, exp.Where, exp.EQ, exp.Condition)) and len(
                {f for f in found}) > 1:  # fmt: skip
            return None
        return found[0]

    def _distinct_sources(self) -> list[dict[str, TypeRef | None]]:
        seen: list[dict[str, TypeRef | None]] = []
        for s in self.sources.values():
            if not any(s is x for x in seen):
                seen.append(s)
        return seen

    def _in_alias_ref(self, col: exp.Column) -> bool:
        """ORDER BY / GROUP BY / HAVING may name a select-list alias."""
        node: Any = col
        while node is not None:
            if isinstance(node, (exp.Order, exp.Group, exp.Having)):
                return True
            if isinstance(node, exp.Select):
                break
            node = node.parent
        return bool(col.find_ancestor(exp.Order, exp.Group, exp.Having))

    # the typed post-order rewrite
    def rw(self, node: exp.Expression) -> exp.Expression:
        order = list(node.args.keys())
        if isinstance(node, exp.Select):
            first = [k for k in ("with_", "with", "from_", "from", "joins") if k in node.args]
            order = first + [k for k in order if k not in first]
        for k in order:
            v = node.args.get(k)
            if isinstance(v, exp.Expression):
                new = self.rw(v)
                if new is not v:
                    node.set(k, new)
            elif isinstance(v, list):
                node.set(k, [self.rw(x) if isinstance(x, exp.Expression) else x for x in v])
        out = self.rewrite_node(node)
        return out

    def settype(self, node: exp.Expression, t: TypeRef | None) -> exp.Expression:
        self.types[id(node)] = t
        return node

    def t(self, node: exp.Expression | None) -> TypeRef | None:
        if node is None:
            return None
        t = self.types.get(id(node))
        if t is None and isinstance(node, exp.Literal):
            return _literal_type(node)
        return t

    def coerce_literal(self, lit: exp.Expression, target: TypeRef | None, assign: bool = False) -> exp.Expression:
        """A string literal compared with / assigned to a typed column -> storage-form literal."""
        if target is None or not isinstance(lit, (exp.Literal, exp.Boolean, exp.Neg)):
            return lit
        oid, typmod = target
        if isinstance(lit, exp.Boolean):
            value: object = bool(lit.this)
        elif isinstance(lit, exp.Neg):
            if not isinstance(lit.this, exp.Literal):
                return lit
            value = "-" + str(lit.this.this)
        elif lit.is_string:
            value = lit.this
        else:
            if oid in _INTS or oid in _FLOATS:
                if not assign:
                    return lit
            value = str(lit.this)
            if oid in (P.TEXT, P.VARCHAR, P.BPCHAR) and not assign:
                return lit
        if isinstance(value, bool) and oid not in (P.BOOL, P.TEXT, P.VARCHAR):
            raise PGError(f"column is of type {PgType(oid, typmod).name} but expression is of type boolean",
                          "42804")  # fmt: skip
        if not assign and oid == P.NUMERIC:
            typmod = -1
        new = _sqlite_literal(V.to_storage(value, oid, typmod))
        return self.settype(new, target)

    def rewrite_node(self, node: exp.Expression) -> exp.Expression:
        for cls, what in _UNSUPPORTED_NODES.items():
            if isinstance(node, cls):
                raise unsupported(what)
        # x = ANY ($1) / ALL (...): sqlglot reads ALL and SOME as calls of unknown functions
        if isinstance(node, exp.Any) or (isinstance(node, exp.Anonymous) and node.name.lower() in ("all", "some")):
            raise unsupported(f"{'ANY' if isinstance(node, exp.Any) else node.name.upper()} (array or subquery)")
        if isinstance(node, exp.Parameter) or (isinstance(node, exp.Placeholder) and str(node.this).isdigit()):
            n = int(node.this.this if isinstance(node.this, exp.Literal) else node.this)
            self.nparams = max(self.nparams, n)
            new = exp.Var(this=f"?{n}")
            new.meta["param"] = n
            return self.settype(new, None)
        if isinstance(node, exp.Column):
            if isinstance(node.this, exp.Star):
                return node
            return self.settype(node, self.column_type(node))
        if isinstance(node, exp.Literal):
            return node
        if isinstance(node, exp.Boolean):
            return self.settype(exp.Literal.number(1 if node.this else 0), (P.BOOL, -1))
        if isinstance(node, _CMP_NODES):
            a, b = node.this, node.expression
            ta, tb = self.t(a), self.t(b)
            if (isinstance(a, exp.Column) and tb is None) or isinstance(b, (exp.Literal, exp.Boolean, exp.Neg)):
                node.set("expression", self.coerce_literal(b, ta))
            if isinstance(b, exp.Column) and isinstance(a, (exp.Literal, exp.Neg)):
                node.set("this", self.coerce_literal(a, tb))
            self.param_hint(a, tb)
            self.param_hint(b, ta)
            return self.settype(node, (P.BOOL, -1))
        if isinstance(node, exp.In):
            ta = self.t(node.this)
            node.set("expressions", [self.coerce_literal(x, ta) for x in node.expressions])
            for x in node.expressions:
                self.param_hint(x, ta)
            return self.settype(node, (P.BOOL, -1))
        if isinstance(node, exp.RegexpLike):
            return self.settype(_func("pg_regex", node.this, node.expression, exp.Literal.number(0)), (P.BOOL, -1))
        if isinstance(node, exp.RegexpILike):
            return self.settype(_func("pg_regex", node.this, node.expression, exp.Literal.number(1)), (P.BOOL, -1))
        if isinstance(node, _BOOL_NODES):
            return self.settype(node, (P.BOOL, -1))
        if isinstance(node, exp.Cast):
            return self.rewrite_cast(node)
        if isinstance(node, exp.Div):
            t = _arith_type(self.t(node.this), self.t(node.expression))
            if t and t[0] == P.NUMERIC:
                return self.settype(_func("pg_num_div", node.this, node.expression), t)
            return self.settype(_func("pg_div", node.this, node.expression), t)
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul)):
            t = _arith_type(self.t(node.this), self.t(node.expression))
            if t and t[0] == P.NUMERIC:
                fname = {exp.Add: "pg_num_add", exp.Sub: "pg_num_sub", exp.Mul: "pg_num_mul"}[type(node)]
                a, b = node.this, node.expression
                a = self.numeric_operand(a)
                b = self.numeric_operand(b)
                return self.settype(_func(fname, a, b), t)
            return self.settype(node, t)
        if isinstance(node, exp.Mod):
            return self.settype(node, _arith_type(self.t(node.this), self.t(node.expression)))
        if isinstance(node, exp.Neg):
            return self.settype(node, self.t(node.this))
        if isinstance(node, exp.Paren):
            return self.settype(node, self.t(node.this))
        if isinstance(node, exp.Count):
            return self.settype(node, (P.INT8, -1))
        if isinstance(node, exp.Sum):
            at = self.t(node.this)
            if at and at[0] in (P.INT2, P.INT4):
                return self.settype(node, (P.INT8, -1))
            if at and at[0] in _FLOATS:
                return self.settype(node, (P.FLOAT8, -1))
            if at and at[0] in (P.INT8, P.NUMERIC):
                return self.settype(_func("pg_num_sum", node.this), (P.NUMERIC, -1))
            return self.settype(node, None)
        if isinstance(node, exp.Avg):
            at = self.t(node.this)
            if at and at[0] in _FLOATS:
                return self.settype(node, (P.FLOAT8, -1))
            return self.settype(_func("pg_num_avg", node.this), (P.NUMERIC, -1))
        if isinstance(node, (exp.Max, exp.Min)):
            at = self.t(node.this)
            return self.settype(node, (at[0], -1) if at else None)
        if isinstance(node, exp.Coalesce):
            ts = [self.t(node.this)] + [self.t(x) for x in node.expressions]
            return self.settype(node, next((x for x in ts if x is not None), None))
        if isinstance(node, exp.Case):
            ts = [self.t(i.args.get("true")) for i in node.args.get("ifs") or []] + [self.t(node.args.get("default"))]
            return self.settype(node, next((x for x in ts if x is not None), None))
        if isinstance(node, (exp.Length,)):
            return self.settype(node, (P.INT4, -1))
        if isinstance(node, _TEXT_FUNCS):
            return self.settype(node, (P.TEXT, -1))
        if isinstance(node, exp.Abs):
            return self.settype(node, self.t(node.this))
        if isinstance(node, exp.Round):
            at = self.t(node.this)
            if (at and at[0] == P.NUMERIC) or (at and at[0] in _INTS):
                digits = node.args.get("decimals") or exp.Literal.number(0)
                return self.settype(_func("pg_round", node.this, digits), (P.NUMERIC, -1))
            return self.settype(node, (P.FLOAT8, -1) if at else None)
        if isinstance(node, exp.CurrentTimestamp):
            return self.settype(_func("pg_now"), (P.TIMESTAMPTZ, -1))
        if isinstance(node, exp.CurrentDate):
            return self.settype(_func("substr", _func("pg_now"), exp.Literal.number(1), exp.Literal.number(10)),
                                (P.DATE, -1))  # fmt: skip
        if isinstance(node, exp.TimestampTrunc) or isinstance(node, exp.DateTrunc):
            unit = node.args.get("unit")
            u = exp.Literal.string(unit.name if isinstance(unit, (exp.Var, exp.Literal)) else str(unit))
            return self.settype(_func("pg_date_trunc", u, node.this), self.t(node.this) or (P.TIMESTAMPTZ, -1))
        if isinstance(node, exp.Anonymous):
            return self.rewrite_anonymous(node)
        if isinstance(node, exp.Subquery):
            inner = node.this
            if isinstance(inner, exp.Select) and node.alias and not node.meta.get("typed"):
                self.register_derived(node.alias, inner)
            elif isinstance(inner, exp.Select) and len(inner.expressions) == 1:
                return self.settype(node, self.t(inner.expressions[0]))
            return node
        if isinstance(node, exp.Alias):
            return self.settype(node, self.t(node.this))
        if isinstance(node, exp.CTE):
            if isinstance(node.this, exp.Select):
                self.register_derived(node.alias, node.this)
            return node
        if isinstance(node, exp.Lock):
            self.for_update = True
            return node
        if isinstance(node, exp.Distinct) and node.args.get("on") is not None:
            raise unsupported("SELECT DISTINCT ON")
        return node

    def numeric_operand(self, e: exp.Expression) -> exp.Expression:
        if isinstance(e, exp.Literal) and not e.is_string:
            return exp.Literal.string(str(e.this))
        return e

    def register_derived(self, alias: str, select: exp.Select) -> None:
        cols: dict[str, TypeRef | None] = {}
        for p in select.expressions:
            if isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star)):
                for a in self.source_order:
                    cols.update(self.sources.get(a, {}))
                continue
            cols[p.alias_or_name] = self.t(p)
        self.sources[alias] = cols

    def param_hint(self, e: exp.Expression, t: TypeRef | None) -> None:
        if t is not None and isinstance(e, exp.Var) and "param" in e.meta:
            self.param_types.setdefault(int(e.meta["param"]), t)

    def rewrite_cast(self, node: exp.Cast) -> exp.Expression:
        target = _type_of_dtype(node.to)
        src = self.t(node.this)
        inner = node.this
        if isinstance(inner, exp.Var) and "param" in inner.meta:
            self.param_hint(inner, (target.oid, target.typmod))
        if isinstance(inner, (exp.Literal, exp.Boolean)) or (isinstance(inner, exp.Neg) and isinstance(
                inner.this, exp.Literal)):  # fmt: skip
            lit = self.coerce_literal(inner, (target.oid, target.typmod), assign=True)
            return self.settype(lit, (target.oid, target.typmod))
        if src is not None and src[0] == target.oid and target.typmod < 0:
            return self.settype(inner, (target.oid, -1))
        args = [inner, exp.Literal.number(target.oid), exp.Literal.number(target.typmod)]
        if src is not None:
            args.append(exp.Literal.number(src[0]))
        return self.settype(_func("pg_cast", *args), (target.oid, target.typmod))

    def rewrite_anonymous(self, node: exp.Anonymous) -> exp.Expression:
        name = str(node.this).lower()
        t = _ANON_TYPES.get(name)
        if name in ("nextval", "currval"):
            arg = node.expressions[0] if node.expressions else None
            if isinstance(arg, exp.Literal) and arg.is_string:
                seq = str(arg.this)
                schema, _, rel = seq.rpartition(".")
                for s in [schema] if schema else self.search_path:
                    key = mangle(s, rel)
                    row = self.catalog.conn.execute("SELECT 1 FROM pgbed_sequence WHERE name = ?", (key,)).fetchone()
                    if row:
                        return self.settype(_func(_FUNC_RENAMES[name], exp.Literal.string(key)), (P.INT8, -1))
                raise PGError(f'relation "{seq}" does not exist', "42P01")
            raise unsupported(f"{name}() with a non-literal argument")
        if name == "generate_series":
            raise unsupported("generate_series in this position")
        if name in _FUNC_RENAMES:
            node.set("this", _FUNC_RENAMES[name])
        return self.settype(node, (t, -1) if t else None)


def _translate(sql: str, catalog: Catalog, search_path: list[str]) -> Plan:
    text = sql.strip().rstrip(";").strip()
    if not text:
        return Plan(kind="empty")
    sp = _session_plan(text)
    if sp is not None:
        return sp
    try:
        stmts = [s for s in sqlglot.parse(sql, read="postgres") if s is not None]
    except sqlglot.errors.ParseError as e:
        raise _syntax_error(sql, e) from None
    except sqlglot.errors.TokenError as e:
        raise PGError(f"syntax error: {e}", "42601") from None
    if len(stmts) > 1:
        raise PGError("cannot insert multiple commands into a prepared statement", "42601")
    if not stmts:
        return Plan(kind="empty")
    root = stmts[0]
    tr = _Translator(sql, catalog, search_path)
    tr.lower_identifiers(root)  # type: ignore[arg-type]
    if isinstance(root, exp.Create):
        return _create(tr, root)
    if isinstance(root, exp.Drop):
        return _drop(tr, root)
    if isinstance(root, exp.TruncateTable):
        return _truncate(tr, root)
    if isinstance(root, (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Insert, exp.Update, exp.Delete)):
        return _dml(tr, root)
    if isinstance(root, exp.Command):
        raise unsupported(f"{str(root.this).upper()} statement")
    raise unsupported(f"{root.key.upper()} statement")


def _gen(e: exp.Expression) -> str:
    try:
        return e.sql(dialect="sqlite", unsupported_level=sqlglot.errors.ErrorLevel.RAISE)
    except sqlglot.errors.UnsupportedError as err:
        raise unsupported(str(err).split(".")[0]) from None


def _strip_nulls_order(root: exp.Expression) -> None:
    """sqlglot emits `col NULLS LAST` inside ON CONFLICT targets; SQLite rejects it."""
    for oc in root.find_all(exp.OnConflict):
        for k in ("conflict_keys", "expressions"):
            keys = oc.args.get(k)
            if isinstance(keys, list):
                oc.set(k, [x.this if isinstance(x, exp.Ordered) else x for x in keys])


# -- DML ----------------------------------------------------------------------------------------
def _dml(tr: _Translator, root: exp.Expression) -> Plan:
    steps: list[Step] = []
    with_ = root.args.get("with_") or root.args.get("with")
    if with_ is not None:
        kept = []
        for cte in with_.expressions:
            body = cte.this
            if isinstance(body, (exp.Insert, exp.Update, exp.Delete)):
                temp = f"_pgbed_cte_{cte.alias}"
                sub = _Translator(tr.sql, tr.catalog, tr.search_path)
                sub.cte_names = set(tr.cte_names)
                sub.cte_temp = dict(tr.cte_temp)
                subplan = _dml(sub, body)
                if subplan.columns is None:
                    raise unsupported("a data-modifying WITH query without RETURNING")
                cols = [c.name for c in subplan.columns]
                steps.extend(subplan.steps[:-1])
                steps.append(Step(subplan.steps[-1].sql, capture=temp, capture_columns=cols))
                tr.cte_temp[cte.alias] = temp
                tr.cte_names.add(cte.alias)
                tr.sources[cte.alias] = {c.name: (c.oid, c.typmod) if c.oid else None for c in subplan.columns}
                for n in subplan.table_names:
                    if n not in tr.table_names:
                        tr.table_names.append(n)
                tr.nparams = max(tr.nparams, subplan.nparams)
                for i, pt in enumerate(subplan.param_types, 1):
                    if pt is not None:
                        tr.param_types.setdefault(i, pt)
            else:
                kept.append(cte)
        if kept:
            with_.set("expressions", kept)
        else:
            root.set("with_" if "with_" in root.args else "with", None)
    tr.rewrite_tables(root)
    is_insert = isinstance(root, exp.Insert)
    plan = Plan(kind="select")
    target: TableInfo | None = None
    if isinstance(root, (exp.Insert, exp.Update, exp.Delete)):
        tnode = root.this if not isinstance(root.this, exp.Schema) else root.this.this
        if isinstance(tnode, exp.Table):
            target = tr.catalog.by_sqlite_name(tnode.name)
    if isinstance(root, exp.Select):
        _select_srf(tr, root)
    if is_insert:
        assert target is not None
        assert isinstance(root, exp.Insert)
        _insert_prepare(tr, root, target, plan)
    names_node: exp.Expression | None = root.args.get("returning")
    if names_node is None and isinstance(root, (exp.Select, exp.Union, exp.Intersect, exp.Except)):
        names_node = root
        while isinstance(names_node, (exp.Union, exp.Intersect, exp.Except)):
            names_node = names_node.this
    pre_names = [str(p.meta.get("pg_name") or _output_name(p)) for p in names_node.expressions] if names_node else []
    root = tr.rw(root)
    _strip_nulls_order(root)
    if isinstance(root, exp.Update):
        assert target is not None
        _update_assign(tr, root, target)
    if is_insert and target is not None:
        _insert_assign(tr, root, target, plan)
    returning = root.args.get("returning")
    if isinstance(root, (exp.Select, exp.Union, exp.Intersect, exp.Except)):
        plan.kind = "select"
        plan.columns = _result_columns(tr, root, pre_names)
        plan.tag, plan.tag_counts = "SELECT", True
        plan.for_update = tr.for_update
        plan.is_write = tr.for_update
        if tr.for_update:
            for lock in root.find_all(exp.Lock):
                lock.pop()
    else:
        plan.kind = root.key.lower()
        plan.is_write = True
        plan.tag = {"insert": "INSERT 0", "update": "UPDATE", "delete": "DELETE"}[plan.kind]
        plan.tag_counts = True
        plan.target = target.sqlite_name if target else None
        if returning is not None:
            _fix_returning(tr, root, target)
            plan.columns = _result_columns(tr, returning, pre_names)
    steps.append(Step(_gen(root)))
    plan.steps = steps
    plan.nparams = tr.nparams
    plan.param_types = [tr.param_types.get(i) for i in range(1, tr.nparams + 1)]
    plan.table_names = tr.table_names
    if steps[:-1]:
        plan.is_write = True
    return plan


def _select_srf(tr: _Translator, sel: exp.Select) -> None:
    """`SELECT generate_series(a, b)` (no FROM) -> SELECT … FROM pg_series(a, b)."""
    srfs = [x for x in sel.find_all(exp.ExplodingGenerateSeries, exp.Unnest, exp.GenerateSeries)
            if x.find_ancestor(exp.Select) is sel]  # fmt: skip
    if not srfs:
        return
    if sel.args.get("from_") or len(srfs) != 1:
        raise unsupported("set-returning functions in the select list")
    srf = srfs[0]
    gs = srf.this if isinstance(srf, exp.Unnest) else srf
    if isinstance(srf, exp.Unnest) and not isinstance(gs, (exp.GenerateSeries, exp.ExplodingGenerateSeries)):
        raise unsupported("unnest")
    args = [a for a in (gs.args.get("start"), gs.args.get("end"), gs.args.get("step")) if a is not None]
    proj: Any = srf
    while proj.parent is not sel and proj.parent is not None:
        proj = proj.parent
    colname = proj.alias if isinstance(proj, exp.Alias) else "generate_series"
    srf.replace(exp.column("value", table="_pgbed_gs"))
    if not isinstance(proj, exp.Alias) and proj is srf:
        pass
    sel.from_(exp.Table(this=_func("pg_series", *args), alias=exp.TableAlias(this=exp.to_identifier("_pgbed_gs"))),
              copy=False)  # fmt: skip
    argtypes = [_literal_type(a) if isinstance(a, exp.Literal) else None for a in args]
    t = (P.INT8, -1) if any(x and x[0] == P.INT8 for x in argtypes) else (P.INT4, -1)
    tr.sources["_pgbed_gs"] = {"value": t}
    if not isinstance(proj, exp.Alias):
        new_proj = next(x for x in sel.expressions if x is proj or x.find(exp.Column) is not None)
        new_proj.meta["pg_name"] = colname


def _insert_prepare(tr: _Translator, root: exp.Insert, target: TableInfo, plan: Plan) -> None:
    schema = root.this if isinstance(root.this, exp.Schema) else None
    if schema is not None:
        names = [c.name for c in schema.expressions]
        for c, node in zip(names, schema.expressions, strict=True):
            if target.column(c) is None:
                raise PGError(f'column "{c}" of relation "{target.name}" does not exist', "42703",
                              position=tr.pos(node))  # fmt: skip
    else:
        names = [c.name for c in target.columns]
    plan.insert_columns = names
    src = root.expression
    if isinstance(src, exp.Values):
        for row in src.expressions:
            if len(row.expressions) > len(names):
                raise PGError("INSERT has more expressions than target columns", "42601", position=tr.pos(row))


def _assign(tr: _Translator, e: exp.Expression, col: ColumnInfo) -> exp.Expression:
    """An expression assigned to a column: literals coerced now, others wrapped in pg_cast when needed."""
    target = (col.type.oid, col.type.typmod)
    if isinstance(e, (exp.Literal, exp.Boolean, exp.Neg)) and (not isinstance(e, exp.Neg) or isinstance(
            e.this, exp.Literal)):  # fmt: skip
        return tr.coerce_literal(e, target, assign=True)
    if isinstance(e, exp.Null) or (isinstance(e, exp.Var) and "param" not in e.meta):
        return e
    if isinstance(e, exp.Var) and "param" in e.meta:
        tr.param_hint(e, target)
        return e
    src = tr.t(e)
    if isinstance(e, exp.Literal) and src is None:
        return e
    if src is not None and src[0] == col.type.oid and col.type.typmod < 0:
        return e
    if src is not None and src[0] in _INTS and col.type.oid in _INTS:
        return e
    if col.type.oid in (P.TEXT,) and (src is None or src[0] in (P.TEXT, P.VARCHAR)):
        return e
    args = [e, exp.Literal.number(col.type.oid), exp.Literal.number(col.type.typmod)]
    if src is not None:
        args.append(exp.Literal.number(src[0]))
    return _func("pg_cast", *args)


def _insert_assign(tr: _Translator, root: exp.Expression, target: TableInfo, plan: Plan) -> None:
    names = plan.insert_columns
    src = root.expression
    cols = [target.column(n) for n in names]
    if isinstance(src, exp.Values):
        for row in src.expressions:
            new = []
            lits: list[Any] = []
            for e, col in zip(row.expressions, cols, strict=False):
                assert col is not None
                if isinstance(e, exp.Column) and e.name == "default" and not e.table:
                    raise unsupported("DEFAULT in VALUES")
                ne = _assign(tr, e, col)
                new.append(ne)
                if isinstance(ne, exp.Var) and "param" in ne.meta:
                    lits.append(("param", int(ne.meta["param"])))
                elif isinstance(ne, exp.Literal):
                    lits.append(ne.this)
                else:
                    lits.append(None)
            row.set("expressions", new)
            plan.insert_rows.append(lits)
    elif isinstance(src, (exp.Select, exp.Union)):
        if isinstance(src, exp.Select):
            src.set("expressions", [_assign(tr, e, c) if c is not None else e
                                    for e, c in zip(src.expressions, cols, strict=False)])  # fmt: skip
            if root.args.get("conflict") is not None and not src.args.get("where"):
                src.where("true", copy=False)  # SQLite's parsing ambiguity with ON CONFLICT after SELECT
    oc = root.args.get("conflict")
    if oc is not None:
        if oc.args.get("constraint") is not None:
            cname = oc.args["constraint"].name
            k = next((c for c in target.constraints if c.name == cname), None)
            if k is None:
                raise PGError(f'constraint "{cname}" for table "{target.name}" does not exist', "42704")
            oc.set("constraint", None)
            oc.set("conflict_keys", [exp.to_identifier(c) for c in k.columns])
        for eq in oc.args.get("expressions") or []:
            if isinstance(eq, exp.EQ) and isinstance(eq.this, exp.Column):
                col = target.column(eq.this.name)
                if col is not None:
                    eq.set("expression", _assign(tr, eq.expression, col))
                eq.this.set("table", None)


def _update_assign(tr: _Translator, root: exp.Update, target: TableInfo) -> None:
    for eq in root.expressions:
        if isinstance(eq, exp.EQ) and isinstance(eq.this, exp.Column):
            col = target.column(eq.this.name)
            if col is None:
                raise PGError(f'column "{eq.this.name}" of relation "{target.name}" does not exist', "42703",
                              position=tr.pos(eq.this))  # fmt: skip
            eq.set("expression", _assign(tr, eq.expression, col))
            eq.this.set("table", None)


def _fix_returning(tr: _Translator, root: exp.Expression, target: TableInfo | None) -> None:
    """SQLite's RETURNING sees only the target row and rejects qualified names: unqualify them."""
    ret = root.args["returning"]
    tnode = root.this if not isinstance(root.this, exp.Schema) else root.this.this
    names = {target.name, target.sqlite_name} if target else set()
    if isinstance(tnode, exp.Table):
        names.add(tnode.alias_or_name)
        if "pg_alias" in tnode.meta:
            names.add(str(tnode.meta["pg_alias"]))
    for col in list(ret.find_all(exp.Column)):
        if col.table:
            if col.table not in names:
                raise unsupported("RETURNING a column of a table other than the target")
            col.set("table", None)


def _result_columns(tr: _Translator, node: exp.Expression, names: list[str]) -> list[ResultColumn]:
    if isinstance(node, (exp.Union, exp.Intersect, exp.Except)):
        left = node.this
        while isinstance(left, (exp.Union, exp.Intersect, exp.Except)):
            left = left.this
        return _result_columns(tr, left, names)
    out: list[ResultColumn] = []
    projections = node.expressions
    for i, p in enumerate(projections):
        star_table = None
        if isinstance(p, exp.Star):
            star_table = ""
        elif isinstance(p, exp.Column) and isinstance(p.this, exp.Star):
            star_table = p.table
        if star_table is not None:
            aliases: list[dict[str, TypeRef | None]]
            if isinstance(node, exp.Returning):
                ti = tr.catalog.by_sqlite_name(tr.table_names[0]) if tr.table_names else None
                aliases = [{c.name: (c.type.oid, c.type.typmod) for c in ti.columns} if ti else {}]
            elif star_table:
                aliases = [tr.sources.get(star_table, {})]
            else:
                aliases = [tr.sources[a] for a in tr.source_order if a in tr.sources and _in_from(node, a)]
            for srcmap in aliases:
                for cname, ct in srcmap.items():
                    out.append(ResultColumn(cname, ct[0] if ct else None, ct[1] if ct else -1))
            continue
        name = names[i] if i < len(names) else _output_name(p)
        t: TypeRef | None = tr.t(p)
        if t is None and isinstance(p, exp.Alias):
            t = tr.t(p.this)
        if t is not None and t[0] == P.VOID:
            out.append(ResultColumn(name, P.VOID))
            continue
        out.append(ResultColumn(name, t[0] if t else None, t[1] if t else -1))
    return out


def _in_from(sel: exp.Expression, alias: str) -> bool:
    if not isinstance(sel, exp.Select):
        return True
    for src in [sel.args.get("from_") or sel.args.get("from"), *(sel.args.get("joins") or [])]:
        if src is None:
            continue
        for t in src.find_all(exp.Table, exp.Subquery):
            if t.alias_or_name == alias or (isinstance(t, exp.Table) and t.name == alias):
                return True
    return False


# -- DDL ----------------------------------------------------------------------------------------
def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _create(tr: _Translator, root: exp.Create) -> Plan:
    kind = str(root.args.get("kind") or "").upper()
    if kind == "TABLE":
        return _create_table(tr, root)
    if kind == "INDEX":
        return _create_index(tr, root)
    if kind == "SCHEMA":
        name = (root.this.name or root.this.db) if isinstance(root.this, exp.Table) else root.this.name
        plan = Plan(kind="create_schema", tag="CREATE SCHEMA", is_write=True)
        if tr.catalog.has_schema(name):
            if root.args.get("exists"):
                plan.notices.append(("42P06", f'schema "{name}" already exists, skipping'))
                return plan
            raise PGError(f'schema "{name}" already exists', "42P06")
        if name.startswith("pg_"):
            raise PGError(f'unacceptable schema name "{name}"', "42939",
                          detail="The prefix \"pg_\" is reserved for system schemas.")  # fmt: skip
        plan.ddl.append(CreateSchema(name))
        return plan
    if kind == "DATABASE":
        raise unsupported("CREATE DATABASE")
    raise unsupported(f"CREATE {kind}")


def _create_table(tr: _Translator, root: exp.Create) -> Plan:
    schema_node = root.this
    if not isinstance(schema_node, exp.Schema):
        raise unsupported("CREATE TABLE AS")
    tnode = schema_node.this
    schema = tnode.db or tr.catalog.creation_schema(tr.search_path)
    if not tr.catalog.has_schema(schema):
        raise PGError(f'schema "{schema}" does not exist', "3F000", position=tr.pos(tnode))
    name = tnode.name
    plan = Plan(kind="create_table", tag="CREATE TABLE", is_write=True)
    props = root.args.get("properties")
    if props is not None and any(isinstance(p, exp.TemporaryProperty) for p in props.expressions):
        raise unsupported("CREATE TEMPORARY TABLE")
    if tr.catalog.lookup(name, [], schema) is not None:
        if root.args.get("exists"):
            plan.notices.append(("42P07", f'relation "{name}" already exists, skipping'))
            return plan
        raise PGError(f'relation "{name}" already exists', "42P07")
    sname = mangle(schema, name)
    ti = TableInfo(schema, name, sname)
    tr.sources[name] = {}
    col_sql: list[str] = []
    table_cons: list[str] = []
    sequences: list[str] = []
    pk_cols: tuple[str, ...] = ()
    pk_name = f"{name}_pkey"
    uniques: list[tuple[str, tuple[str, ...]]] = []
    checks: list[tuple[str, exp.Expression]] = []
    defs = [e for e in schema_node.expressions if isinstance(e, exp.ColumnDef)]
    # first pass: columns and types (CHECK expressions may refer to any column)
    for pos, cd in enumerate(defs, 1):
        kindt = cd.args.get("kind")
        if kindt is None:
            raise PGError(f'column "{cd.name}" has no type', "42601")
        pgt = _type_of_dtype(kindt)
        ti.columns.append(ColumnInfo(pos, cd.name, pgt, is_serial=pgt.serial))
        tr.sources[name][cd.name] = (pgt.oid, pgt.typmod)
    if len({c.name for c in ti.columns}) != len(ti.columns):
        dup = next(c.name for c in ti.columns if [x.name for x in ti.columns].count(c.name) > 1)
        raise PGError(f'column "{dup}" specified more than once', "42701")
    cname: str | None
    for e in schema_node.expressions:
        if isinstance(e, exp.PrimaryKey):
            pk_cols = tuple(x.name for x in e.expressions)
        elif isinstance(e, exp.Constraint):
            cname = e.name
            for k in e.expressions:
                if isinstance(k, exp.PrimaryKey):
                    pk_cols, pk_name = tuple(x.name for x in k.expressions), cname
                elif isinstance(k, exp.UniqueColumnConstraint):
                    cols = _constraint_cols(k)
                    uniques.append((cname, cols))
                elif isinstance(k, exp.CheckColumnConstraint):
                    checks.append((cname, k.this))
                else:
                    raise unsupported(f"constraint {k.sql('postgres')}")
        elif isinstance(e, exp.UniqueColumnConstraint):
            cols = _constraint_cols(e)
            uniques.append((f"{name}_{'_'.join(cols)}_key", cols))
        elif isinstance(e, exp.CheckColumnConstraint):
            ref = e.this.find(exp.Column)
            checks.append((f"{name}_{ref.name}_check" if ref is not None else f"{name}_check", e.this))
        elif isinstance(e, exp.ForeignKey):
            raise unsupported("FOREIGN KEY")
        elif not isinstance(e, exp.ColumnDef):
            raise unsupported(e.sql("postgres"))
    for cd, col in zip(defs, ti.columns, strict=True):
        inline_pk = False
        default_sql: str | None = None
        for c in cd.constraints:
            k = c.kind
            cname = c.name or None
            if isinstance(k, exp.PrimaryKeyColumnConstraint):
                pk_cols, inline_pk = (col.name,), True
                if cname:
                    pk_name = cname
            elif isinstance(k, exp.NotNullColumnConstraint):
                if k.args.get("allow_null"):
                    continue
                col.not_null = True
            elif isinstance(k, exp.UniqueColumnConstraint):
                uniques.append((cname or f"{name}_{col.name}_key", (col.name,)))
            elif isinstance(k, exp.CheckColumnConstraint):
                checks.append((cname or f"{name}_{col.name}_check", k.this))
            elif isinstance(k, exp.DefaultColumnConstraint):
                default_sql = _default_sql(tr, k.this, col)
            elif isinstance(k, exp.Reference):
                raise unsupported("REFERENCES (foreign keys)")
            else:
                raise unsupported(f"column constraint {k.sql('postgres')}")
        del inline_pk
        col.default_expr = default_sql
    # primary key: an int-typed single-column serial PK becomes the rowid alias
    rowid_pk = False
    if len(pk_cols) == 1:
        pkc = ti.column(pk_cols[0])
        if pkc is None:
            raise PGError(f'column "{pk_cols[0]}" named in key does not exist', "42703")
        rowid_pk = pkc.is_serial and pkc.type.oid in _INTS
    for col in ti.columns:
        if col.name in pk_cols:
            col.not_null = True
        if col.is_serial:
            col.not_null = True
            if not (rowid_pk and col.name == pk_cols[0]):
                seq = sequence_name(ti, col.name)
                sequences.append(seq)
                col.default_expr = f"pg_nextval('{seq}')"
        decl = col.type.sqlite_decl
        if col.name in pk_cols and col.type.oid in _INTS and not rowid_pk:
            decl = "INT"  # not a rowid alias: NULL must fail (23502), not auto-assign
        parts = [_qi(col.name), decl]
        if rowid_pk and col.name == pk_cols[0]:
            parts.append("PRIMARY KEY")
        if col.not_null and not (rowid_pk and col.name == pk_cols[0]):
            parts.append("NOT NULL")
        if col.default_expr is not None:
            parts.append(f"DEFAULT ({col.default_expr})")
        if col.type.oid == P.NUMERIC:
            parts.append("COLLATE pg_numeric")
        col_sql.append(" ".join(parts))
    if pk_cols:
        ti.constraints.append(ConstraintInfo(pk_name, "p", pk_cols))
        if not rowid_pk:
            table_cons.append(f"CONSTRAINT {_qi(pk_name)} PRIMARY KEY ({', '.join(_qi(c) for c in pk_cols)})")
    for cname, cols in uniques:
        for cc in cols:
            if ti.column(cc) is None:
                raise PGError(f'column "{cc}" named in key does not exist', "42703")
        ti.constraints.append(ConstraintInfo(cname, "u", cols))
        table_cons.append(f"CONSTRAINT {_qi(cname)} UNIQUE ({', '.join(_qi(c) for c in cols)})")
    for cname, expr in checks:
        ce = tr.rw(expr.copy())
        for colref in ce.find_all(exp.Column):
            colref.set("table", None)
        cols = tuple(dict.fromkeys(c.name for c in expr.find_all(exp.Column)))
        ti.constraints.append(ConstraintInfo(cname, "c", cols))
        table_cons.append(f"CONSTRAINT {_qi(cname)} CHECK ({_gen(ce)})")
    body = ", ".join(col_sql + table_cons)
    plan.steps = [Step(f"CREATE TABLE {_qi(sname)} ({body}) STRICT")]
    plan.ddl.append(CreateTable(ti, sequences))
    plan.table_names = [sname]
    return plan


def _constraint_cols(k: exp.Expression) -> tuple[str, ...]:
    this = k.this
    if isinstance(this, exp.Schema):
        return tuple(x.name for x in this.expressions)
    return tuple(x.name for x in k.expressions) if k.expressions else ()


def _default_sql(tr: _Translator, e: exp.Expression, col: ColumnInfo) -> str:
    if isinstance(e, (exp.Literal, exp.Boolean, exp.Neg, exp.Null)):
        if isinstance(e, exp.Null):
            return "NULL"
        lit = tr.coerce_literal(e, (col.type.oid, col.type.typmod), assign=True)
        return _gen(lit)
    if e.find(exp.Column) is not None:
        raise PGError("cannot use column reference in DEFAULT expression", "0A000")
    ne = _assign(tr, tr.rw(e.copy()), col)
    return _gen(ne)


def _create_index(tr: _Translator, root: exp.Create) -> Plan:
    idx = root.this
    if not isinstance(idx, exp.Index):
        raise unsupported("this CREATE INDEX form")
    table = idx.args.get("table")
    if not isinstance(table, exp.Table):
        raise unsupported("CREATE INDEX without a table")
    ti = tr.resolve(table)
    tr.sources[ti.name] = {c.name: (c.type.oid, c.type.typmod) for c in ti.columns}
    params = idx.args.get("params")
    cols_exprs = params.args.get("columns") if params is not None else None
    if not cols_exprs:
        raise unsupported("this CREATE INDEX form")
    if params is not None and params.args.get("using") is not None:
        using = params.args["using"].name.lower()
        if using != "btree":
            raise unsupported(f"index access method {using}")
    where_sql = ""
    where = params.args.get("where") if params is not None else None
    if where is not None:
        # A partial index: SQLite has them too; the predicate is rewritten like a CHECK.
        cond = where.this if isinstance(where, exp.Where) else where
        for colref in cond.find_all(exp.Column):
            if ti.column(colref.name) is None:
                raise PGError(f'column "{colref.name}" does not exist', "42703", position=tr.pos(colref))
        ce = tr.rw(cond.copy())
        for colref in ce.find_all(exp.Column):
            colref.set("table", None)
        where_sql = f" WHERE {_gen(ce)}"
    parts: list[str] = []
    names: list[str] = []
    for ce in cols_exprs:
        desc = isinstance(ce, exp.Ordered) and bool(ce.args.get("desc"))
        inner = ce.this if isinstance(ce, exp.Ordered) else ce
        if isinstance(inner, exp.Column):
            if ti.column(inner.name) is None:
                raise PGError(f'column "{inner.name}" does not exist', "42703", position=tr.pos(inner))
            names.append(inner.name)
            parts.append(_qi(inner.name) + (" DESC" if desc else ""))
        else:
            raise unsupported("expression indexes")
    name = idx.name or f"{ti.name}_{'_'.join(names)}_idx"
    plan = Plan(kind="create_index", tag="CREATE INDEX", is_write=True, table_names=[ti.sqlite_name])
    if tr.catalog.lookup_index(name, [], ti.schema) is not None or tr.catalog.lookup(name, [], ti.schema):
        if root.args.get("exists"):
            plan.notices.append(("42P07", f'relation "{name}" already exists, skipping'))
            return plan
        raise PGError(f'relation "{name}" already exists', "42P07")
    unique = bool(root.args.get("unique"))
    iname = mangle(ti.schema, name)
    plan.steps = [Step(f"CREATE {'UNIQUE ' if unique else ''}INDEX {_qi(iname)} ON {_qi(ti.sqlite_name)} "
                       f"({', '.join(parts)}){where_sql}")]  # fmt: skip
    # A partial unique index is not a table-wide unique key (ON CONFLICT cannot infer it alone).
    unique_cols = tuple(names) if unique and not where_sql else None
    plan.ddl.append(CreateIndex(IndexInfo(ti.schema, name, iname, ti.sqlite_name), unique_cols))
    return plan


def _drop(tr: _Translator, root: exp.Drop) -> Plan:
    kind = str(root.args.get("kind") or "").upper()
    exists = bool(root.args.get("exists"))
    cascade = bool(root.args.get("cascade"))
    objs = [x for x in (root.args.get("tables") or root.expressions or [root.this]) if x is not None]
    if kind == "TABLE":
        plan = Plan(kind="drop_table", tag="DROP TABLE", is_write=True)
        for t in objs:
            ti = tr.catalog.lookup(t.name, tr.search_path, t.db or None)
            if ti is None:
                full = f"{t.db}.{t.name}" if t.db else t.name
                if exists:
                    plan.notices.append(("00000", f'table "{full}" does not exist, skipping'))
                    continue
                raise PGError(f'table "{full}" does not exist', "42P01")
            plan.steps.append(Step(f"DROP TABLE {_qi(ti.sqlite_name)}"))
            plan.ddl.append(DropTable(ti.sqlite_name))
            plan.table_names.append(ti.sqlite_name)
        return plan
    if kind == "INDEX":
        plan = Plan(kind="drop_index", tag="DROP INDEX", is_write=True)
        for t in objs:
            ii = tr.catalog.lookup_index(t.name, tr.search_path, t.db or None)
            if ii is None:
                if exists:
                    plan.notices.append(("00000", f'index "{t.name}" does not exist, skipping'))
                    continue
                raise PGError(f'index "{t.name}" does not exist', "42704")
            plan.steps.append(Step(f"DROP INDEX {_qi(ii.sqlite_name)}"))
            plan.ddl.append(DropIndex(ii))
        return plan
    if kind == "SCHEMA":
        plan = Plan(kind="drop_schema", tag="DROP SCHEMA", is_write=True)
        for t in objs:
            name = (t.name or t.db) if isinstance(t, exp.Table) else t.name
            if not tr.catalog.has_schema(name):
                if exists:
                    plan.notices.append(("00000", f'schema "{name}" does not exist, skipping'))
                    continue
                raise PGError(f'schema "{name}" does not exist', "3F000")
            if name in ("public", "pg_catalog") and name == "pg_catalog":
                raise PGError(f'cannot drop schema {name} because it is required by the database system', "2BP01")
            tables = [x for x in tr.catalog.tables() if x.schema == name]
            if tables and not cascade:
                raise PGError(f"cannot drop schema {name} because other objects depend on it", "2BP01",
                              detail="\n".join(f"table {name}.{x.name} depends on schema {name}" for x in tables),
                              hint="Use DROP ... CASCADE to drop the dependent objects too.")  # fmt: skip
            for x in tables:
                plan.steps.append(Step(f"DROP TABLE {_qi(x.sqlite_name)}"))
                plan.table_names.append(x.sqlite_name)
            plan.ddl.append(DropSchema(name, [x.sqlite_name for x in tables]))
        return plan
    raise unsupported(f"DROP {kind}")


def _truncate(tr: _Translator, root: exp.TruncateTable) -> Plan:
    plan = Plan(kind="truncate", tag="TRUNCATE TABLE", is_write=True)
    for t in root.expressions:
        ti = tr.resolve(t)
        plan.steps.append(Step(f"DELETE FROM {_qi(ti.sqlite_name)}"))
        plan.table_names.append(ti.sqlite_name)
    if root.args.get("identity") is not None and str(root.args.get("identity")).upper().startswith("RESTART"):
        raise unsupported("TRUNCATE … RESTART IDENTITY")
    return plan
