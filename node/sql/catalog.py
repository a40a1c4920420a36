"""pgbed's own catalog of PostgreSQL schemas, tables, column types, constraints and sequences.

What it does:
- Keeps the PostgreSQL view of the heap in ordinary SQLite tables of the node database
  (`pgbed_schema`, `pgbed_table`, `pgbed_column`, `pgbed_constraint`, `pgbed_index`,
  `pgbed_sequence`), so it survives restarts and is captured in the WAL changesets together with the
  data it describes (DDL and its catalog rows commit in one SQLite transaction).
- Maps PostgreSQL type names to a `PgType`: canonical PG name, type OID, typmod and the SQLite
  declared type used for storage (all user tables are STRICT):
    int2/int4/int8/serial*      -> INTEGER (INT for a non-serial PRIMARY KEY, see translate.py)
    text/varchar(n)/char(n)     -> TEXT          boolean           -> INTEGER 0/1
    float4/float8               -> REAL          numeric(p,s)      -> TEXT exact decimal string
                                                                      (COLLATE pg_numeric for order)
    timestamptz                 -> TEXT 'YYYY-MM-DD HH:MM:SS.ffffff+00' (UTC, fixed width: sorts)
    timestamp / date / time     -> TEXT 'YYYY-MM-DD HH:MM:SS.ffffff' / 'YYYY-MM-DD' / 'HH:MM:SS.ffffff'
    bytea -> BLOB               json/jsonb/uuid -> TEXT
- Mangles (schema, table) to one SQLite name (`sqlite_name()`), resolves names through search_path.

Name mangling (injective, documented so names cannot collide):
- A table of schema `public` whose name contains no `__` and does not start with `pgbed_` or
  `sqlite_` keeps its name: `public.t` is SQLite table `t`.
- Every other (schema, name) becomes `q(schema) + "__" + q(name)` where `q` replaces each `_` by `_u`.
  `q(x)` never contains `__` and never ends with `_`, so the first `__` is the separator and the
  mapping is reversible; unmangled names never contain `__`, so the two forms never meet.
  Example: `s.t` -> `s__t`, `my_s.t_1` -> `my_us__t_u1`. Index names are mangled the same way.

What it deliberately does not do:
- No pg_catalog emulation (pg_class, pg_attribute ... are the system-view layer's job; it can read
  these tables). No foreign keys, ALTER TABLE, views, or per-database separation (one database).
- SQLite identifiers are case-insensitive: two PG tables differing only in the case of a quoted name
  cannot coexist (SQLite reports `already exists`, mapped to 42P07).
- Sequences are transactional here (a rolled-back nextval is given out again); PG's are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import apsw

from node import protocol as P
from node.elog import PGError

CATALOG_DDL = (
    "CREATE TABLE IF NOT EXISTS pgbed_schema(name TEXT PRIMARY KEY) STRICT",
    "CREATE TABLE IF NOT EXISTS pgbed_table(schema TEXT NOT NULL, name TEXT NOT NULL,"
    " sqlite_name TEXT NOT NULL UNIQUE, PRIMARY KEY(schema, name)) STRICT",
    "CREATE TABLE IF NOT EXISTS pgbed_column(table_sqlite_name TEXT NOT NULL, position INTEGER NOT NULL,"
    " name TEXT NOT NULL, pg_type INTEGER NOT NULL, typmod INTEGER NOT NULL, not_null INTEGER NOT NULL,"
    " default_expr TEXT, is_serial INTEGER NOT NULL, PRIMARY KEY(table_sqlite_name, position)) STRICT",
    "CREATE TABLE IF NOT EXISTS pgbed_constraint(table_sqlite_name TEXT NOT NULL, name TEXT NOT NULL,"
    " kind TEXT NOT NULL, columns TEXT NOT NULL, PRIMARY KEY(table_sqlite_name, name)) STRICT",
    "CREATE TABLE IF NOT EXISTS pgbed_index(schema TEXT NOT NULL, name TEXT NOT NULL,"
    " sqlite_name TEXT NOT NULL UNIQUE, table_sqlite_name TEXT NOT NULL, PRIMARY KEY(schema, name)) STRICT",
    "CREATE TABLE IF NOT EXISTS pgbed_sequence(name TEXT PRIMARY KEY, value INTEGER NOT NULL,"
    " is_called INTEGER NOT NULL DEFAULT 0) STRICT",
    "CREATE TABLE IF NOT EXISTS pgbed_meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT",
    "INSERT OR IGNORE INTO pgbed_schema VALUES ('public'), ('pg_catalog')",
    "INSERT OR IGNORE INTO pgbed_meta VALUES ('catalog_version', 1)",
)

RESERVED_PREFIXES = ("pgbed_", "sqlite_")


@dataclass(frozen=True)
class PgType:
    oid: int
    typmod: int = -1  # PG encoding: varchar(n) -> n+4, numeric(p,s) -> ((p << 16) | s) + 4
    serial: bool = False  # serial/bigserial/smallserial column (an int type + a sequence default)

    @property
    def sqlite_decl(self) -> str:
        return sqlite_decl(self.oid)

    @property
    def name(self) -> str:
        return format_type(self.oid, self.typmod)


_INT_OIDS = frozenset((P.INT2, P.INT4, P.INT8))
_TEXT_OIDS = frozenset((P.TEXT, P.VARCHAR, P.BPCHAR, P.JSON, P.JSONB, P.UUID, P.NUMERIC, P.TIMESTAMPTZ,
                        P.TIMESTAMP, P.DATE, P.TIME, P.NAME))  # fmt: skip


def sqlite_decl(oid: int) -> str:
    if oid in _INT_OIDS or oid == P.BOOL:
        return "INTEGER"
    if oid in (P.FLOAT4, P.FLOAT8):
        return "REAL"
    if oid == P.BYTEA:
        return "BLOB"
    return "TEXT"


_TYPE_NAMES = {
    P.INT2: "smallint", P.INT4: "integer", P.INT8: "bigint", P.TEXT: "text", P.BOOL: "boolean",
    P.FLOAT4: "real", P.FLOAT8: "double precision", P.NUMERIC: "numeric", P.BYTEA: "bytea",
    P.TIMESTAMPTZ: "timestamp with time zone", P.TIMESTAMP: "timestamp without time zone",
    P.DATE: "date", P.TIME: "time without time zone", P.JSON: "json", P.JSONB: "jsonb", P.UUID: "uuid",
    P.VARCHAR: "character varying", P.BPCHAR: "character", P.NAME: "name",
}  # fmt: skip


def format_type(oid: int, typmod: int = -1) -> str:
    """PG's format_type(): `character varying(10)`, `numeric(10,2)`, `integer` ..."""
    base = _TYPE_NAMES.get(oid, str(oid))
    if typmod < 0:
        return base
    if oid in (P.VARCHAR, P.BPCHAR):
        return f"{base}({typmod - 4})"
    if oid == P.NUMERIC:
        t = typmod - 4
        return f"numeric({t >> 16},{t & 0xFFFF})"
    return base


# sqlglot DType name -> OID (postgres dialect spelling, see tests).
_DTYPE_OIDS = {
    "SMALLINT": P.INT2, "INT": P.INT4, "BIGINT": P.INT8, "TEXT": P.TEXT, "VARCHAR": P.VARCHAR,
    "CHAR": P.BPCHAR, "BPCHAR": P.BPCHAR, "BOOLEAN": P.BOOL, "FLOAT": P.FLOAT4, "DOUBLE": P.FLOAT8,
    "DECIMAL": P.NUMERIC, "TIMESTAMPTZ": P.TIMESTAMPTZ, "TIMESTAMP": P.TIMESTAMP, "DATE": P.DATE,
    "TIME": P.TIME, "VARBINARY": P.BYTEA, "JSON": P.JSON, "JSONB": P.JSONB, "UUID": P.UUID,
    "NAME": P.NAME,
}  # fmt: skip
_SERIALS = {"SERIAL": P.INT4, "BIGSERIAL": P.INT8, "SMALLSERIAL": P.INT2}
_USER_NAMES = {
    "serial4": ("SERIAL", None), "serial8": ("BIGSERIAL", None), "serial2": ("SMALLSERIAL", None),
    "int2": ("SMALLINT", None), "int4": ("INT", None), "int8": ("BIGINT", None),
    "float4": ("FLOAT", None), "float8": ("DOUBLE", None), "bool": ("BOOLEAN", None),
    "decimal": ("DECIMAL", None), "varchar": ("VARCHAR", None), "timestamptz": ("TIMESTAMPTZ", None),
}  # fmt: skip
# Known to PostgreSQL, not storable here: 0A000 naming the type.
_UNSUPPORTED = {
    "INTERVAL": "interval", "TIMETZ": "time with time zone", "INET": "inet", "CIDR": "cidr",
    "MONEY": "money", "OID": "oid", "REGCLASS": "regclass", "XML": "xml", "MACADDR": "macaddr",
    "BIT": "bit", "VARBIT": "bit varying", "POINT": "point", "TSVECTOR": "tsvector", "HSTORE": "hstore",
    "INT4RANGE": "int4range", "INT8RANGE": "int8range", "NUMRANGE": "numrange", "TSRANGE": "tsrange",
    "TSTZRANGE": "tstzrange", "DATERANGE": "daterange",
}  # fmt: skip


def resolve_type(dtype_name: str, params: list[int], user_name: str | None = None) -> PgType:
    """sqlglot DType name (+ numeric parameters) -> PgType, or PGError 42704 / 0A000."""
    if dtype_name == "USERDEFINED" and user_name is not None:
        alias = _USER_NAMES.get(user_name.lower())
        if alias is None:
            raise PGError(f'type "{user_name}" does not exist', "42704")
        dtype_name = alias[0]
    if dtype_name in _SERIALS:
        return PgType(_SERIALS[dtype_name], -1, True)
    if dtype_name == "ARRAY":
        raise PGError("array types are not supported by pgbed", "0A000")
    if dtype_name in _UNSUPPORTED:
        raise PGError(f"type {_UNSUPPORTED[dtype_name]} is not supported by pgbed", "0A000")
    oid = _DTYPE_OIDS.get(dtype_name)
    if oid is None:
        raise PGError(f"type {dtype_name.lower()} is not supported by pgbed", "0A000")
    typmod = -1
    if oid in (P.VARCHAR, P.BPCHAR):
        if params:
            if params[0] < 1:
                raise PGError(f"length for type {_TYPE_NAMES[oid]} must be at least 1", "22023")
            typmod = params[0] + 4
        elif oid == P.BPCHAR and dtype_name == "CHAR":
            typmod = 1 + 4  # char without length is char(1)
    elif oid == P.NUMERIC and params:
        prec = params[0]
        scale = params[1] if len(params) > 1 else 0
        if not 1 <= prec <= 1000:
            raise PGError(f"NUMERIC precision {prec} must be between 1 and 1000", "22023")
        if not 0 <= scale <= prec:
            raise PGError(f"NUMERIC scale {scale} must be between 0 and precision {prec}", "22023")
        typmod = ((prec << 16) | scale) + 4
    return PgType(oid, typmod)


def mangle(schema: str, name: str) -> str:
    """(schema, name) -> SQLite name. See the module docstring for why this cannot collide."""
    if schema == "public" and "__" not in name and not name.lower().startswith(RESERVED_PREFIXES):
        return name
    return _q(schema) + "__" + _q(name)


def _q(x: str) -> str:
    return x.replace("_", "_u")


@dataclass
class ColumnInfo:
    position: int
    name: str
    type: PgType
    not_null: bool = False
    default_expr: str | None = None  # SQLite expression text as stored in the table definition
    is_serial: bool = False

    @property
    def oid(self) -> int:
        return self.type.oid


@dataclass
class ConstraintInfo:
    name: str
    kind: str  # 'p' primary key, 'u' unique, 'c' check, 'n' not null (PG's contype letters)
    columns: tuple[str, ...]


@dataclass
class TableInfo:
    schema: str
    name: str
    sqlite_name: str
    columns: list[ColumnInfo] = field(default_factory=list)
    constraints: list[ConstraintInfo] = field(default_factory=list)

    def column(self, name: str) -> ColumnInfo | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    def constraint_for(self, kind: str, columns: tuple[str, ...]) -> ConstraintInfo | None:
        for c in self.constraints:
            if c.kind == kind and c.columns == columns:
                return c
        return None


@dataclass
class IndexInfo:
    schema: str
    name: str
    sqlite_name: str
    table_sqlite_name: str


class Catalog:
    """The catalog of one connection. Reads are cached per catalog version; DDL bumps the version."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self._tables: dict[tuple[str, str], TableInfo] | None = None
        self._by_sqlite: dict[str, TableInfo] = {}
        self._schemas: set[str] = set()
        self._version_seen = -1

    # -- setup ------------------------------------------------------------------------------
    def bootstrap(self) -> None:
        """Create the catalog tables if missing (idempotent); schemas public and pg_catalog exist."""
        with self.conn:
            for stmt in CATALOG_DDL:
                self.conn.execute(stmt)
        self.invalidate()

    def invalidate(self) -> None:
        self._tables = None

    @property
    def version(self) -> int:
        """Persistent catalog version: changes with every DDL, also those of other backends."""
        row = self.conn.execute("SELECT value FROM pgbed_meta WHERE key = 'catalog_version'").fetchone()
        return int(row[0]) if row else 0

    def _load(self) -> dict[tuple[str, str], TableInfo]:
        v = self.version
        if self._tables is not None and v == self._version_seen:
            return self._tables
        tables: dict[tuple[str, str], TableInfo] = {}
        by_sqlite: dict[str, TableInfo] = {}
        for schema, name, sname in self.conn.execute("SELECT schema, name, sqlite_name FROM pgbed_table"):
            ti = TableInfo(schema, name, sname)
            tables[(schema, name)] = ti
            by_sqlite[sname] = ti
        for tname, pos, cname, oid, typmod, nn, dflt, serial in self.conn.execute(
            "SELECT table_sqlite_name, position, name, pg_type, typmod, not_null, default_expr, is_serial"
            " FROM pgbed_column ORDER BY table_sqlite_name, position"
        ):
            ti2 = by_sqlite.get(tname)
            if ti2 is not None:
                ti2.columns.append(ColumnInfo(pos, cname, PgType(oid, typmod, bool(serial)), bool(nn), dflt,
                                              bool(serial)))  # fmt: skip
        for tname, cname, kind, cols in self.conn.execute(
            "SELECT table_sqlite_name, name, kind, columns FROM pgbed_constraint"
        ):
            ti3 = by_sqlite.get(tname)
            if ti3 is not None:
                ti3.constraints.append(ConstraintInfo(cname, kind, tuple(cols.split(",")) if cols else ()))
        self._schemas = {r[0] for r in self.conn.execute("SELECT name FROM pgbed_schema")}
        self._tables, self._by_sqlite, self._version_seen = tables, by_sqlite, v
        return tables

    # -- lookups ----------------------------------------------------------------------------
    def lookup(self, name: str, search_path: list[str], schema: str | None = None) -> TableInfo | None:
        """Resolve `name` (or `schema.name` given as `name` with a dot, or explicit `schema`)."""
        tables = self._load()
        if schema is None and "." in name:
            schema, name = name.split(".", 1)
        if schema is not None:
            return tables.get((schema, name))
        for s in search_path:
            ti = tables.get((s, name))
            if ti is not None:
                return ti
        return None

    def by_sqlite_name(self, sqlite_name: str) -> TableInfo | None:
        self._load()
        return self._by_sqlite.get(sqlite_name)

    def tables(self) -> list[TableInfo]:
        return list(self._load().values())

    def schemas(self) -> set[str]:
        self._load()
        return set(self._schemas)

    def has_schema(self, name: str) -> bool:
        self._load()
        return name in self._schemas

    def creation_schema(self, search_path: list[str]) -> str:
        """The first existing schema of search_path (where unqualified CREATE puts things)."""
        self._load()
        for s in search_path:
            if s in self._schemas and s != "pg_catalog":
                return s
        raise PGError("no schema has been selected to create in", "3F000")

    def lookup_index(self, name: str, search_path: list[str], schema: str | None = None) -> IndexInfo | None:
        schemas = [schema] if schema is not None else search_path
        for s in schemas:
            row = self.conn.execute(
                "SELECT schema, name, sqlite_name, table_sqlite_name FROM pgbed_index WHERE schema = ? AND name = ?",
                (s, name),
            ).fetchone()
            if row:
                return IndexInfo(*row)
        return None

    # -- DDL (called by the executor inside the statement's transaction) ---------------------
    def _bump(self) -> None:
        self.conn.execute("UPDATE pgbed_meta SET value = value + 1 WHERE key = 'catalog_version'")
        self.invalidate()

    def add_schema(self, name: str) -> None:
        self.conn.execute("INSERT INTO pgbed_schema VALUES (?)", (name,))
        self._bump()

    def drop_schema(self, name: str) -> None:
        self.conn.execute("DELETE FROM pgbed_schema WHERE name = ?", (name,))
        self._bump()

    def add_table(self, ti: TableInfo) -> None:
        self.conn.execute("INSERT INTO pgbed_table VALUES (?, ?, ?)", (ti.schema, ti.name, ti.sqlite_name))
        for c in ti.columns:
            self.conn.execute(
                "INSERT INTO pgbed_column VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ti.sqlite_name, c.position, c.name, c.type.oid, c.type.typmod, int(c.not_null),
                 c.default_expr, int(c.is_serial)),
            )  # fmt: skip
        for k in ti.constraints:
            self.conn.execute("INSERT INTO pgbed_constraint VALUES (?, ?, ?, ?)",
                              (ti.sqlite_name, k.name, k.kind, ",".join(k.columns)))  # fmt: skip
        self._bump()

    def drop_table(self, sqlite_name: str) -> None:
        ti = self.by_sqlite_name(sqlite_name)
        if ti is not None:
            for c in ti.columns:
                if c.is_serial:
                    self.conn.execute("DELETE FROM pgbed_sequence WHERE name = ?", (sequence_name(ti, c.name),))
        for stmt in (
            "DELETE FROM pgbed_table WHERE sqlite_name = ?",
            "DELETE FROM pgbed_column WHERE table_sqlite_name = ?",
            "DELETE FROM pgbed_constraint WHERE table_sqlite_name = ?",
            "DELETE FROM pgbed_index WHERE table_sqlite_name = ?",
        ):
            self.conn.execute(stmt, (sqlite_name,))
        self._bump()

    def add_index(self, ii: IndexInfo, unique_columns: tuple[str, ...] | None) -> None:
        self.conn.execute(
            "INSERT INTO pgbed_index VALUES (?, ?, ?, ?)", (ii.schema, ii.name, ii.sqlite_name, ii.table_sqlite_name)
        )
        if unique_columns is not None:  # a unique index reports its own name in 23505, as in PG
            self.conn.execute(
                "INSERT INTO pgbed_constraint VALUES (?, ?, 'u', ?)",
                (ii.table_sqlite_name, ii.name, ",".join(unique_columns)),
            )
        self._bump()

    def drop_index(self, ii: IndexInfo) -> None:
        self.conn.execute("DELETE FROM pgbed_index WHERE sqlite_name = ?", (ii.sqlite_name,))
        self.conn.execute(
            "DELETE FROM pgbed_constraint WHERE table_sqlite_name = ? AND name = ?", (ii.table_sqlite_name, ii.name)
        )
        self._bump()

    def add_sequence(self, name: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO pgbed_sequence VALUES (?, 1, 0)", (name,))


def sequence_name(ti: TableInfo, column: str) -> str:
    """Key of a serial column's sequence in pgbed_sequence: PG's `<table>_<column>_seq`, mangled."""
    return mangle(ti.schema, f"{ti.name}_{column}_seq")
