"""SQLite functions, aggregates, collation and table-valued functions that translated SQL calls.

What it does: `register_functions(conn, hooks)` installs on one APSW connection
- `pg_now()` (now/transaction_timestamp/current_timestamp: fixed per transaction, from the hook),
  `pg_statement_timestamp()`, `pg_clock_timestamp()` — all in timestamptz storage form (µs, `+00`);
- `pg_sleep(seconds)` -> `hooks.sleep(seconds)` so the backend can make it an interruptible latch wait;
- `pg_series(start, stop[, step])` table-valued function (generate_series, integer forms);
- `pg_regex(s, pattern, icase)` for `~` / `~*` (Python `re`, close to PG's ARE for common patterns);
- `pg_cast(x, oid, typmod, source_oid)` — every `::` cast with PG's input checks (values.to_storage);
- exact numeric arithmetic `pg_num_add/sub/mul/div`, `pg_div` (division with 22012), aggregates
  `pg_num_sum`, `pg_num_avg` (PG's result scale rules), collation `pg_numeric` (numeric order of
  the exact decimal strings stored in numeric columns; must be registered wherever the heap is
  opened, redo included);
- `pg_date_trunc(field, ts)`, `pg_nextval(seq)` / `pg_currval(seq)` over pgbed_sequence, `left`, `right`.

What it deliberately does not do: time zones other than UTC, intervals, generate_series over
timestamps, PG regex features Python lacks (e.g. `[[:<:]]`), locale-aware collation.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any, Protocol, cast

import apsw
import apsw.ext

from node.elog import PGError
from node.sql import values as V


class SessionHooks(Protocol):
    """What the backend supplies: transaction start time, statement start time, an interruptible sleep."""

    def transaction_timestamp(self) -> datetime: ...
    def statement_timestamp(self) -> datetime: ...
    def sleep(self, seconds: float) -> None: ...


class DefaultHooks:
    """Hooks for tests and tools: transaction time = time of the first call since `new_transaction()`."""

    def __init__(self) -> None:
        self._xact: datetime | None = None
        self._stmt: datetime | None = None

    def new_transaction(self) -> None:
        self._xact = None

    def new_statement(self) -> None:
        self._stmt = None

    def transaction_timestamp(self) -> datetime:
        if self._xact is None:
            self._xact = datetime.now(UTC)
        return self._xact

    def statement_timestamp(self) -> datetime:
        if self._stmt is None:
            self._stmt = datetime.now(UTC)
        return self._stmt

    def sleep(self, seconds: float) -> None:
        _time.sleep(max(0.0, seconds))


def _dec(x: object) -> Decimal:
    if isinstance(x, Decimal):
        return x
    if isinstance(x, float):
        return Decimal(repr(x))
    if isinstance(x, (int, str)):
        try:
            return Decimal(x)
        except InvalidOperation:
            raise V.invalid_input("numeric", x) from None
    raise V.invalid_input("numeric", x)


def _dscale(d: Decimal) -> int:
    e = d.as_tuple().exponent
    return -e if isinstance(e, int) and e < 0 else 0


def _num_out(d: Decimal) -> str:
    s = format(d, "f")
    return s[1:] if s.startswith("-") and d == 0 else s


def _nbase_first(d: Decimal) -> tuple[int, int]:
    """(weight, first digit) of |d| in PG's base-10000 representation (0, 0 for zero)."""
    if d == 0:
        return 0, 0
    d = abs(d)
    w = d.adjusted() // 4
    return w, int(d.scaleb(-4 * w))


def div_scale(a: Decimal, b: Decimal) -> int:
    """PG's select_div_scale(): result display scale of numeric division."""
    w1, f1 = _nbase_first(a)
    w2, f2 = _nbase_first(b)
    qweight = w1 - w2
    if f1 <= f2:
        qweight -= 1
    rscale = 16 - qweight * 4
    return min(max(rscale, _dscale(a), _dscale(b), 0), 1000)


def num_div(a: Decimal, b: Decimal) -> str:
    if b == 0:
        raise PGError("division by zero", "22012")
    scale = div_scale(a, b)
    with localcontext() as ctx:
        ctx.prec = 2000
        q = (a / b).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    return _num_out(q)


def _pg_div(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            raise PGError("division by zero", "22012")
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    if isinstance(a, str) or isinstance(b, str):
        return num_div(_dec(a), _dec(b))
    if b == 0:
        raise PGError("division by zero", "22012")
    return a / b


def _num_binop(op: Callable[[Decimal, Decimal], Decimal]) -> Callable[[Any, Any], str | None]:
    def f(a: Any, b: Any) -> str | None:
        if a is None or b is None:
            return None
        with localcontext() as ctx:
            ctx.prec = 2000
            return _num_out(op(_dec(a), _dec(b)))

    return f


class _NumSum:
    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, x: Any) -> None:
        if x is not None:
            with localcontext() as ctx:
                ctx.prec = 2000
                self.total = _dec(x) if self.total is None else self.total + _dec(x)

    def final(self) -> str | None:
        return None if self.total is None else _num_out(self.total)


class _NumAvg:
    def __init__(self) -> None:
        self.total = Decimal(0)
        self.n = 0

    def step(self, x: Any) -> None:
        if x is not None:
            with localcontext() as ctx:
                ctx.prec = 2000
                self.total += _dec(x)
            self.n += 1

    def final(self) -> str | None:
        return None if self.n == 0 else num_div(self.total, Decimal(self.n))


def _agg_factory(cls: type) -> Callable[[], tuple[object, Callable[..., None], Callable[..., object]]]:
    def factory() -> tuple[object, Callable[..., None], Callable[..., object]]:
        inst = cls()
        return inst, lambda _ctx, *a: inst.step(*a), lambda _ctx: inst.final()

    return factory


def numeric_collation(a: str, b: str) -> int:
    try:
        da, db = Decimal(a), Decimal(b)
    except InvalidOperation:
        return (a > b) - (a < b)
    if da.is_nan() or db.is_nan():  # PG sorts NaN above everything
        return (da.is_nan() and not db.is_nan()) - (db.is_nan() and not da.is_nan())
    return (da > db) - (da < db)


_REGEX_CACHE: dict[tuple[str, int], re.Pattern[str]] = {}


def _pg_regex(s: Any, pattern: Any, icase: int) -> int | None:
    if s is None or pattern is None:
        return None
    key = (str(pattern), icase)
    rx = _REGEX_CACHE.get(key)
    if rx is None:
        try:
            rx = re.compile(str(pattern), re.IGNORECASE if icase else 0)
        except re.error as e:
            raise PGError(f"invalid regular expression: {e}", "2201B") from None
        _REGEX_CACHE[key] = rx
    return 1 if rx.search(str(s)) else 0


_TRUNC_FIELDS = ("microseconds", "milliseconds", "second", "minute", "hour", "day", "week", "month", "quarter",
                 "year", "decade", "century", "millennium")  # fmt: skip


def _pg_date_trunc(field: Any, ts: Any) -> str | None:
    if field is None or ts is None:
        return None
    f = str(field).lower()
    if f not in _TRUNC_FIELDS:
        raise PGError(f'unit "{field}" not recognized for type timestamp with time zone', "22023")
    tz = str(ts).endswith("+00") or not isinstance(ts, str)
    dt = V.parse_timestamp(str(ts), True, "timestamp with time zone") if tz else \
        V.parse_timestamp(str(ts), False, "timestamp without time zone")  # fmt: skip
    if f == "milliseconds":
        dt = dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    elif f != "microseconds":
        dt = dt.replace(microsecond=0)
        order = _TRUNC_FIELDS.index(f)
        if order >= 3:
            dt = dt.replace(second=0)
        if order >= 4:
            dt = dt.replace(minute=0)
        if order >= 5:
            dt = dt.replace(hour=0)
        if f == "week":
            from datetime import timedelta

            dt = dt - timedelta(days=dt.weekday())
        if order >= 7:
            dt = dt.replace(day=1)
        if f == "quarter":
            dt = dt.replace(month=(dt.month - 1) // 3 * 3 + 1)
        if order >= 9:
            dt = dt.replace(month=1)
        if f == "decade":
            dt = dt.replace(year=dt.year // 10 * 10)
        elif f == "century":
            dt = dt.replace(year=(dt.year - 1) // 100 * 100 + 1)
        elif f == "millennium":
            dt = dt.replace(year=(dt.year - 1) // 1000 * 1000 + 1)
    return V.to_timestamp(dt, tz)


def _series(start: Any, stop: Any, step: Any = 1) -> Any:
    if start is None or stop is None or step is None:
        return
    if step == 0:
        raise PGError("step size cannot equal zero", "22023")
    i = start
    while (step > 0 and i <= stop) or (step < 0 and i >= stop):
        yield (i,)
        i += step


_series.columns = ("value",)  # type: ignore[attr-defined]
_series.column_access = apsw.ext.VTColumnAccess.By_Index  # type: ignore[attr-defined]


class _Sequences:
    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.last: dict[str, int] = {}

    def nextval(self, name: Any) -> int:
        row = self.conn.execute(
            "UPDATE pgbed_sequence SET value = CASE WHEN is_called THEN value + 1 ELSE value END, is_called = 1"
            " WHERE name = ? RETURNING value",
            (name,),
        ).fetchone()
        if row is None:
            raise PGError(f'relation "{name}" does not exist', "42P01")
        self.last[str(name)] = int(row[0])
        return int(row[0])

    def currval(self, name: Any) -> int:
        if str(name) not in self.last:
            raise PGError(f'currval of sequence "{name}" is not yet defined in this session', "55000")
        return self.last[str(name)]


def _cast(x: Any, oid: int, typmod: int = -1, source_oid: int | None = None) -> Any:
    return V.to_storage(x, int(oid), int(typmod), None if source_oid is None else int(source_oid))


def _pg_round(x: Any, digits: Any = 0) -> str | None:
    """round(numeric, int): half away from zero, result scale = max(digits, 0)."""
    if x is None or digits is None:
        return None
    d = _dec(x)
    q = d.quantize(Decimal(1).scaleb(-int(digits)), rounding=ROUND_HALF_UP) if int(digits) >= 0 else \
        (d.scaleb(int(digits)).quantize(Decimal(1), rounding=ROUND_HALF_UP).scaleb(-int(digits)))  # fmt: skip
    return _num_out(q if int(digits) >= 0 else Decimal(int(q)))


def _left(s: Any, n: Any) -> str | None:
    if s is None or n is None:
        return None
    return str(s)[:n]


def _right(s: Any, n: Any) -> str | None:
    if s is None or n is None:
        return None
    s = str(s)
    return (s[-n:] if n > 0 else "") if n >= 0 else s[-n:]


def _scalar(conn: apsw.Connection, name: str, fn: Callable[..., Any], nargs: int, deterministic: bool = False) -> None:
    conn.create_scalar_function(name, cast(Any, fn), nargs, deterministic=deterministic)


def register_functions(conn: apsw.Connection, hooks: SessionHooks) -> None:
    """Install every function the translations reference on `conn` (call once per connection)."""
    def now() -> str:
        return V.to_timestamp(hooks.transaction_timestamp(), True)

    def statement_ts() -> str:
        return V.to_timestamp(hooks.statement_timestamp(), True)

    def clock_ts() -> str:
        return V.to_timestamp(datetime.now(UTC), True)

    _scalar(conn, "pg_now", now, 0)
    _scalar(conn, "pg_statement_timestamp", statement_ts, 0)
    _scalar(conn, "pg_clock_timestamp", clock_ts, 0)

    def sleep(secs: Any) -> None:
        if secs is not None:
            hooks.sleep(float(secs))

    _scalar(conn, "pg_sleep", sleep, 1)
    _scalar(conn, "pg_regex", _pg_regex, 3, deterministic=True)
    _scalar(conn, "pg_cast", _cast, -1, deterministic=True)
    _scalar(conn, "pg_div", _pg_div, 2, deterministic=True)
    _scalar(conn, "pg_num_add", _num_binop(lambda a, b: a + b), 2, deterministic=True)
    _scalar(conn, "pg_num_sub", _num_binop(lambda a, b: a - b), 2, deterministic=True)
    _scalar(conn, "pg_num_mul", _num_binop(lambda a, b: a * b), 2, deterministic=True)
    def ndiv(a: Any, b: Any) -> str | None:
        return None if a is None or b is None else num_div(_dec(a), _dec(b))

    _scalar(conn, "pg_num_div", ndiv, 2, deterministic=True)
    _scalar(conn, "pg_date_trunc", _pg_date_trunc, 2, deterministic=True)
    _scalar(conn, "left", _left, 2, deterministic=True)
    _scalar(conn, "pg_round", _pg_round, -1, deterministic=True)
    _scalar(conn, "right", _right, 2, deterministic=True)
    conn.create_aggregate_function("pg_num_sum", _agg_factory(_NumSum), 1)
    conn.create_aggregate_function("pg_num_avg", _agg_factory(_NumAvg), 1)
    conn.create_collation("pg_numeric", numeric_collation)
    seqs = _Sequences(conn)
    _scalar(conn, "pg_nextval", seqs.nextval, 1)
    _scalar(conn, "pg_currval", seqs.currval, 1)
    apsw.ext.make_virtual_module(conn, "pg_series", cast(Any, _series))


__all__ = ["DefaultHooks", "SessionHooks", "numeric_collation", "register_functions"]
