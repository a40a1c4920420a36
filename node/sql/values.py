"""Value conversion between PostgreSQL types and pgbed's SQLite storage forms.

What it does:
- `to_storage(value, oid, typmod)`: a Python value (a bound parameter as decoded by
  node.protocol.decode_param, a literal, or a value being cast) -> the SQLite value stored for a column
  of that PG type, with PostgreSQL's input checks and messages (22P02 invalid input syntax, 22003 out
  of range / numeric field overflow, 22001 value too long). This is also the body of the `pg_cast`
  SQL function, so `::` casts and parameter binding share one implementation.
- `to_text(value, oid)`: a SQLite result value -> PostgreSQL text output (bool 0/1 -> t/f, numeric
  exact strings, timestamptz storage form -> `2026-11-25 09:21:37.057495+00` with trailing zeros of
  the fraction dropped, float shortest round-trip, bytea `\\x..`); `encode_row` gives wire bytes.
- `value_oid(value)`: the fallback type of an untyped result value (int -> int8, float -> float8,
  str -> text, bytes -> bytea).

Storage forms (see catalog.py): timestamptz 'YYYY-MM-DD HH:MM:SS.ffffff+00' in UTC, timestamp the same
without offset, date 'YYYY-MM-DD', time 'HH:MM:SS.ffffff', numeric an exact decimal string, bool 0/1.

What it deliberately does not do: time zones other than UTC (the session TimeZone is Etc/UTC),
intervals, arrays, infinity timestamps beyond passing 'infinity' through, BC dates, binary output.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation

from node import protocol as P
from node.elog import PGError

_INT_RANGE = {P.INT2: (-(2**15), 2**15 - 1), P.INT4: (-(2**31), 2**31 - 1), P.INT8: (-(2**63), 2**63 - 1)}
_INT_NAME = {P.INT2: "smallint", P.INT4: "integer", P.INT8: "bigint"}
_FLOAT_NAME = {P.FLOAT4: "real", P.FLOAT8: "double precision"}
_TS_RE = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?)?"
    r"\s*(Z|UTC|[+-]\d{1,2}(?::?\d{2})?)?\s*$",
    re.IGNORECASE,
)
_TIME_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?\s*$")


def invalid_input(typename: str, value: object) -> PGError:
    return PGError(f'invalid input syntax for type {typename}: "{value}"', "22P02")


# -- input ------------------------------------------------------------------------------------
def to_int(value: object, oid: int = P.INT8, source_oid: int | None = None) -> int:
    name = _INT_NAME.get(oid, "bigint")
    if isinstance(value, bool):
        if source_oid in (None, P.BOOL):
            return int(value)
        raise invalid_input(name, value)
    if isinstance(value, int):
        i = value
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise PGError(f"{name} out of range", "22003")
        i = int(Decimal(value).to_integral_value(ROUND_HALF_EVEN))  # float8 -> int: rint()
    elif isinstance(value, Decimal):
        i = int(value.to_integral_value(ROUND_HALF_UP))
    elif isinstance(value, str):
        if source_oid == P.NUMERIC:
            return to_int(Decimal(value), oid)
        try:
            i = int(value.strip(), 10)
            if "_" in value:
                raise ValueError
        except ValueError:
            raise invalid_input(name, value) from None
    else:
        raise invalid_input(name, value)
    lo, hi = _INT_RANGE.get(oid, _INT_RANGE[P.INT8])
    if not lo <= i <= hi:
        if isinstance(value, str):
            raise PGError(f'value "{value}" is out of range for type {name}', "22003")
        raise PGError(f"{name} out of range", "22003")
    return i


def to_float(value: object, oid: int = P.FLOAT8) -> float:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        s = value.strip().lower()
        special = {"nan": "nan", "infinity": "inf", "+infinity": "inf", "-infinity": "-inf", "inf": "inf",
                   "+inf": "inf", "-inf": "-inf"}  # fmt: skip
        if s in special:
            return float(special[s])
        try:
            if s and ("inf" in s or "nan" in s or "_" in s):
                raise ValueError
            return float(s)
        except ValueError:
            raise invalid_input(_FLOAT_NAME.get(oid, "double precision"), value) from None
    raise invalid_input(_FLOAT_NAME.get(oid, "double precision"), value)


def to_bool(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return 1 if value else 0
    if isinstance(value, str):
        b = P.parse_bool(value.strip())
        if b is None:
            raise invalid_input("boolean", value)
        return int(b)
    raise invalid_input("boolean", value)


def to_numeric(value: object, typmod: int = -1) -> str:
    """Exact decimal string, rounded to the typmod's scale (half away from zero, as PG)."""
    if isinstance(value, bool):
        raise PGError("cannot cast type boolean to numeric", "42846")
    try:
        if isinstance(value, float):
            d = Decimal(repr(value)) if value == value and abs(value) != float("inf") else Decimal(value)
        elif isinstance(value, (int, Decimal)):
            d = Decimal(value)
        elif isinstance(value, str):
            s = value.strip()
            if not s or "_" in s or s.lower() in ("inf", "+inf", "-inf"):
                raise InvalidOperation
            d = Decimal(s)
        else:
            raise InvalidOperation
    except InvalidOperation:
        raise invalid_input("numeric", value) from None
    if d.is_nan():
        return "NaN"
    if d.is_infinite():
        if typmod >= 0:
            prec, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
            raise PGError("numeric field overflow", "22003",
                          detail=f"A field with precision {prec}, scale {scale} cannot hold an infinite value.")
        return "-Infinity" if d < 0 else "Infinity"
    if typmod >= 0:
        prec, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
        d = d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
        if d != 0 and d.adjusted() >= prec - scale:
            raise PGError(
                "numeric field overflow", "22003",
                detail=f"A field with precision {prec}, scale {scale} must round to an absolute value less than "
                f"{'10^' + str(prec - scale) if prec != scale else '1'}.",
            )  # fmt: skip
    s = format(d, "f")
    if s.startswith("-") and d == 0:
        s = s[1:]
    return s


def _parse_offset(tz: str | None) -> timedelta:
    if not tz or tz.upper() in ("Z", "UTC"):
        return timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    body = tz[1:].replace(":", "")
    h, m = (int(body[:-2]), int(body[-2:])) if len(body) > 2 else (int(body), 0)
    return sign * timedelta(hours=h, minutes=m)


def parse_timestamp(value: str, tz: bool, typename: str) -> datetime:
    """PG timestamp input in the ISO forms clients send; returns an aware UTC datetime (tz) or naive."""
    m = _TS_RE.match(value)
    if not m:
        s = value.strip().lower()
        if s in ("now", "today", "epoch"):
            if s == "epoch":
                return datetime(1970, 1, 1, tzinfo=UTC if tz else None)
            now = datetime.now(UTC)
            if s == "today":
                now = now.replace(hour=0, minute=0, second=0, microsecond=0)
            return now if tz else now.replace(tzinfo=None)
        raise invalid_input(typename, value)
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0),
                      int((frac or "0").ljust(6, "0")))  # fmt: skip
    except ValueError:
        raise PGError(f'date/time field value out of range: "{value}"', "22008") from None
    if tz:
        return (dt - _parse_offset(off)).replace(tzinfo=UTC)
    return dt


def _fmt_ts(dt: datetime, tz: bool) -> str:
    if tz:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        dt = dt.astimezone(UTC)
        return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}" \
               f".{dt.microsecond:06d}+00"  # fmt: skip
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}" \
           f".{dt.microsecond:06d}"  # fmt: skip


def to_timestamp(value: object, tz: bool) -> str:
    typename = "timestamp with time zone" if tz else "timestamp without time zone"
    if isinstance(value, datetime):
        return _fmt_ts(value, tz)
    if isinstance(value, date):
        return _fmt_ts(datetime(value.year, value.month, value.day), tz)
    if isinstance(value, str):
        if value.strip().lower() in ("infinity", "-infinity"):
            return value.strip().lower()
        return _fmt_ts(parse_timestamp(value, tz, typename), tz)
    raise PGError(f"cannot cast value to {typename}", "42846")


def to_date(value: object) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return parse_timestamp(value, False, "date").date().isoformat()
    raise PGError("cannot cast value to date", "42846")


def to_time(value: object) -> str:
    if isinstance(value, (datetime, time)):
        t = value.time() if isinstance(value, datetime) else value
        return f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}"
    if isinstance(value, str):
        m = _TIME_RE.match(value)
        if m:
            hh, mi, ss, frac = m.groups()
            return f"{int(hh):02d}:{int(mi):02d}:{int(ss or 0):02d}.{(frac or '0').ljust(6, '0')}"
        if _TS_RE.match(value):
            return to_time(parse_timestamp(value, False, "time without time zone"))
    raise invalid_input("time without time zone", value)


def to_bytea(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        if value.startswith("\\x"):
            try:
                return bytes.fromhex(value[2:])
            except ValueError:
                raise invalid_input("bytea", value) from None
        return _bytea_escape_in(value)
    raise invalid_input("bytea", value)


def _bytea_escape_in(s: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            if s[i + 1 : i + 2] == "\\":
                out.append(0x5C)
                i += 2
                continue
            oct3 = s[i + 1 : i + 4]
            if len(oct3) == 3 and all(c in "01234567" for c in oct3):
                out.append(int(oct3, 8))
                i += 4
                continue
            raise invalid_input("bytea", s)
        out += ch.encode("utf-8")
        i += 1
    return bytes(out)


def to_text_input(value: object, oid: int, typmod: int) -> str:
    if isinstance(value, str):
        s = value
    elif isinstance(value, bool):
        s = "true" if value else "false"
    else:
        s = to_text(value, value_oid(value)) or ""
    if typmod >= 0 and oid in (P.VARCHAR, P.BPCHAR):
        n = typmod - 4
        if len(s) > n:
            if s[n:].strip(" ") == "":
                s = s[:n]
            else:
                tname = "character varying" if oid == P.VARCHAR else "character"
                raise PGError(f"value too long for type {tname}({n})", "22001")
        if oid == P.BPCHAR:
            s = s.ljust(n)
    return s


def to_storage(value: object, oid: int, typmod: int = -1, source_oid: int | None = None) -> object:
    """Python value -> SQLite storage value for a column/expression of PG type `oid` (None stays None)."""
    if value is None:
        return None
    if oid in _INT_RANGE:
        return to_int(value, oid, source_oid)
    if oid == P.BOOL:
        return to_bool(value)
    if oid in (P.TEXT, P.VARCHAR, P.BPCHAR, P.NAME):
        if source_oid is not None and source_oid != oid and not isinstance(value, str):
            return to_text(value, source_oid)
        if source_oid in (P.TIMESTAMPTZ, P.TIMESTAMP, P.TIME, P.BOOL, P.FLOAT8, P.FLOAT4):
            value = to_text(value, source_oid)
        return to_text_input(value, oid, typmod)
    if oid == P.NUMERIC:
        return to_numeric(value, typmod)
    if oid in (P.FLOAT8, P.FLOAT4):
        return to_float(value, oid)
    if oid == P.TIMESTAMPTZ:
        return to_timestamp(value, True)
    if oid == P.TIMESTAMP:
        if isinstance(value, str) and source_oid == P.TIMESTAMPTZ:
            return to_timestamp(parse_timestamp(value, True, "timestamp"), False)
        return to_timestamp(value, False)
    if oid == P.DATE:
        return to_date(value)
    if oid == P.TIME:
        return to_time(value)
    if oid == P.BYTEA:
        return to_bytea(value)
    if oid in (P.JSON, P.JSONB):
        if not isinstance(value, str):
            return json.dumps(value)
        try:
            parsed = json.loads(value)
            if oid == P.JSONB:
                return jsonb_text(parsed)
        except ValueError:
            raise PGError(f"invalid input syntax for type {'json' if oid == P.JSON else 'jsonb'}", "22P02",
                          detail=f'Token "{value}" is invalid.') from None  # fmt: skip
        return value
    if oid == P.UUID:
        try:
            return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value).strip()))
        except ValueError:
            raise invalid_input("uuid", value) from None
    return value


def jsonb_text(v: object) -> str:
    """jsonb's canonical text: `, ` and `: ` separators, object keys sorted by (length, bytes), last wins."""
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {jsonb_text(v[k])}" for k in keys) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(jsonb_text(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)


# -- output -----------------------------------------------------------------------------------
def value_oid(value: object) -> int:
    """Fallback PG type of an untyped SQLite value."""
    if isinstance(value, bool):
        return P.BOOL
    if isinstance(value, int):
        return P.INT8
    if isinstance(value, float):
        return P.FLOAT8
    if isinstance(value, (bytes, bytearray, memoryview)):
        return P.BYTEA
    return P.TEXT


def _strip_frac(s: str) -> str:
    """'… 09:21:37.057490+00' -> '… 09:21:37.05749+00'; '.000000' disappears."""
    dot = s.find(".")
    if dot < 0:
        return s
    end = dot + 1
    while end < len(s) and s[end].isdigit():
        end += 1
    frac = s[dot + 1 : end].rstrip("0")
    return s[:dot] + ("." + frac if frac else "") + s[end:]


def to_text(value: object, oid: int) -> str | None:
    """SQLite result value -> PostgreSQL text output for `oid` (None -> None)."""
    if oid == P.VOID:
        return ""
    if value is None:
        return None
    if oid == P.BOOL:
        if isinstance(value, str):
            b = P.parse_bool(value)
            return value if b is None else ("t" if b else "f")
        return "t" if value else "f"
    if oid in (P.TIMESTAMPTZ, P.TIMESTAMP, P.TIME) and isinstance(value, str):
        return _strip_frac(value)
    if oid == P.NUMERIC:
        if isinstance(value, str):
            return value
        if isinstance(value, int):
            return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        if oid == P.BYTEA or oid not in (P.TEXT, P.VARCHAR):
            return "\\x" + bytes(value).hex()
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, float):
        if oid in (P.INT2, P.INT4, P.INT8) and value.is_integer():
            return str(int(value))
        if oid == P.NUMERIC:
            return to_numeric(value)
        return P.format_float(value, oid == P.FLOAT4)
    if isinstance(value, int):
        if oid in (P.FLOAT8, P.FLOAT4):
            return P.format_float(float(value), oid == P.FLOAT4)
        if oid == P.PG_LSN:
            return P.format_lsn(value)
        return str(value)
    return P.encode_text(value, oid).decode("utf-8")


def encode_row(row: tuple[object, ...] | list[object], oids: list[int]) -> list[bytes | None]:
    """A result row -> DataRow field values (text format)."""
    out: list[bytes | None] = []
    for v, oid in zip(row, oids, strict=False):
        s = to_text(v, oid)
        out.append(None if s is None else s.encode("utf-8"))
    return out


def bind_params(
    params: list[object] | tuple[object, ...], types: list[tuple[int, int] | None]
) -> tuple[object, ...]:
    """Decoded Bind parameters -> SQLite values, cast to the PG type the statement expects where known.

    `types[i]` is (oid, typmod) of what parameter i+1 is assigned to or compared with, or None.
    Untyped parameters: bool -> 0/1, Decimal -> exact string, datetime -> timestamptz storage form,
    date -> 'YYYY-MM-DD', UUID -> str; everything else as is.
    """
    out: list[object] = []
    for i, v in enumerate(params):
        t = types[i] if i < len(types) else None
        if v is None:
            out.append(None)
        elif t is not None:
            out.append(to_storage(v, t[0], t[1]))
        elif isinstance(v, bool):
            out.append(int(v))
        elif isinstance(v, Decimal):
            out.append(to_numeric(v))
        elif isinstance(v, datetime):
            out.append(to_timestamp(v, v.tzinfo is not None))
        elif isinstance(v, date):
            out.append(v.isoformat())
        elif isinstance(v, uuid.UUID):
            out.append(str(v))
        elif isinstance(v, (dict, list)):
            out.append(json.dumps(v))
        else:
            out.append(v)
    return tuple(out)
