"""Run-time settings (GUCs): the settings table and each process's current values.

What it does: `SETTINGS` describes every setting pgbed knows (PostgreSQL 15's name, type,
default, range, unit, context and flags, plus pgbed's own). `GucState` holds one process's
values with PostgreSQL's source priorities (default < configuration file < command line `-c`
< client startup packet < server override < session SET) and implements, after guc.c and
guc-file.l: value parsing with units, SHOW formatting, SET/RESET/SET LOCAL with transactional
rollback, custom placeholders (`foo.bar`) and the reserved `pgbed` prefix, startup processing
and SIGHUP reload with PostgreSQL's log messages, and ParameterStatus bookkeeping.

What it deliberately does not do: I/O beyond reading/writing configuration files, logging
(functions return LogLine records; the caller writes them), permission checks (every pgbed
session is a superuser), savepoint-level GUC nesting (one transaction level only), or the
semantic checks PostgreSQL performs elsewhere (role existence for session_authorization,
synchronous_standby_names grammar, transaction_read_only transitions, SET LOCAL outside a
transaction block: the caller emits PostgreSQL's WARNING and skips the call).

State ownership: `SETTINGS` is immutable after import. A `GucState` belongs to one process.
The postmaster's state is the one that processes SIGHUP; children inherit it at fork (so a
changed backend/superuser-backend setting reaches only sessions started afterwards, as in
PostgreSQL). A child that reloads by itself passes in_postmaster=False, which silences the
per-setting LOG lines (PostgreSQL demotes them to DEBUG2 outside the postmaster) and keeps
backend-context settings unchanged. `GucState.validators` is per instance: the owner registers
extra checks (e.g. injection point actions) before applying configuration.
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple

from node.conffile import ConfigFileError, ConfigItem, parse_config_file

if TYPE_CHECKING:
    from os import PathLike

GucValue = bool | int | float | str

INT_MAX = 2147483647
INT_MIN = -2147483648
MAX_BACKENDS = 0x3FFFF
MAX_KILOBYTES = INT_MAX
PG_VERSION = "15.18"
PG_VERSION_NUM = 150018
AUTO_CONF_FILENAME = "postgresql.auto.conf"
RESERVED_PREFIXES = ("pgbed",)


class GucContext(enum.IntEnum):
    """Who may change a setting, weakest last; the order is PostgreSQL's (comparisons matter)."""

    INTERNAL = 0
    POSTMASTER = 1
    SIGHUP = 2
    SU_BACKEND = 3
    BACKEND = 4
    SUSET = 5
    USERSET = 6

    @property
    def label(self) -> str:
        return _CONTEXT_LABELS[self]


_CONTEXT_LABELS = {
    GucContext.INTERNAL: "internal",
    GucContext.POSTMASTER: "postmaster",
    GucContext.SIGHUP: "sighup",
    GucContext.SU_BACKEND: "superuser-backend",
    GucContext.BACKEND: "backend",
    GucContext.SUSET: "superuser",
    GucContext.USERSET: "user",
}


class GucSource(enum.IntEnum):
    """Where the current value came from; a higher source is never overridden by a lower one."""

    DEFAULT = 0
    FILE = 3
    ARGV = 4
    CLIENT = 9
    OVERRIDE = 10
    SESSION = 13

    @property
    def label(self) -> str:
        return _SOURCE_LABELS[self]


_SOURCE_LABELS = {
    GucSource.DEFAULT: "default",
    GucSource.FILE: "configuration file",
    GucSource.ARGV: "command line",
    GucSource.CLIENT: "client",
    GucSource.OVERRIDE: "override",
    GucSource.SESSION: "session",
}


class GucType(enum.Enum):
    BOOL = "bool"
    INT = "integer"
    REAL = "real"
    STRING = "string"
    ENUM = "enum"


class GucFlag(enum.IntFlag):
    NONE = 0
    REPORT = 1  # sent to the client as ParameterStatus
    NO_SHOW_ALL = 2
    NO_RESET_ALL = 4
    NOT_IN_SAMPLE = 8
    DISALLOW_IN_FILE = 16
    LIST_INPUT = 32
    SUPERUSER_ONLY = 64
    CUSTOM_PLACEHOLDER = 128


class GucError(Exception):
    """An ereport(ERROR) from the GUC machinery; log_lines are LOG lines that preceded it."""

    def __init__(
        self,
        sqlstate: str,
        message: str,
        detail: str | None = None,
        hint: str | None = None,
        *,
        log_lines: list[LogLine] | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.detail = detail
        self.hint = hint
        self.log_lines: list[LogLine] = log_lines if log_lines is not None else []

    def as_log(self, level: str = "LOG") -> LogLine:
        return LogLine(level, self.message, self.sqlstate, self.detail, self.hint)


class LogLine(NamedTuple):
    level: str
    message: str
    sqlstate: str | None
    detail: str | None
    hint: str | None = None


class _CheckFailed(Exception):
    """Raised by a check hook; becomes `invalid value for parameter ...` with this detail."""

    def __init__(self, detail: str | None = None, sqlstate: str = "22023") -> None:
        super().__init__(detail)
        self.detail = detail
        self.sqlstate = sqlstate


# check(new_value, current_value, reset_value) -> canonical value
CheckHook = Callable[[str, GucValue, GucValue], str]


class Setting(NamedTuple):
    name: str
    type: GucType
    default: GucValue  # in base units; enums hold the canonical name
    context: GucContext
    short_desc: str
    group: str = ""
    min: float | None = None
    max: float | None = None
    unit: str | None = None  # base unit: B, kB, MB, 8kB (blocks), ms, s, min
    enum_values: tuple[tuple[str, int, bool], ...] = ()  # (name, value id, hidden)
    flags: GucFlag = GucFlag.NONE
    check: CheckHook | None = None
    octal: bool = False  # shown as %04o (PostgreSQL's show hooks for file modes)


# --------------------------------------------------------------------------------------------
# Units (guc.c's memory_unit_conversion_table / time_unit_conversion_table)
# --------------------------------------------------------------------------------------------

_MEMORY_BYTES = {"B": 1, "kB": 1024, "MB": 1024**2, "8kB": 8192}
_MEMORY_TABLE = (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("kB", 1024), ("B", 1))
_TIME_US = {"ms": 1000, "s": 1000_000, "min": 60_000_000}
_TIME_TABLE = (
    ("d", 86_400_000_000), ("h", 3_600_000_000), ("min", 60_000_000), ("s", 1_000_000),
    ("ms", 1000), ("us", 1),
)
_MAX_UNIT_LEN = 3
MEMORY_UNITS_HINT = 'Valid units for this parameter are "B", "kB", "MB", "GB", and "TB".'
TIME_UNITS_HINT = 'Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".'
_C_SPACE = " \t\n\v\f\r"


def _unit_table(base_unit: str) -> list[tuple[str, float]]:
    if base_unit in _MEMORY_BYTES:
        b = _MEMORY_BYTES[base_unit]
        return [(name, size / b) for name, size in _MEMORY_TABLE]
    b = _TIME_US[base_unit]
    return [(name, size / b) for name, size in _TIME_TABLE]


_UNIT_TABLES: dict[str, list[tuple[str, float]]] = {u: _unit_table(u) for u in (*_MEMORY_BYTES, *_TIME_US)}


def _rint(x: float) -> float:
    return float(round(x)) if math.isfinite(x) else x


def _convert_to_base_unit(value: float, unit: str, base_unit: str) -> float | None:
    i = 0
    while i < len(unit) and unit[i] not in _C_SPACE and i < _MAX_UNIT_LEN:
        i += 1
    unitstr = unit[:i]
    if unit[i:].lstrip(_C_SPACE):
        return None  # unit too long, or garbage after it
    table = _UNIT_TABLES[base_unit]
    for idx, (name, mult) in enumerate(table):
        if name == unitstr:
            cvalue = value * mult
            # a fractional value such as 30.1GB is rounded to the next smaller unit
            if idx + 1 < len(table):
                nm = table[idx + 1][1]
                cvalue = _rint(cvalue / nm) * nm
            return cvalue
    return None


def _convert_int_from_base_unit(value: int, base_unit: str) -> tuple[int, str]:
    for name, mult in _UNIT_TABLES[base_unit]:
        if mult <= 1.0 or value % int(mult) == 0:
            return int(value / mult), name
    return value, ""  # not reached: every table ends with a multiplier <= 1


# --------------------------------------------------------------------------------------------
# Value parsing (parse_bool, parse_int, parse_real)
# --------------------------------------------------------------------------------------------

_STRTOL = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_STRTOD = re.compile(
    r"[ \t\n\v\f\r]*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)",
    re.IGNORECASE,
)


def _strtod(s: str) -> tuple[float, int, bool]:
    """C strtod: (value, characters consumed, ERANGE)."""
    m = _STRTOD.match(s)
    if m is None:
        return 0.0, 0, False
    text = m.group(0).strip(_C_SPACE)
    val = float(text)
    literal_special = text.lstrip("+-")[:1].lower() in ("i", "n")
    erange = math.isinf(val) and not literal_special
    return val, m.end(), erange


def parse_bool(value: str) -> bool | None:
    """parse_bool_with_len: on/off/true/false/yes/no/1/0 and unique prefixes, any case."""
    n = len(value)
    if n == 0:
        return None
    low = value.lower()
    c = low[0]
    if c == "t" and "true".startswith(low):
        return True
    if c == "f" and "false".startswith(low):
        return False
    if c == "y" and "yes".startswith(low):
        return True
    if c == "n" and "no".startswith(low):
        return False
    if c == "o":
        # a lone "o" is ambiguous, so at least two characters are compared
        if n >= 2 and "on".startswith(low):
            return True
        if n >= 2 and "off".startswith(low):
            return False
        return None
    if low == "1":
        return True
    if low == "0":
        return False
    return None


def _parse_int(value: str, unit: str | None) -> tuple[int | None, str | None]:
    """parse_int: (value in base units, None) or (None, hint or None)."""
    m = _STRTOL.match(value)
    val: float
    erange = False
    if m is not None:
        digits = m.group(2)
        if digits[:2] in ("0x", "0X"):
            ival = int(digits, 16)
        elif digits.startswith("0"):
            ival = int(digits, 8) if len(digits) > 1 else 0
        else:
            ival = int(digits)
        if m.group(1) == "-":
            ival = -ival
        end = m.end()
        erange = not (-(2**63) <= ival < 2**63)
        val = float(ival) if not erange else 0.0
        exact: int | None = ival
    else:
        end = 0
        val = 0.0
        exact = None
    if (end < len(value) and value[end] in ".eE") or erange:
        val, end, erange = _strtod(value)
        exact = None
    if end == 0 or erange:
        return None, None
    if math.isnan(val):
        return None, None
    rest = value[end:].lstrip(_C_SPACE)
    if rest:
        if unit is None:
            return None, None
        conv = _convert_to_base_unit(val if exact is None else float(exact), rest, unit)
        if conv is None:
            return None, MEMORY_UNITS_HINT if unit in _MEMORY_BYTES else TIME_UNITS_HINT
        val = conv
        exact = None
    if exact is not None:
        result = exact
    else:
        val = _rint(val)
        if not math.isfinite(val):
            return None, "Value exceeds integer range."
        result = int(val)
    if result > INT_MAX or result < INT_MIN:
        return None, "Value exceeds integer range."
    return result, None


def _parse_real(value: str, unit: str | None) -> tuple[float | None, str | None]:
    val, end, erange = _strtod(value)
    if end == 0 or erange or math.isnan(val):
        return None, None
    rest = value[end:].lstrip(_C_SPACE)
    if rest:
        if unit is None:
            return None, None
        conv = _convert_to_base_unit(val, rest, unit)
        if conv is None:
            return None, MEMORY_UNITS_HINT if unit in _MEMORY_BYTES else TIME_UNITS_HINT
        val = conv
    return val, None


def _fmt_g(v: float) -> str:
    return f"{v:g}"


def format_value(s: Setting, v: GucValue) -> str:
    """_ShowOption: the SHOW form of a value."""
    if s.type is GucType.BOOL:
        return "on" if v else "off"
    if s.type is GucType.INT:
        assert isinstance(v, int)
        if s.octal:
            return f"{v:04o}"
        if s.unit and v > 0:
            n, u = _convert_int_from_base_unit(v, s.unit)
            return f"{n}{u}"
        return str(v)
    if s.type is GucType.REAL:
        assert isinstance(v, float | int)
        return _fmt_g(float(v))
    return str(v)


# --------------------------------------------------------------------------------------------
# Check hooks
# --------------------------------------------------------------------------------------------

_SCANNER_SPACE = " \t\n\r\f"


def split_identifier_string(raw: str, separator: str = ",") -> list[str] | None:
    """SplitIdentifierString: None when the list syntax is invalid; unquoted names downcased."""
    out: list[str] = []
    i = 0
    n = len(raw)
    while i < n and raw[i] in _SCANNER_SPACE:
        i += 1
    if i == n:
        return out
    while True:
        if raw[i] == '"':
            name: list[str] = []
            i += 1
            while True:
                j = raw.find('"', i)
                if j < 0:
                    return None
                name.append(raw[i:j])
                if j + 1 < n and raw[j + 1] == '"':
                    name.append('"')
                    i = j + 2
                    continue
                i = j + 1
                break
            out.append("".join(name))
        else:
            start = i
            while i < n and raw[i] != separator and raw[i] not in _SCANNER_SPACE:
                i += 1
            if i == start:
                return None
            out.append(raw[start:i].lower())
        while i < n and raw[i] in _SCANNER_SPACE:
            i += 1
        if i < n and raw[i] == separator:
            i += 1
            while i < n and raw[i] in _SCANNER_SPACE:
                i += 1
            if i == n:
                return None  # a separator must be followed by a name
            continue
        if i == n:
            return out
        return None


def _split_or_fail(value: str) -> list[str]:
    items = split_identifier_string(value)
    if items is None:
        raise _CheckFailed("List syntax is invalid.")
    return items


def _check_list(value: str, _cur: GucValue, _reset: GucValue) -> str:
    _split_or_fail(value)
    return value


def _check_datestyle(value: str, cur: GucValue, reset: GucValue) -> str:
    style, order = _datestyle_parts(str(cur))
    have_style = have_order = False
    ok = True
    for tok in _split_or_fail(value):
        t = tok.lower()
        if t in ("iso", "sql", "german") or t.startswith("postgres"):
            new = {"iso": "ISO", "sql": "SQL", "german": "German"}.get(t, "Postgres")
            if have_style and style != new:
                ok = False
            style = new
            have_style = True
            if new == "German" and not have_order:
                order = "DMY"
        elif t in ("ymd", "dmy", "mdy", "us") or t.startswith(("euro", "noneuro")):
            if t == "ymd":
                new = "YMD"
            elif t == "dmy" or t.startswith("euro"):
                new = "DMY"
            else:
                new = "MDY"
            if have_order and order != new:
                ok = False
            order = new
            have_order = True
        elif t == "default":
            sub = _check_datestyle(str(reset), cur, reset)
            sub_style, sub_order = _datestyle_parts(sub)
            if not have_style:
                style = sub_style
            if not have_order:
                order = sub_order
        else:
            raise _CheckFailed(f'Unrecognized key word: "{tok}".')
    if not ok:
        raise _CheckFailed('Conflicting "datestyle" specifications.')
    return f"{style}, {order}"


def _datestyle_parts(canonical: str) -> tuple[str, str]:
    style, _, order = canonical.partition(", ")
    return (style or "ISO"), (order or "MDY")


_LOG_DESTINATIONS = ("stderr", "csvlog", "jsonlog", "syslog", "eventlog")


def _check_log_destination(value: str, _cur: GucValue, _reset: GucValue) -> str:
    for tok in _split_or_fail(value):
        if tok.lower() not in _LOG_DESTINATIONS:
            raise _CheckFailed(f'Unrecognized key word: "{tok}".')
    return value


def _check_target_timeline(value: str, _cur: GucValue, _reset: GucValue) -> str:
    if value in ("current", "latest"):
        return value
    try:
        tli = int(value, 0)
    except ValueError:
        tli = 0
    if tli < 1 or tli > 0xFFFFFFFF:
        raise _CheckFailed("recovery_target_timeline is not a valid number.")
    return value


def _check_target_lsn(value: str, _cur: GucValue, _reset: GucValue) -> str:
    if value == "":
        return value
    from node.protocol import parse_lsn

    try:
        parse_lsn(value)
    except ValueError:
        raise _CheckFailed(None) from None
    return value


def _check_sync_names(value: str, _cur: GucValue, _reset: GucValue) -> str:
    from node.syncrep import SyncNamesError, parse_names

    try:
        parse_names(value)
    except SyncNamesError as e:
        raise _CheckFailed(str(e), "42601" if "parser" in str(e) else "22023") from None
    return value


def _check_clean_ascii(value: str, _cur: GucValue, _reset: GucValue) -> str:
    # PostgreSQL 15's pg_clean_ascii works on bytes: every non-printable byte becomes '?'
    if all(" " <= c <= "~" for c in value):
        return value
    return "".join(chr(b) if 32 <= b <= 126 else "?" for b in value.encode("utf-8"))


_UTF8_ALIASES = ("utf8", "utf-8", "unicode")
_OTHER_ENCODINGS = (
    "SQL_ASCII", "LATIN1", "LATIN2", "LATIN9", "WIN1252", "WIN1251", "EUC_JP", "SJIS", "GBK", "BIG5",
    "KOI8R", "ISO_8859_5", "EUC_KR", "EUC_CN",
)


def _check_client_encoding(value: str, _cur: GucValue, _reset: GucValue) -> str:
    low = value.strip().lower()
    if low in _UTF8_ALIASES:
        return "UTF8"
    canon = low.replace("-", "").replace("_", "")
    for enc in _OTHER_ENCODINGS:
        if enc.lower().replace("_", "") == canon:
            # pgbed stores and sends UTF-8 only; PostgreSQL would convert
            raise _CheckFailed(f"Conversion between {enc} and UTF8 is not supported.", "0A000")
    raise _CheckFailed(None)


_TZ_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-/]*")


def _check_timezone(value: str, _cur: GucValue, _reset: GucValue) -> str:
    import zoneinfo  # deferred: only SET TimeZone pays for it

    v = value.strip()
    try:
        num = int(v)
    except ValueError:
        pass
    else:
        if -15 <= num <= 15:
            # a bare number means hours east of UTC; POSIX signs are the other way round
            return f"<{num:+03d}>{-num:+03d}" if num else "<+00>+00"
        raise _CheckFailed(None)
    try:
        zoneinfo.ZoneInfo(v)
        return v
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    try:
        zoneinfo.ZoneInfo("UTC")
    except zoneinfo.ZoneInfoNotFoundError:
        # no tz database on this host: accept what looks like a zone name
        if _TZ_NAME.fullmatch(v):
            return v
        raise _CheckFailed(None) from None
    low = v.lower()
    for key in zoneinfo.available_timezones():
        if key.lower() == low:
            return key
    raise _CheckFailed(None)


def _check_injection_points(value: str, _cur: GucValue, _reset: GucValue) -> str:
    if value.strip() == "":
        return value
    for raw in value.split(","):
        item = raw.strip()
        parts = item.split(":", 2)
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            raise _CheckFailed(f'Invalid injection point specification: "{item}".')
    return value


def _check_name_list(value: str, _cur: GucValue, _reset: GucValue) -> str:
    if value.strip() == "":
        return value
    for raw in value.split(","):
        if not raw.strip():
            raise _CheckFailed("List syntax is invalid.")
    return value


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

_G_FILES = "FILE LOCATIONS"
_G_CONN = "CONNECTIONS AND AUTHENTICATION"
_G_RES = "RESOURCE USAGE (except WAL)"
_G_WAL = "WRITE-AHEAD LOG"
_G_REPL = "REPLICATION"
_G_LOG = "REPORTING AND LOGGING"
_G_CLIENT = "CLIENT CONNECTION DEFAULTS"
_G_COMPAT = "VERSION AND PLATFORM COMPATIBILITY"
_G_ERR = "ERROR HANDLING"
_G_PRESET = "PRESET OPTIONS"
_G_PGBED = "PGBED"
GROUP_ORDER = (_G_FILES, _G_CONN, _G_RES, _G_WAL, _G_REPL, _G_LOG, _G_CLIENT, _G_COMPAT, _G_ERR, _G_PGBED)

_F = GucFlag
_C = GucContext
_B, _I, _R, _S, _E = GucType.BOOL, GucType.INT, GucType.REAL, GucType.STRING, GucType.ENUM

_SERVER_LEVELS = (
    ("debug5", 1, False), ("debug4", 2, False), ("debug3", 3, False), ("debug2", 4, False),
    ("debug1", 5, False), ("debug", 4, True), ("info", 7, False), ("notice", 8, False),
    ("warning", 9, False), ("error", 10, False), ("log", 6, False), ("fatal", 11, False),
    ("panic", 12, False),
)
_CLIENT_LEVELS = (
    ("debug5", 1, False), ("debug4", 2, False), ("debug3", 3, False), ("debug2", 4, False),
    ("debug1", 5, False), ("debug", 4, True), ("log", 6, False), ("info", 7, True),
    ("notice", 8, False), ("warning", 9, False), ("error", 10, False),
)
_INTERVALSTYLES = (
    ("postgres", 0, False), ("postgres_verbose", 1, False), ("sql_standard", 2, False),
    ("iso_8601", 3, False),
)
_WAL_LEVELS = (
    ("minimal", 0, False), ("replica", 1, False), ("archive", 1, True), ("hot_standby", 1, True),
    ("logical", 2, False),
)
_RECOVERY_TARGET_ACTIONS = (("pause", 0, False), ("promote", 1, False), ("shutdown", 2, False))
_SYNC_COMMIT = (
    ("local", 1, False), ("remote_write", 2, False), ("remote_apply", 4, False), ("on", 3, False),
    ("off", 0, False), ("true", 3, True), ("false", 0, True), ("yes", 3, True), ("no", 0, True),
    ("1", 3, True), ("0", 0, True),
)

_PRESET = _F.NOT_IN_SAMPLE | _F.DISALLOW_IN_FILE

_TABLE: tuple[Setting, ...] = (
    # file locations
    Setting("data_directory", _S, "", _C.POSTMASTER, "Sets the server's data directory.", _G_FILES,
            flags=_F.SUPERUSER_ONLY | _F.DISALLOW_IN_FILE),
    Setting("config_file", _S, "", _C.POSTMASTER, "Sets the server's main configuration file.", _G_FILES,
            flags=_F.SUPERUSER_ONLY | _F.DISALLOW_IN_FILE | _F.NOT_IN_SAMPLE),
    Setting("hba_file", _S, "", _C.POSTMASTER, 'Sets the server\'s "hba" configuration file.', _G_FILES,
            flags=_F.SUPERUSER_ONLY),
    # connections
    Setting("listen_addresses", _S, "localhost", _C.POSTMASTER,
            "Sets the host name or IP address(es) to listen to.", _G_CONN, flags=_F.LIST_INPUT),
    Setting("port", _I, 5432, _C.POSTMASTER, "Sets the TCP port the server listens on.", _G_CONN,
            min=1, max=65535),
    Setting("max_connections", _I, 100, _C.POSTMASTER, "Sets the maximum number of concurrent connections.",
            _G_CONN, min=1, max=MAX_BACKENDS),
    Setting("superuser_reserved_connections", _I, 3, _C.POSTMASTER,
            "Sets the number of connection slots reserved for superusers.", _G_CONN, min=0, max=MAX_BACKENDS),
    Setting("unix_socket_directories", _S, "/tmp", _C.POSTMASTER,
            "Sets the directories where Unix-domain sockets will be created.", _G_CONN,
            flags=_F.LIST_INPUT | _F.SUPERUSER_ONLY),
    Setting("unix_socket_permissions", _I, 0o777, _C.POSTMASTER,
            "Sets the access permissions of the Unix-domain socket.", _G_CONN, min=0, max=0o777, octal=True),
    Setting("authentication_timeout", _I, 60, _C.SIGHUP,
            "Sets the maximum allowed time to complete client authentication.", _G_CONN,
            min=1, max=600, unit="s"),
    Setting("password_encryption", _E, "scram-sha-256", _C.USERSET,
            "Chooses the algorithm for encrypting passwords.", _G_CONN,
            enum_values=(("md5", 0, False), ("scram-sha-256", 1, False))),
    # resources
    Setting("shared_buffers", _I, 16384, _C.POSTMASTER,
            "Sets the number of shared memory buffers used by the server.", _G_RES,
            min=16, max=INT_MAX // 2, unit="8kB"),
    Setting("work_mem", _I, 4096, _C.USERSET, "Sets the maximum memory to be used for query workspaces.",
            _G_RES, min=64, max=MAX_KILOBYTES, unit="kB"),
    Setting("maintenance_work_mem", _I, 65536, _C.USERSET,
            "Sets the maximum memory to be used for maintenance operations.", _G_RES,
            min=1024, max=MAX_KILOBYTES, unit="kB"),
    Setting("max_worker_processes", _I, 8, _C.POSTMASTER, "Maximum number of concurrent worker processes.",
            _G_RES, min=0, max=MAX_BACKENDS),
    Setting("max_parallel_workers", _I, 8, _C.USERSET,
            "Sets the maximum number of parallel workers that can be active at one time.", _G_RES,
            min=0, max=1024),
    Setting("shared_preload_libraries", _S, "", _C.POSTMASTER,
            "Lists shared libraries to preload into server.", _G_CLIENT,
            flags=_F.LIST_INPUT | _F.SUPERUSER_ONLY),
    # WAL
    Setting("wal_level", _E, "replica", _C.POSTMASTER, "Sets the level of information written to the WAL.",
            _G_WAL, enum_values=_WAL_LEVELS),
    Setting("fsync", _B, True, _C.SIGHUP, "Forces synchronization of updates to disk.", _G_WAL),
    Setting("synchronous_commit", _E, "on", _C.USERSET,
            "Sets the current transaction's synchronization level.", _G_WAL, enum_values=_SYNC_COMMIT),
    Setting("checkpoint_timeout", _I, 300, _C.SIGHUP,
            "Sets the maximum time between automatic WAL checkpoints.", _G_WAL, min=30, max=86400, unit="s"),
    Setting("checkpoint_completion_target", _R, 0.9, _C.SIGHUP,
            "Time spent flushing dirty buffers during checkpoint, as fraction of checkpoint interval.",
            _G_WAL, min=0.0, max=1.0),
    Setting("max_wal_size", _I, 1024, _C.SIGHUP, "Sets the WAL size that triggers a checkpoint.", _G_WAL,
            min=2, max=MAX_KILOBYTES, unit="MB"),
    Setting("min_wal_size", _I, 80, _C.SIGHUP, "Sets the minimum size to shrink the WAL to.", _G_WAL,
            min=2, max=MAX_KILOBYTES, unit="MB"),
    Setting("wal_keep_size", _I, 0, _C.SIGHUP,
            "Sets the size of WAL files held for standby servers.", _G_WAL,
            min=0, max=MAX_KILOBYTES, unit="MB"),
    Setting("wal_segment_size", _I, 16 * 1024 * 1024, _C.INTERNAL,
            "Shows the size of write ahead log segments.", _G_PRESET, min=1024 * 1024, max=1024**3,
            unit="B", flags=_PRESET),
    # replication
    Setting("max_wal_senders", _I, 10, _C.POSTMASTER,
            "Sets the maximum number of simultaneously running WAL sender processes.", _G_REPL,
            min=0, max=MAX_BACKENDS),
    Setting("max_replication_slots", _I, 10, _C.POSTMASTER,
            "Sets the maximum number of simultaneously defined replication slots.", _G_REPL,
            min=0, max=MAX_BACKENDS),
    Setting("wal_sender_timeout", _I, 60000, _C.USERSET, "Sets the maximum time to wait for WAL replication.",
            _G_REPL, min=0, max=INT_MAX, unit="ms"),
    Setting("synchronous_standby_names", _S, "", _C.SIGHUP,
            "Number of synchronous standbys and list of names of potential synchronous ones.", _G_REPL,
            flags=_F.LIST_INPUT, check=_check_sync_names),
    Setting("primary_conninfo", _S, "", _C.SIGHUP,
            "Sets the connection string to be used to connect to the sending server.", _G_REPL,
            flags=_F.SUPERUSER_ONLY),
    Setting("primary_slot_name", _S, "", _C.SIGHUP,
            "Sets the name of the replication slot to use on the sending server.", _G_REPL),
    Setting("hot_standby", _B, True, _C.POSTMASTER, "Allows connections and queries during recovery.",
            _G_REPL),
    Setting("wal_receiver_status_interval", _I, 10, _C.SIGHUP,
            "Sets the maximum interval between WAL receiver status reports to the sending server.", _G_REPL,
            min=0, max=INT_MAX // 1000, unit="s"),
    Setting("hot_standby_feedback", _B, False, _C.SIGHUP,
            "Allows feedback from a hot standby to the primary that will avoid query conflicts.", _G_REPL),
    Setting("wal_receiver_timeout", _I, 60000, _C.SIGHUP,
            "Sets the maximum wait time to receive data from the sending server.", _G_REPL,
            min=0, max=INT_MAX, unit="ms"),
    Setting("recovery_min_apply_delay", _I, 0, _C.SIGHUP,
            "Sets the minimum delay for applying changes during recovery.", _G_REPL,
            min=0, max=INT_MAX, unit="ms"),
    Setting("recovery_target_timeline", _S, "latest", _C.POSTMASTER,
            "Specifies the timeline to recover into.", _G_REPL, check=_check_target_timeline),
    Setting("recovery_target_lsn", _S, "", _C.POSTMASTER,
            "Sets the LSN of the write-ahead log location up to which recovery will proceed.", _G_REPL,
            check=_check_target_lsn),
    Setting("recovery_target_inclusive", _B, True, _C.POSTMASTER,
            "Sets whether to include or exclude transaction with recovery target.", _G_REPL),
    Setting("recovery_target_action", _E, "pause", _C.POSTMASTER,
            "Sets the action to perform upon reaching the recovery target.", _G_REPL,
            enum_values=_RECOVERY_TARGET_ACTIONS),
    Setting("log_replication_commands", _B, False, _C.SUSET, "Logs each replication command.", _G_LOG),
    Setting("wal_writer_delay", _I, 200, _C.SIGHUP,
            "Time between WAL flushes performed in the WAL writer.", _G_WAL, min=1, max=10000, unit="ms"),
    Setting("wal_retrieve_retry_interval", _I, 5000, _C.SIGHUP,
            "Sets the time to wait before retrying to retrieve WAL after a failed attempt.", _G_REPL,
            min=1, max=INT_MAX, unit="ms"),
    # logging
    Setting("log_destination", _S, "stderr", _C.SIGHUP, "Sets the destination for server log output.", _G_LOG,
            flags=_F.LIST_INPUT, check=_check_log_destination),
    Setting("logging_collector", _B, False, _C.POSTMASTER,
            "Start a subprocess to capture stderr output and/or csvlogs into log files.", _G_LOG),
    Setting("log_directory", _S, "log", _C.SIGHUP, "Sets the destination directory for log files.", _G_LOG,
            flags=_F.SUPERUSER_ONLY),
    Setting("log_min_messages", _E, "warning", _C.SUSET, "Sets the message levels that are logged.", _G_LOG,
            enum_values=_SERVER_LEVELS),
    Setting("application_name", _S, "", _C.USERSET,
            "Sets the application name to be reported in statistics and logs.", _G_LOG,
            flags=_F.REPORT, check=_check_clean_ascii),
    Setting("log_checkpoints", _B, True, _C.SIGHUP, "Logs each checkpoint.", _G_LOG),
    Setting("log_connections", _B, False, _C.SU_BACKEND, "Logs each successful connection.", _G_LOG),
    Setting("log_disconnections", _B, False, _C.SU_BACKEND, "Logs end of a session, including duration.",
            _G_LOG),
    Setting("log_line_prefix", _S, "%m [%p] %b ", _C.SIGHUP,
            "Controls information prefixed to each log line.", _G_LOG),
    Setting("log_timezone", _S, "Etc/UTC", _C.SIGHUP, "Sets the time zone to use in log messages.", _G_LOG,
            check=_check_timezone),
    Setting("cluster_name", _S, "", _C.POSTMASTER,
            "Sets the name of the cluster, which is included in the process title.", _G_LOG,
            check=_check_clean_ascii),
    # client defaults
    Setting("client_min_messages", _E, "notice", _C.USERSET,
            "Sets the message levels that are sent to the client.", _G_CLIENT, enum_values=_CLIENT_LEVELS),
    Setting("search_path", _S, '"$user", public', _C.USERSET,
            "Sets the schema search order for names that are not schema-qualified.", _G_CLIENT,
            flags=_F.LIST_INPUT, check=_check_list),
    Setting("default_transaction_read_only", _B, False, _C.USERSET,
            "Sets the default read-only status of new transactions.", _G_CLIENT, flags=_F.REPORT),
    Setting("transaction_read_only", _B, False, _C.USERSET,
            "Sets the current transaction's read-only status.", _G_CLIENT,
            flags=_F.NO_RESET_ALL | _F.NOT_IN_SAMPLE | _F.DISALLOW_IN_FILE),
    Setting("statement_timeout", _I, 0, _C.USERSET, "Sets the maximum allowed duration of any statement.",
            _G_CLIENT, min=0, max=INT_MAX, unit="ms"),
    Setting("lock_timeout", _I, 0, _C.USERSET, "Sets the maximum allowed duration of any wait for a lock.",
            _G_CLIENT, min=0, max=INT_MAX, unit="ms"),
    Setting("idle_in_transaction_session_timeout", _I, 0, _C.USERSET,
            "Sets the maximum allowed idle time between queries, when in a transaction.", _G_CLIENT,
            min=0, max=INT_MAX, unit="ms"),
    Setting("DateStyle", _S, "ISO, MDY", _C.USERSET, "Sets the display format for date and time values.",
            _G_CLIENT, flags=_F.LIST_INPUT | _F.REPORT, check=_check_datestyle),
    Setting("extra_float_digits", _I, 1, _C.USERSET,
            "Sets the number of digits displayed for floating-point values.", _G_CLIENT, min=-15, max=3),
    Setting("IntervalStyle", _E, "postgres", _C.USERSET, "Sets the display format for interval values.",
            _G_CLIENT, enum_values=_INTERVALSTYLES, flags=_F.REPORT),
    Setting("TimeZone", _S, "Etc/UTC", _C.USERSET,
            "Sets the time zone for displaying and interpreting time stamps.", _G_CLIENT,
            flags=_F.REPORT, check=_check_timezone),
    Setting("client_encoding", _S, "UTF8", _C.USERSET, "Sets the client's character set encoding.", _G_CLIENT,
            flags=_F.REPORT, check=_check_client_encoding),
    Setting("session_authorization", _S, "", _C.SUSET, "Sets the session user name.", _G_CLIENT,
            flags=_F.REPORT | _F.NO_SHOW_ALL | _F.NO_RESET_ALL | _PRESET),
    Setting("standard_conforming_strings", _B, True, _C.USERSET,
            "Causes '...' strings to treat backslashes literally.", _G_COMPAT, flags=_F.REPORT),
    # error handling
    Setting("restart_after_crash", _B, True, _C.SIGHUP, "Reinitialize server after backend crash.", _G_ERR),
    Setting("remove_temp_files_after_crash", _B, True, _C.SIGHUP,
            "Remove temporary files after backend crash.", _G_ERR, flags=_F.NOT_IN_SAMPLE),
    Setting("send_abort_for_crash", _B, False, _C.SIGHUP,
            "Send SIGABRT not SIGQUIT to child processes after backend crash.", _G_ERR,
            flags=_F.NOT_IN_SAMPLE),
    Setting("send_abort_for_kill", _B, False, _C.SIGHUP, "Send SIGABRT not SIGKILL to stuck child processes.",
            _G_ERR, flags=_F.NOT_IN_SAMPLE),
    # preset (internal)
    Setting("server_encoding", _S, "UTF8", _C.INTERNAL, "Shows the server (database) character set encoding.",
            _G_PRESET, flags=_F.REPORT | _PRESET),
    Setting("server_version", _S, PG_VERSION, _C.INTERNAL, "Shows the server version.", _G_PRESET,
            flags=_F.REPORT | _PRESET),
    Setting("server_version_num", _I, PG_VERSION_NUM, _C.INTERNAL, "Shows the server version as an integer.",
            _G_PRESET, min=PG_VERSION_NUM, max=PG_VERSION_NUM, flags=_PRESET),
    Setting("integer_datetimes", _B, True, _C.INTERNAL, "Shows whether datetimes are integer based.",
            _G_PRESET, flags=_F.REPORT | _PRESET),
    Setting("in_hot_standby", _B, False, _C.INTERNAL, "Shows whether hot standby is currently active.",
            _G_PRESET, flags=_F.REPORT | _PRESET),
    Setting("is_superuser", _B, True, _C.INTERNAL, "Shows whether the current user is a superuser.",
            _G_PRESET, flags=_F.REPORT | _F.NO_SHOW_ALL | _F.NO_RESET_ALL | _PRESET),
    Setting("data_directory_mode", _I, 0o700, _C.INTERNAL, "Shows the mode of the data directory.", _G_PRESET,
            min=0, max=0o777, flags=_PRESET, octal=True),
    # pgbed's own
    Setting("injection_points", _S, "", _C.SIGHUP,
            "Arms fault injection points (name:action[:arg],...).", _G_PGBED,
            flags=_F.LIST_INPUT | _F.SUPERUSER_ONLY, check=_check_injection_points),
    Setting("pgbed.historic_bugs", _S, "", _C.SIGHUP,
            "Re-enables the listed historic PostgreSQL bugs (comma-separated).", _G_PGBED,
            flags=_F.LIST_INPUT | _F.SUPERUSER_ONLY, check=_check_name_list),
    Setting("pgbed.metrics_port", _I, 9187, _C.POSTMASTER,
            "Sets the TCP port of the Prometheus metrics exporter (0 disables it).", _G_PGBED,
            min=0, max=65535),
)

SETTINGS: dict[str, Setting] = {s.name: s for s in _TABLE}
_BY_LOWER: dict[str, Setting] = {s.name.lower(): s for s in _TABLE}

REPORTED_ORDER = (
    "application_name", "client_encoding", "DateStyle", "default_transaction_read_only", "in_hot_standby",
    "integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding", "server_version",
    "session_authorization", "standard_conforming_strings", "TimeZone",
)


def lookup(name: str) -> Setting | None:
    """Case-insensitive lookup in the static table (placeholders are per GucState)."""
    return _BY_LOWER.get(name.lower())


def valid_custom_variable_name(name: str) -> bool:
    """Two or more identifiers separated by dots (guc.c's valid_custom_variable_name)."""
    saw_sep = False
    name_start = True
    for c in name:
        if c == ".":
            if name_start:
                return False
            saw_sep = True
            name_start = True
        elif not c.isascii() or c.isalnum() or c == "_":
            if name_start and "0" <= c <= "9":
                return False
            name_start = False
        else:
            return False
    return saw_sep and not name_start


def _check_custom_name(name: str) -> None:
    """find_option's rules for creating a placeholder; raises 42602 like PostgreSQL."""
    if not valid_custom_variable_name(name):
        raise GucError(
            "42602", f'invalid configuration parameter name "{name}"',
            "Custom parameter names must be two or more simple identifiers separated by dots.",
        )
    prefix = name.split(".", 1)[0]
    if prefix in RESERVED_PREFIXES:
        raise GucError(
            "42602", f'invalid configuration parameter name "{name}"', f'"{prefix}" is a reserved prefix.'
        )


def _placeholder(name: str) -> Setting:
    return Setting(
        name, _S, "", _C.USERSET, "", "",
        flags=_F.CUSTOM_PLACEHOLDER | _F.NO_SHOW_ALL | _F.NOT_IN_SAMPLE,
    )


def _enum_hint(s: Setting) -> str:
    return "Available values: " + ", ".join(n for n, _, hidden in s.enum_values if not hidden) + "."


def _enum_lookup(s: Setting, value: str) -> str | None:
    low = value.lower()
    for name, vid, _hidden in s.enum_values:
        if name.lower() == low:
            # the shown name is the first entry with the same value (config_enum_lookup_by_value)
            for cname, cvid, _h in s.enum_values:
                if cvid == vid:
                    return cname
    return None


# --------------------------------------------------------------------------------------------
# Per-process state
# --------------------------------------------------------------------------------------------

_SET, _LOCAL, _SET_LOCAL = "set", "local", "set_local"


class _TxEntry:
    """The value to restore at transaction end (guc.c's GucStack, one nesting level)."""

    __slots__ = ("masked", "masked_source", "prior", "prior_source", "state")

    def __init__(self, state: str, prior: GucValue, prior_source: GucSource) -> None:
        self.state = state
        self.prior = prior
        self.prior_source = prior_source
        self.masked: GucValue | None = None
        self.masked_source = GucSource.DEFAULT


class _Slot:
    __slots__ = ("in_file", "reset_source", "reset_val", "setting", "source", "sourcefile", "sourceline",
                 "stack", "value")

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.value: GucValue = setting.default
        self.source = GucSource.DEFAULT
        self.reset_val: GucValue = setting.default
        self.reset_source = GucSource.DEFAULT
        self.stack: _TxEntry | None = None
        self.in_file = False
        self.sourcefile: str | None = None
        self.sourceline = 0


def _err_cant_change(fmt: str, name: str) -> GucError:
    return GucError("55P02", fmt % name)


class GucState:
    """One process's settings; see the module docstring for who owns what."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {s.name.lower(): _Slot(s) for s in _TABLE}
        self._in_xact = False
        self._touched: list[_Slot] = []
        self._last_reported: dict[str, str] | None = None
        self.validators: dict[str, Callable[[str], str | None]] = {}

    # ---- lookup -----------------------------------------------------------------------------

    def _find(self, name: str, create: bool) -> _Slot:
        slot = self._slots.get(name.lower())
        if slot is not None:
            return slot
        if create and "." in name:
            _check_custom_name(name)
            slot = _Slot(_placeholder(name))
            self._slots[name.lower()] = slot
            return slot
        raise GucError("42704", f'unrecognized configuration parameter "{name}"')

    def define_custom(self, setting: Setting) -> str | None:
        """DefineCustom*Variable: a loaded module defines its setting. A placeholder's value (from
        the configuration file, -c or SET) is re-applied under the real definition; an invalid
        one is dropped for the default and the returned message says so (WARNING in PostgreSQL)."""
        key = setting.name.lower()
        old = self._slots.get(key)
        if old is not None and not old.setting.flags & GucFlag.CUSTOM_PLACEHOLDER:
            return None  # already defined (a second load of the module)
        slot = _Slot(setting)
        self._slots[key] = slot
        if old is None or old.source == GucSource.DEFAULT:
            return None
        try:
            value = self._parse(slot, setting.name, str(old.value))
        except GucError as e:
            return e.message
        slot.value = slot.reset_val = value
        slot.source = slot.reset_source = old.source
        slot.sourcefile, slot.sourceline, slot.in_file = old.sourcefile, old.sourceline, old.in_file
        return None

    def setting(self, name: str) -> Setting:
        """The definition of a setting (placeholders included); 42704 if unknown."""
        return self._find(name, False).setting

    def get(self, name: str) -> GucValue:
        """The current value, typed, in base units (enums as their canonical name)."""
        return self._find(name, False).value

    def show(self, name: str) -> str:
        """The value as SHOW displays it."""
        slot = self._find(name, False)
        return format_value(slot.setting, slot.value)

    def source(self, name: str) -> GucSource:
        return self._find(name, False).source

    def reset_value(self, name: str) -> GucValue:
        return self._find(name, False).reset_val

    def show_all(self) -> list[tuple[str, str, str]]:
        """(name, setting, description) as SHOW ALL lists them, sorted case-insensitively."""
        rows = [
            (slot.setting.name, format_value(slot.setting, slot.value), slot.setting.short_desc)
            for slot in self._slots.values()
            if not slot.setting.flags & GucFlag.NO_SHOW_ALL
        ]
        rows.sort(key=lambda r: r[0].lower())
        return rows

    # ---- parsing ----------------------------------------------------------------------------

    def _parse(self, slot: _Slot, name: str, value: str) -> GucValue:
        """parse_and_validate_value plus check hooks; `name` is the spelling the caller used."""
        s = slot.setting
        result: GucValue
        if s.type is GucType.BOOL:
            b = parse_bool(value)
            if b is None:
                raise GucError("22023", f'parameter "{name}" requires a Boolean value')
            result = b
        elif s.type is GucType.INT:
            iv, hint = _parse_int(value, s.unit)
            if iv is None:
                raise GucError("22023", f'invalid value for parameter "{name}": "{value}"', hint=hint)
            assert s.min is not None and s.max is not None
            if iv < s.min or iv > s.max:
                unit = f" {s.unit}" if s.unit else ""
                raise GucError(
                    "22023",
                    f'{iv}{unit} is outside the valid range for parameter "{name}" '
                    f"({int(s.min)} .. {int(s.max)})",
                )
            result = iv
        elif s.type is GucType.REAL:
            rv, hint = _parse_real(value, s.unit)
            if rv is None:
                raise GucError("22023", f'invalid value for parameter "{name}": "{value}"', hint=hint)
            assert s.min is not None and s.max is not None
            if rv < s.min or rv > s.max:
                unit = f" {s.unit}" if s.unit else ""
                raise GucError(
                    "22023",
                    f'{_fmt_g(rv)}{unit} is outside the valid range for parameter "{name}" '
                    f"({_fmt_g(s.min)} .. {_fmt_g(s.max)})",
                )
            result = rv
        elif s.type is GucType.ENUM:
            ev = _enum_lookup(s, value)
            if ev is None:
                raise GucError(
                    "22023", f'invalid value for parameter "{name}": "{value}"', hint=_enum_hint(s)
                )
            result = ev
        else:
            result = value
        if s.check is not None:
            try:
                result = s.check(value, slot.value, slot.reset_val)
            except _CheckFailed as e:
                # check-hook failures name the setting canonically, as call_*_check_hook does
                raise GucError(
                    e.sqlstate, f'invalid value for parameter "{s.name}": "{value}"', e.detail
                ) from None
        validator = self.validators.get(s.name) or self.validators.get(s.name.lower())
        if validator is not None:
            detail = validator(result if isinstance(result, str) else value)
            if detail is not None:
                raise GucError("22023", f'invalid value for parameter "{s.name}": "{value}"', detail)
        return result

    def check_value(self, name: str, value: str) -> GucValue:
        """Validate without changing anything (for ALTER SYSTEM-style callers)."""
        slot = self._slots.get(name.lower())
        if slot is None:
            if "." not in name:
                raise GucError("42704", f'unrecognized configuration parameter "{name}"')
            _check_custom_name(name)
            return value  # a placeholder takes any string
        return self._parse(slot, name, value)

    # ---- set_config_option --------------------------------------------------------------------

    def _set_option(
        self,
        name: str,
        value: str | None,
        context: GucContext,
        source: GucSource,
        action: str = _SET,
        *,
        in_postmaster: bool = True,
    ) -> int:
        """guc.c's set_config_option: 1 = applied, -1 = accepted but not applied; raises GucError."""
        slot = self._find(name, True)
        s = slot.setting
        prohibit_change = False
        rc = s.context
        if rc is GucContext.INTERNAL:
            if context is not GucContext.INTERNAL:
                raise _err_cant_change('parameter "%s" cannot be changed', name)
        elif rc is GucContext.POSTMASTER:
            if context is GucContext.SIGHUP:
                # compared after parsing: "5432" and "0x1538" are the same port
                prohibit_change = True
            elif context not in (GucContext.POSTMASTER, GucContext.INTERNAL):
                raise _err_cant_change('parameter "%s" cannot be changed without restarting the server', name)
        elif rc is GucContext.SIGHUP:
            if context not in (GucContext.SIGHUP, GucContext.POSTMASTER, GucContext.INTERNAL):
                raise _err_cant_change('parameter "%s" cannot be changed now', name)
        elif rc in (GucContext.SU_BACKEND, GucContext.BACKEND):
            if context is GucContext.SIGHUP:
                if not in_postmaster:
                    return -1
            elif (
                context not in (GucContext.POSTMASTER, GucContext.BACKEND, GucContext.SU_BACKEND,
                                GucContext.INTERNAL)
                and source is not GucSource.CLIENT
            ):
                raise _err_cant_change('parameter "%s" cannot be set after connection start', name)

        change_val = True
        make_default = source <= GucSource.OVERRIDE and (value is not None or source is GucSource.DEFAULT)
        if slot.source > source:
            if not make_default:
                return -1
            change_val = False

        if value is not None:
            newval = self._parse(slot, name, value)
        elif source is GucSource.DEFAULT:
            newval = s.default
        else:
            newval = slot.reset_val
            source = slot.reset_source

        if prohibit_change:
            if slot.value != newval:
                raise _err_cant_change('parameter "%s" cannot be changed without restarting the server', name)
            return -1

        if change_val:
            self._push_old_value(slot, action)
            slot.value = newval
            slot.source = source
        if make_default:
            if slot.reset_source <= source:
                slot.reset_val = newval
                slot.reset_source = source
            e = slot.stack
            if e is not None:
                if e.prior_source <= source:
                    e.prior = newval
                    e.prior_source = source
        return 1 if change_val else -1

    def _push_old_value(self, slot: _Slot, action: str) -> None:
        if not self._in_xact:
            return
        e = slot.stack
        if e is not None:
            if action == _SET:
                e.state = _SET
                e.masked = None
            elif e.state == _SET:
                # SET followed by SET LOCAL: the SET value comes back at commit
                e.masked = slot.value
                e.masked_source = slot.source
                e.state = _SET_LOCAL
            return
        slot.stack = _TxEntry(_LOCAL if action == _LOCAL else _SET, slot.value, slot.source)
        self._touched.append(slot)

    # ---- SQL-level API ------------------------------------------------------------------------

    def set(self, name: str, value: str | None, *, local: bool = False) -> None:
        """SET [LOCAL] name = value; value None means DEFAULT (same as RESET).

        SET LOCAL outside a transaction has no effect; PostgreSQL's WARNING ("SET LOCAL can
        only be used in transaction blocks") is the caller's to send.
        """
        if local and not self._in_xact:
            return
        self._set_option(name, value, GucContext.SUSET, GucSource.SESSION, _LOCAL if local else _SET)

    def reset(self, name: str) -> None:
        self.set(name, None)

    def reset_all(self) -> None:
        """RESET ALL: user/superuser settings without NO_RESET_ALL that were set above OVERRIDE."""
        for slot in self._slots.values():
            s = slot.setting
            if s.context not in (GucContext.SUSET, GucContext.USERSET):
                continue
            if s.flags & GucFlag.NO_RESET_ALL or slot.source <= GucSource.OVERRIDE:
                continue
            self._push_old_value(slot, _SET)
            slot.value = slot.reset_val
            slot.source = slot.reset_source

    def set_startup_option(self, name: str, value: str) -> None:
        """A setting from the startup packet (options=-c..., application_name, ...).

        Source CLIENT: it becomes the session's reset value, and backend-context settings may
        be set this way (and only this way) after the postmaster.
        """
        self._set_option(name, value, GucContext.SU_BACKEND, GucSource.CLIENT)

    def set_internal(self, name: str, value: str) -> None:
        """The server's own update of a setting (in_hot_standby, data_directory, ...)."""
        self._set_option(name, value, GucContext.INTERNAL, GucSource.OVERRIDE)

    def begin_transaction(self) -> None:
        self._in_xact = True

    def end_transaction(self, commit: bool) -> None:
        """AtEOXact_GUC for the top level: rollback restores, SET LOCAL always reverts."""
        for slot in self._touched:
            e = slot.stack
            if e is None:
                continue
            if not commit or e.state == _LOCAL:
                slot.value, slot.source = e.prior, e.prior_source
            elif e.state == _SET_LOCAL:
                assert e.masked is not None
                slot.value, slot.source = e.masked, e.masked_source
            slot.stack = None
        self._touched = []
        self._in_xact = False

    @property
    def in_transaction(self) -> bool:
        return self._in_xact

    # ---- ParameterStatus ----------------------------------------------------------------------

    def _reported_now(self) -> dict[str, str]:
        return {n: self.show(n) for n in REPORTED_ORDER}

    def reported(self) -> dict[str, str]:
        """All GUC_REPORT settings in the order PostgreSQL sends them at connection start."""
        now = self._reported_now()
        self._last_reported = dict(now)
        return now

    def take_report_changes(self) -> dict[str, str]:
        """Reported settings whose shown value changed since the last reported()/take call."""
        now = self._reported_now()
        last = self._last_reported or {}
        changed = {k: v for k, v in now.items() if last.get(k) != v}
        self._last_reported = now
        return changed

    # ---- configuration files ------------------------------------------------------------------

    def _process_config(
        self, items: list[ConfigItem], conf_path: str, context: GucContext, in_postmaster: bool
    ) -> tuple[list[LogLine], bool, bool, str]:
        """ProcessConfigFileInternal: (log lines, error, applying started, file with error)."""
        level = "LOG" if in_postmaster else "DEBUG2"
        lines: list[LogLine] = []
        error = False
        conf_with_error = conf_path

        for slot in self._slots.values():
            slot.in_file = False
        last_for: dict[str, int] = {}
        for i, it in enumerate(items):
            found = self._slots.get(it.name.lower())
            if found is not None:
                last_for[it.name.lower()] = i
                found.in_file = True
            elif not valid_custom_variable_name(it.name):
                lines.append(LogLine(
                    level,
                    f'unrecognized configuration parameter "{it.name}" '
                    f'in file "{it.filename}" line {it.lineno}',
                    "42704", None,
                ))
                error = True
                conf_with_error = it.filename
        if error:
            return lines, True, False, conf_with_error

        for slot in list(self._slots.values()):
            if slot.reset_source is not GucSource.FILE or slot.in_file:
                continue
            s = slot.setting
            if s.context < GucContext.SIGHUP:
                lines.append(LogLine(
                    level, f'parameter "{s.name}" cannot be changed without restarting the server',
                    "55P02", None,
                ))
                error = True
                continue
            slot.reset_source = GucSource.DEFAULT
            if slot.source is GucSource.FILE:
                slot.source = GucSource.DEFAULT
            if slot.stack is not None:
                if slot.stack.prior_source is GucSource.FILE:
                    slot.stack.prior_source = GucSource.DEFAULT
                if slot.stack.masked_source is GucSource.FILE:
                    slot.stack.masked_source = GucSource.DEFAULT
            slot.sourcefile, slot.sourceline = None, 0
            res = self._set_option(s.name, None, context, GucSource.DEFAULT, in_postmaster=in_postmaster)
            if res > 0 and context is GucContext.SIGHUP:
                lines.append(LogLine(
                    level, f'parameter "{s.name}" removed from configuration file, reset to default',
                    None, None,
                ))

        report = context is GucContext.SIGHUP and in_postmaster
        for i, it in enumerate(items):
            key = it.name.lower()
            if key in last_for and last_for[key] != i:
                continue  # a later line sets it again
            pre = self._raw(key) if report else None
            try:
                res = self._set_option(
                    it.name, it.value, context, GucSource.FILE, in_postmaster=in_postmaster
                )
            except GucError as e:
                lines.append(e.as_log(level))
                error = True
                conf_with_error = it.filename
                continue
            if res > 0 and pre is not None and pre != self._raw(key):
                lines.append(LogLine(level, f'parameter "{it.name}" changed to "{it.value}"', None, None))
            slot = self._slots[key]
            slot.sourcefile, slot.sourceline = it.filename, it.lineno
        return lines, error, True, conf_with_error

    def _raw(self, key: str) -> GucValue:
        slot = self._slots.get(key)
        return "" if slot is None else slot.value

    def apply_startup(
        self, items: list[ConfigItem], argv: Iterable[tuple[str, str]], conf_path: str | None = None
    ) -> list[LogLine]:
        """Postmaster start: `-c` values (source ARGV, they win over the file), then the file.

        A bad `-c` raises its own GucError (PostgreSQL reports it as FATAL at once). Problems
        in the file are LOG lines; if there were any, GucError `configuration file "%s"
        contains errors` is raised carrying them in `log_lines`. Returns the LOG lines of a
        successful start (normally none).
        """
        for name, value in argv:
            self._set_option(name, value, GucContext.POSTMASTER, GucSource.ARGV)
        path = conf_path if conf_path is not None else (items[0].filename if items else "")
        lines, error, _applying, with_error = self._process_config(items, path, GucContext.POSTMASTER, True)
        if error:
            raise GucError("F0000", f'configuration file "{with_error}" contains errors', log_lines=lines)
        return lines

    def startup_from_file(
        self, conf_path: str | PathLike[str], argv: Iterable[tuple[str, str]]
    ) -> list[LogLine]:
        """apply_startup after reading conf_path and the postgresql.auto.conf beside it."""
        path = os.path.abspath(os.fspath(conf_path))
        lines: list[LogLine] = []
        try:
            items = read_config_files(path, lines)
        except _FilesError as e:
            raise GucError(
                "F0000", f'configuration file "{e.with_error}" contains errors', log_lines=e.lines
            ) from None
        lines.extend(self.apply_startup(items, argv, path))
        return lines

    def reload(self, items: list[ConfigItem], conf_path: str, *, in_postmaster: bool = True) -> list[LogLine]:
        """SIGHUP with already-parsed items; returns the LOG lines PostgreSQL would write."""
        lines, error, applying, with_error = self._process_config(items, conf_path, GucContext.SIGHUP,
                                                                   in_postmaster)
        if error:
            level = "LOG" if in_postmaster else "DEBUG2"
            tail = "unaffected changes were applied" if applying else "no changes were applied"
            lines.append(
                LogLine(level, f'configuration file "{with_error}" contains errors; {tail}', "F0000", None)
            )
        return lines

    def reload_from_file(
        self, conf_path: str | PathLike[str], *, in_postmaster: bool = True
    ) -> list[LogLine]:
        """The whole SIGHUP: parse conf_path and postgresql.auto.conf beside it, then reload."""
        path = os.path.abspath(os.fspath(conf_path))
        level = "LOG" if in_postmaster else "DEBUG2"
        lines: list[LogLine] = []
        try:
            items = read_config_files(path, lines, level)
        except _FilesError as e:
            e.lines.append(LogLine(
                level, f'configuration file "{e.with_error}" contains errors; no changes were applied',
                "F0000", None,
            ))
            return e.lines
        lines.extend(self.reload(items, path, in_postmaster=in_postmaster))
        return lines


class _FilesError(Exception):
    def __init__(self, lines: list[LogLine], with_error: str) -> None:
        super().__init__(with_error)
        self.lines = lines
        self.with_error = with_error


def read_config_files(conf_path: str, lines: list[LogLine], level: str = "LOG") -> list[ConfigItem]:
    """Parse the main file then postgresql.auto.conf from the same directory (ALTER SYSTEM wins).

    Notices and problems are appended to `lines`; on a problem _FilesError names the file
    PostgreSQL blames (the main file, or literally "postgresql.auto.conf").
    """
    notices: list[str] = []
    try:
        items = parse_config_file(conf_path, notices=notices)
    except ConfigFileError as e:
        lines.extend(LogLine(level, p.message, p.sqlstate, None) for p in e.problems)
        raise _FilesError(lines, conf_path) from None
    finally:
        lines.extend(LogLine("LOG", n, None, None) for n in notices)
        notices.clear()
    auto = os.path.join(os.path.dirname(conf_path), AUTO_CONF_FILENAME)
    try:
        items.extend(parse_config_file(auto, strict=False, notices=notices))
    except ConfigFileError as e:
        lines.extend(LogLine(level, p.message, p.sqlstate, None) for p in e.problems)
        raise _FilesError(lines, AUTO_CONF_FILENAME) from None
    finally:
        lines.extend(LogLine("LOG", n, None, None) for n in notices)
    return items


# --------------------------------------------------------------------------------------------
# initdb's postgresql.conf
# --------------------------------------------------------------------------------------------


def quote_conf_value(value: str) -> str:
    """A single-quoted configuration-file string that the lexer reads back unchanged."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''").replace("\n", "\\n") + "'"


def _sample_value(s: Setting) -> str:
    if s.type is GucType.STRING:
        return quote_conf_value(str(s.default))
    return format_value(s, s.default)


def _conf_line(text: str, comment: str) -> str:
    if not comment:
        return text
    width = len(text.expandtabs())
    tabs = max(1, (40 - width + 7) // 8) if width < 40 else 1
    return text + "\t" * tabs + "# " + comment


_CONF_HEADER = """\
# -----------------------------
# PostgreSQL configuration file
# -----------------------------
#
# This file consists of lines of the form:
#
#   name = value
#
# (The "=" is optional.)  Whitespace may be used.  Comments are introduced with
# "#" anywhere on a line.  The complete list of parameter names and allowed
# values can be found in the PostgreSQL documentation.
#
# The commented-out settings shown in this file represent the default values.
# Re-commenting a setting is NOT sufficient to revert it to the default value;
# you need to reload the server.
#
# This file is read on server startup and when the server receives a SIGHUP
# signal.  If you edit the file on a running system, you have to SIGHUP the
# server for the changes to take effect, run "pg_ctl reload", or execute
# "SELECT pg_reload_conf()".  Some parameters, which are marked below,
# require a server shutdown and restart to take effect.
#
# Memory units:  B  = bytes            Time units:  us  = microseconds
#                kB = kilobytes                     ms  = milliseconds
#                MB = megabytes                     s   = seconds
#                GB = gigabytes                     min = minutes
#                TB = terabytes                     h   = hours
#                                                   d   = days
"""


def write_default_conf(path: str | PathLike[str], overrides: dict[str, str] | None = None) -> None:
    """Write initdb's postgresql.conf: every sample setting commented out at its default.

    Overrides replace their setting's line uncommented (quoted, so any type reads back);
    overrides for custom dotted names go to a final section. Invalid overrides raise GucError.
    """
    overrides = dict(overrides or {})
    probe = GucState()
    by_key: dict[str, tuple[str, str]] = {}
    for name, value in overrides.items():
        s = lookup(name)
        if s is None and "." not in name:
            raise GucError("42704", f'unrecognized configuration parameter "{name}"')
        if s is not None and s.context is GucContext.INTERNAL:
            raise GucError("55P02", f'parameter "{name}" cannot be changed')
        probe.check_value(name, value)
        by_key[name.lower()] = (name, value)

    out = [_CONF_HEADER]
    for group in GROUP_ORDER:
        members = [
            s for s in _TABLE
            if s.group == group and s.context is not GucContext.INTERNAL
            and not s.flags & GucFlag.NOT_IN_SAMPLE
        ]
        if not members:
            continue
        out.append("\n\n#" + "-" * 78 + f"\n# {group}\n#" + "-" * 78 + "\n\n")
        for s in members:
            restart = "(change requires restart)" if s.context is GucContext.POSTMASTER else ""
            ov = by_key.pop(s.name.lower(), None)
            if ov is not None:
                line = f"{s.name.lower()} = {quote_conf_value(ov[1])}"
            else:
                line = f"#{s.name.lower()} = {_sample_value(s)}"
            out.append(_conf_line(line, restart) + "\n")
    if by_key:
        out.append("\n\n#" + "-" * 78 + "\n# CUSTOMIZED OPTIONS\n#" + "-" * 78 + "\n\n")
        for name, value in by_key.values():
            out.append(f"{name} = {quote_conf_value(value)}\n")
    with open(os.fspath(path), "w", encoding="utf-8") as f:
        f.write("".join(out))
