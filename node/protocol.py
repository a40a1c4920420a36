"""PostgreSQL frontend/backend protocol 3.0 codec, server side, sans-I/O.

What it does: parses the startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest)
with PostgreSQL 15's checks and error texts, frames post-startup messages incrementally, decodes the
frontend messages a server must understand (Query, Parse, Bind, Describe, Execute, Close, CopyData,
password/SASL), encodes every backend message pgbed sends, converts bind parameters from PG's
binary formats to Python values, renders result values in PG's text (and a few binary) output forms,
and provides LSN and PG-epoch time helpers.

What it deliberately does not do: touch sockets, decide protocol flow (which
message is legal when, error recovery until Sync), authenticate (no hashing/SCRAM here), cast text
parameters (the SQL layer does that), or speak protocol 3.2 (we always negotiate down to 3.0, so
secret keys stay 4 bytes).

Every message builder returns complete wire bytes (type byte + length + body). Errors are raised as
``ProtocolViolation`` carrying the SQLSTATE and PostgreSQL's message text so the caller can turn them
into an ErrorResponse unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

# --------------------------------------------------------------------------------------------------
# Constants

PROTOCOL_3_0 = 196608  # (3 << 16) | 0
SSL_REQUEST_CODE = 80877103  # (1234 << 16) | 5679
GSSENC_REQUEST_CODE = 80877104  # (1234 << 16) | 5680
CANCEL_REQUEST_CODE = 80877102  # (1234 << 16) | 5678
MAX_STARTUP_PACKET_LENGTH = 10000  # PG's limit on the startup packet body (after the length word)
# PG's PQ_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1); applied to the length word, which counts itself.
MAX_MESSAGE_LENGTH = 0x3FFFFFFE
# PG_MAX_AUTH_TOKEN_LENGTH: callers reading a password/SASL message may lower MessageReader.max_length.
MAX_AUTH_TOKEN_LENGTH = 65535
# The only version we ever speak; NegotiateProtocolVersion advertises it.
PROTOCOL_LATEST = PROTOCOL_3_0

SSL_NOT_SUPPORTED = b"N"  # reply to SSLRequest / GSSENCRequest

# Frontend message types legal after startup (PG answers anything else with 08P01).
FRONTEND_MESSAGE_TYPES = frozenset(b"BCDEFHPQSXcdfp")

# Type OIDs.
BOOL = 16
BYTEA = 17
CHAR = 18
NAME = 19
INT8 = 20
INT2 = 21
INT4 = 23
TEXT = 25
OID = 26
JSON = 114
INET = 869
FLOAT4 = 700
FLOAT8 = 701
UNKNOWN = 705
INT2_ARRAY = 1005
INT4_ARRAY = 1007
TEXT_ARRAY = 1009
BPCHAR = 1042
VARCHAR = 1043
DATE = 1082
TIME = 1083
TIMESTAMP = 1114
TIMESTAMPTZ = 1184
INTERVAL = 1186
NUMERIC = 1700
REGCLASS = 2205
VOID = 2278
UUID = 2950
PG_LSN = 3220
JSONB = 3802

TYPE_LEN: dict[int, int] = {
    BOOL: 1, BYTEA: -1, CHAR: 1, NAME: 64, INT8: 8, INT2: 2, INT4: 4, TEXT: -1, OID: 4, JSON: -1,
    INET: -1, FLOAT4: 4, FLOAT8: 8, UNKNOWN: -2, INT2_ARRAY: -1, INT4_ARRAY: -1, TEXT_ARRAY: -1,
    BPCHAR: -1, VARCHAR: -1, DATE: 4, TIME: 8, TIMESTAMP: 8, TIMESTAMPTZ: 8, INTERVAL: 16,
    NUMERIC: -1, REGCLASS: 4, VOID: 4, UUID: 16, PG_LSN: 8, JSONB: -1,
}

_TEXTLIKE = frozenset((TEXT, VARCHAR, BPCHAR, NAME, UNKNOWN, JSON, CHAR, INET, 0))

_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I64 = struct.Struct("!q")
_U64 = struct.Struct("!Q")
_F32 = struct.Struct("!f")
_F64 = struct.Struct("!d")
_HDR = struct.Struct("!ci")

_UTC = UTC
_PG_EPOCH = datetime(2000, 1, 1)
_PG_EPOCH_UTC = datetime(2000, 1, 1, tzinfo=_UTC)
_PG_EPOCH_DATE_ORD = date(2000, 1, 1).toordinal()
_PG_EPOCH_UNIX_S = 946684800
_ONE_US = timedelta(microseconds=1)

# PG's infinity sentinels for date (int32) and timestamp(tz) (int64).
_DATE_NOBEGIN = -(2**31)
_DATE_NOEND = 2**31 - 1
_TS_NOBEGIN = -(2**63)
_TS_NOEND = 2**63 - 1

# numeric binary sign words.
_NUMERIC_POS = 0x0000
_NUMERIC_NEG = 0x4000
_NUMERIC_NAN = 0xC000
_NUMERIC_PINF = 0xD000
_NUMERIC_NINF = 0xF000


class ProtocolViolation(Exception):
    """A client error with the SQLSTATE and message text PostgreSQL would report."""

    def __init__(self, sqlstate: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.hint = hint

    def to_error_fields(self, severity: str = "ERROR") -> ErrorFields:
        return ErrorFields(severity, self.sqlstate, self.message, hint=self.hint)


# --------------------------------------------------------------------------------------------------
# Startup phase


@dataclass(slots=True)
class StartupPacket:
    kind: Literal["startup", "ssl", "gss", "cancel"]
    major: int = 0
    minor: int = 0
    # Every name/value pair except `_pq_.*`, with `database` defaulted to `user`.
    params: dict[str, str] = field(default_factory=dict)
    unrecognized_options: list[str] = field(default_factory=list)
    replication: Literal["", "physical", "logical"] = ""
    option_settings: list[tuple[str, str]] = field(default_factory=list)
    cancel_pid: int = 0
    cancel_key: int = 0

    @property
    def user(self) -> str:
        return self.params.get("user", "")

    @property
    def database(self) -> str:
        return self.params.get("database", "")


def read_startup_length(first4: bytes) -> int:
    """Validate the startup packet's length word; returns it (it counts itself: read ``n - 4`` more)."""
    if len(first4) != 4:
        raise ProtocolViolation("08P01", "incomplete startup packet")
    n = _I32.unpack(first4)[0]
    if n - 4 < 4 or n - 4 > MAX_STARTUP_PACKET_LENGTH:
        raise ProtocolViolation("08P01", "invalid length of startup packet")
    return n


def parse_bool(value: str) -> bool | None:
    """PG's parse_bool: case-insensitive unique prefixes of true/false/yes/no, on/off, 1/0."""
    v = value.lower()
    n = len(v)
    if n == 0:
        return None
    c = v[0]
    if c == "t" and "true".startswith(v):
        return True
    if c == "f" and "false".startswith(v):
        return False
    if c == "y" and "yes".startswith(v):
        return True
    if c == "n" and "no".startswith(v):
        return False
    if c == "o" and n >= 2:  # a lone "o" is ambiguous
        if "on".startswith(v):
            return True
        if "off".startswith(v):
            return False
    if v == "1":
        return True
    if v == "0":
        return False
    return None


def split_options(optstr: str) -> list[str]:
    """PG's pg_split_opts: whitespace-separated words, backslash escapes the next character."""
    out: list[str] = []
    i, n = 0, len(optstr)
    while i < n:
        while i < n and optstr[i] in " \t\n\r\f\v":
            i += 1
        if i >= n:
            break
        word: list[str] = []
        escaped = False
        while i < n:
            ch = optstr[i]
            if ch in " \t\n\r\f\v" and not escaped:
                break
            if not escaped and ch == "\\":
                escaped = True
            else:
                escaped = False
                word.append(ch)
            i += 1
        out.append("".join(word))
    return out


def _long_option(arg: str, switch: str) -> tuple[str, str]:
    name, eq, value = arg.partition("=")
    if not eq:
        what = f"--{arg}" if switch == "-" else f"-c {arg}"
        raise ProtocolViolation("42601", f"{what} requires a value")
    # ParseLongOption: dashes in the name become underscores.
    return name.replace("-", "_"), value


def parse_options(optstr: str) -> list[tuple[str, str]]:
    """The part of process_postgres_switches clients use: `-c name=value`, `-cname=value`, `--name=value`."""
    words = split_options(optstr)
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "-c":
            if i + 1 >= len(words):
                raise ProtocolViolation("42601", "invalid command-line argument for server process: -c")
            out.append(_long_option(words[i + 1], "c"))
            i += 2
            continue
        if w.startswith("-c"):
            out.append(_long_option(w[2:], "c"))
        elif w.startswith("--") and len(w) > 2:
            out.append(_long_option(w[2:], "-"))
        else:
            raise ProtocolViolation(
                "42601",
                f"invalid command-line argument for server process: {w}",
                'Try "postgres --help" for more information.',
            )
        i += 1
    return out


def _startup_str(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad_utf8(raw, e) from None


def parse_startup_packet(body: bytes) -> StartupPacket:
    """Parse a startup-phase packet; ``body`` is everything after the int32 length word."""
    n = len(body)
    if n < 4 or n > MAX_STARTUP_PACKET_LENGTH:
        raise ProtocolViolation("08P01", "invalid length of startup packet")
    code = _U32.unpack_from(body, 0)[0]
    major, minor = code >> 16, code & 0xFFFF
    if code == CANCEL_REQUEST_CODE:
        if n != 12:
            raise ProtocolViolation("08P01", "invalid length of startup packet")
        pid, key = struct.unpack_from("!iI", body, 4)
        return StartupPacket("cancel", major, minor, cancel_pid=pid, cancel_key=key)
    if code == SSL_REQUEST_CODE:
        return StartupPacket("ssl", major, minor)
    if code == GSSENC_REQUEST_CODE:
        return StartupPacket("gss", major, minor)
    if major != 3:
        raise ProtocolViolation(
            "0A000",
            f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to "
            f"{PROTOCOL_LATEST >> 16}.{PROTOCOL_LATEST & 0xFFFF}",
        )
    pkt = StartupPacket("startup", major, minor)
    # Mirror PG's scan exactly, including its implicit NUL after the buffer, so the same packets are
    # rejected with the same "terminator" error.
    buf = bytes(body) + b"\0"
    offset = 4
    while offset < n:
        name_end = buf.index(b"\0", offset)
        if name_end == offset:
            break  # the packet terminator
        val_off = name_end + 1
        if val_off >= n:
            break  # missing value: reported by the layout check below
        val_end = buf.index(b"\0", val_off)
        name = _startup_str(buf[offset:name_end])
        value = _startup_str(buf[val_off:val_end])
        if name == "replication":
            if value == "database":
                pkt.replication = "logical"
            else:
                b = parse_bool(value)
                if b is None:
                    raise ProtocolViolation(
                        "22023",
                        f'invalid value for parameter "replication": "{value}"',
                        'Valid values are: "false", 0, "true", 1, "database".',
                    )
                pkt.replication = "physical" if b else ""
            pkt.params[name] = value
        elif name.startswith("_pq_."):
            pkt.unrecognized_options.append(name)
        else:
            pkt.params[name] = value
        offset = val_end + 1
    if offset != n - 1:
        raise ProtocolViolation("08P01", "invalid startup packet layout: expected terminator as last byte")
    if not pkt.params.get("user"):
        raise ProtocolViolation("28000", "no PostgreSQL user name specified in startup packet")
    if not pkt.params.get("database"):
        pkt.params["database"] = pkt.params["user"]
    opts = pkt.params.get("options")
    if opts:
        pkt.option_settings = parse_options(opts)
    return pkt


def needs_negotiation(pkt: StartupPacket) -> bool:
    newer = pkt.minor > (PROTOCOL_LATEST & 0xFFFF)
    return pkt.kind == "startup" and (newer or bool(pkt.unrecognized_options))


def negotiate_protocol_version(pkt: StartupPacket) -> bytes:
    """NegotiateProtocolVersion as PG 15 sends it: full version code, count, rejected `_pq_.` names."""
    parts = [_U32.pack(PROTOCOL_LATEST), _I32.pack(len(pkt.unrecognized_options))]
    parts += [_cstr(o) for o in pkt.unrecognized_options]
    return _msg(b"v", b"".join(parts))


# --------------------------------------------------------------------------------------------------
# Backend -> frontend messages


def _msg(mtype: bytes, body: bytes = b"") -> bytes:
    return _HDR.pack(mtype, len(body) + 4) + body


def _cstr(s: str) -> bytes:
    b = s.encode("utf-8")
    if b"\0" in b:
        raise ValueError("protocol strings cannot contain NUL")
    return b + b"\0"


def authentication_ok() -> bytes:
    return _msg(b"R", _I32.pack(0))


def authentication_cleartext() -> bytes:
    return _msg(b"R", _I32.pack(3))


def authentication_md5(salt: bytes) -> bytes:
    if len(salt) != 4:
        raise ValueError("MD5 salt must be 4 bytes")
    return _msg(b"R", _I32.pack(5) + bytes(salt))


def authentication_sasl(mechanisms: Sequence[str]) -> bytes:
    return _msg(b"R", _I32.pack(10) + b"".join(_cstr(m) for m in mechanisms) + b"\0")


def authentication_sasl_continue(data: bytes) -> bytes:
    return _msg(b"R", _I32.pack(11) + bytes(data))


def authentication_sasl_final(data: bytes) -> bytes:
    return _msg(b"R", _I32.pack(12) + bytes(data))


def parameter_status(name: str, value: str) -> bytes:
    return _msg(b"S", _cstr(name) + _cstr(value))


def backend_key_data(pid: int, key: int) -> bytes:
    # The key is an opaque 32-bit secret; accept it signed or unsigned.
    return _msg(b"K", struct.pack("!iI", pid, key & 0xFFFFFFFF))


def ready_for_query(status: Literal[b"I", b"T", b"E", "I", "T", "E"]) -> bytes:
    s = status.encode("ascii") if isinstance(status, str) else bytes(status)
    if s not in (b"I", b"T", b"E"):
        raise ValueError(f"bad transaction status {status!r}")
    return _msg(b"Z", s)


@dataclass(slots=True)
class Column:
    name: str
    type_oid: int
    typlen: int = -1
    typmod: int = -1
    format: int = 0
    table_oid: int = 0
    attnum: int = 0

    @classmethod
    def for_type(cls, name: str, type_oid: int, format: int = 0) -> Column:
        """A column with PG's typlen for ``type_oid`` filled in."""
        return cls(name, type_oid, TYPE_LEN.get(type_oid, -1), format=format)


_FIELD_TAIL = struct.Struct("!IhIhih")


def row_description(columns: Sequence[Column]) -> bytes:
    parts = [_I16.pack(len(columns))]
    for c in columns:
        parts.append(_cstr(c.name))
        parts.append(_FIELD_TAIL.pack(c.table_oid, c.attnum, c.type_oid, c.typlen, c.typmod, c.format))
    return _msg(b"T", b"".join(parts))


def data_row(values: Sequence[bytes | None]) -> bytes:
    parts = [_I16.pack(len(values))]
    for v in values:
        if v is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(_I32.pack(len(v)))
            parts.append(bytes(v))
    return _msg(b"D", b"".join(parts))


def command_complete(tag: str) -> bytes:
    return _msg(b"C", _cstr(tag))


def empty_query_response() -> bytes:
    return b"I\x00\x00\x00\x04"


def parse_complete() -> bytes:
    return b"1\x00\x00\x00\x04"


def bind_complete() -> bytes:
    return b"2\x00\x00\x00\x04"


def close_complete() -> bytes:
    return b"3\x00\x00\x00\x04"


def no_data() -> bytes:
    return b"n\x00\x00\x00\x04"


def portal_suspended() -> bytes:
    return b"s\x00\x00\x00\x04"


def copy_done() -> bytes:
    return b"c\x00\x00\x00\x04"


def parameter_description(oids: Sequence[int]) -> bytes:
    return _msg(b"t", _I16.pack(len(oids)) + b"".join(_U32.pack(o) for o in oids))


def _copy_response(mtype: bytes, overall_format: int, column_formats: Sequence[int]) -> bytes:
    body = struct.pack("!bh", overall_format, len(column_formats))
    return _msg(mtype, body + b"".join(_I16.pack(f) for f in column_formats))


def copy_in_response(overall_format: int = 0, column_formats: Sequence[int] = ()) -> bytes:
    return _copy_response(b"G", overall_format, column_formats)


def copy_out_response(overall_format: int = 0, column_formats: Sequence[int] = ()) -> bytes:
    return _copy_response(b"H", overall_format, column_formats)


def copy_both_response(overall_format: int = 0, column_formats: Sequence[int] = ()) -> bytes:
    return _copy_response(b"W", overall_format, column_formats)


def copy_data(data: bytes) -> bytes:
    return _msg(b"d", bytes(data))


def notification_response(pid: int, channel: str, payload: str) -> bytes:
    return _msg(b"A", _I32.pack(pid) + _cstr(channel) + _cstr(payload))


# Replication sub-messages travel inside CopyData.


def xlog_data(start_lsn: int, wal_end: int, send_time: int, payload: bytes) -> bytes:
    """CopyData carrying XLogData `w` (LSNs as ints, time in µs since 2000-01-01 UTC)."""
    return copy_data(b"w" + struct.pack("!QQq", start_lsn, wal_end, send_time) + bytes(payload))


def primary_keepalive(wal_end: int, send_time: int, reply_requested: bool) -> bytes:
    """CopyData carrying a primary keepalive `k`."""
    return copy_data(b"k" + struct.pack("!Qq?", wal_end, send_time, reply_requested))


@dataclass(slots=True)
class StandbyStatus:
    write_lsn: int
    flush_lsn: int
    apply_lsn: int
    send_time: int
    reply_requested: bool


def parse_standby_status(payload: bytes) -> StandbyStatus:
    """Decode a standby status update: the CopyData payload starting with `r`."""
    if len(payload) != 34 or payload[:1] != b"r":
        raise ProtocolViolation("08P01", "invalid standby message type or length")
    w, f, a, t, r = struct.unpack_from("!QQQqB", payload, 1)
    return StandbyStatus(w, f, a, t, r != 0)


@dataclass(slots=True)
class ErrorFields:
    severity: str
    sqlstate: str
    message: str
    detail: str | None = None
    hint: str | None = None
    position: int | None = None
    context: str | None = None
    internal_position: int | None = None
    internal_query: str | None = None
    schema: str | None = None
    table: str | None = None
    column: str | None = None
    datatype: str | None = None
    constraint: str | None = None
    file: str | None = None
    line: int | None = None
    routine: str | None = None


def _efield(code: bytes, value: object) -> bytes:
    # Error text may come from anywhere (SQLite messages, user data); never let a stray NUL break framing.
    return code + str(value).encode("utf-8", "replace").replace(b"\0", b"") + b"\0"


def _error_body(err: ErrorFields) -> bytes:
    # Field order as in PG's send_message_to_frontend.
    parts = [
        _efield(b"S", err.severity),
        _efield(b"V", err.severity),
        _efield(b"C", err.sqlstate),
        _efield(b"M", err.message),
    ]
    optional = (
        (b"D", err.detail), (b"H", err.hint), (b"P", err.position), (b"p", err.internal_position),
        (b"q", err.internal_query), (b"W", err.context), (b"s", err.schema), (b"t", err.table),
        (b"c", err.column), (b"d", err.datatype), (b"n", err.constraint), (b"F", err.file),
        (b"L", err.line), (b"R", err.routine),
    )
    parts += [_efield(code, v) for code, v in optional if v is not None]
    parts.append(b"\0")
    return b"".join(parts)


def error_response(err: ErrorFields) -> bytes:
    return _msg(b"E", _error_body(err))


def notice_response(err: ErrorFields) -> bytes:
    return _msg(b"N", _error_body(err))


# --------------------------------------------------------------------------------------------------
# Frontend -> backend: framing


class MessageReader:
    """Incremental framer for post-startup messages. After it raises, the stream is unusable: close it."""

    __slots__ = ("_buf", "_pos", "max_length")

    def __init__(self, max_length: int = MAX_MESSAGE_LENGTH) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_length = max_length

    def feed(self, data: bytes) -> None:
        self._buf += data

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_message(self) -> tuple[bytes, bytes] | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 5:
            return None
        mtype, length = _HDR.unpack_from(buf, pos)
        # Checked as soon as the header arrives, like pq_getmessage, so a bogus length is never buffered.
        if length < 4 or length > self.max_length:
            raise ProtocolViolation("08P01", "invalid message length")
        end = pos + 1 + length
        if len(buf) < end:
            return None
        body = bytes(buf[pos + 5 : end])
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > 65536:
            # Compact rarely so pipelined bursts stay linear.
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return mtype, body


def _bad_utf8(raw: bytes, e: UnicodeDecodeError) -> ProtocolViolation:
    bad = raw[e.start : max(e.end, e.start + 1)]
    return ProtocolViolation("22021", f'invalid byte sequence for encoding "UTF8": 0x{bad.hex()}')


class _Msg:
    """Cursor over a message body with pqformat.c's checks and texts."""

    __slots__ = ("body", "pos")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or n > len(self.body) - self.pos:
            raise ProtocolViolation("08P01", "insufficient data left in message")
        b = self.body[self.pos : self.pos + n]
        self.pos += n
        return b

    def byte(self) -> int:
        if self.pos >= len(self.body):
            raise ProtocolViolation("08P01", "no data left in message")
        self.pos += 1
        return self.body[self.pos - 1]

    def int16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def uint16(self) -> int:
        return _U16.unpack(self._take(2))[0]

    def int32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def uint32(self) -> int:
        return _U32.unpack(self._take(4))[0]

    def raw_string(self) -> bytes:
        end = self.body.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolViolation("08P01", "invalid string in message")
        s = self.body[self.pos : end]
        self.pos = end + 1
        return s

    def string(self) -> str:
        raw = self.raw_string()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _bad_utf8(raw, e) from None

    def rest(self) -> bytes:
        b = self.body[self.pos :]
        self.pos = len(self.body)
        return b

    def end(self) -> None:
        if self.pos != len(self.body):
            raise ProtocolViolation("08P01", "invalid message format")


# --------------------------------------------------------------------------------------------------
# Frontend -> backend: decoders


@dataclass(slots=True)
class ParseMsg:
    name: str
    query: str
    param_oids: list[int]


@dataclass(slots=True)
class BindMsg:
    portal: str
    statement: str
    param_formats: list[int]
    params: list[bytes | None]
    result_formats: list[int]

    def param_format(self, i: int) -> int:
        """Format of parameter ``i`` under the protocol's 0 / 1 / n format-code rule."""
        f = self.param_formats
        return 0 if not f else f[0] if len(f) == 1 else f[i]

    def result_format(self, i: int) -> int:
        f = self.result_formats
        return 0 if not f else f[0] if len(f) == 1 else f[i]


def _body(body: bytes | bytearray | memoryview) -> bytes:
    return body if isinstance(body, bytes) else bytes(body)


def parse_query(body: bytes) -> str:
    m = _Msg(_body(body))
    q = m.string()
    m.end()
    return q


def parse_parse(body: bytes) -> ParseMsg:
    m = _Msg(_body(body))
    name = m.string()
    query = m.string()
    oids = [m.uint32() for _ in range(m.uint16())]
    m.end()
    return ParseMsg(name, query, oids)


def _check_formats(formats: list[int]) -> None:
    for f in formats:
        if f not in (0, 1):
            raise ProtocolViolation("22023", f"unsupported format code: {f}")


def parse_bind(body: bytes) -> BindMsg:
    m = _Msg(_body(body))
    portal = m.string()
    statement = m.string()
    pformats = [m.int16() for _ in range(m.uint16())]
    nparams = m.uint16()
    if len(pformats) > 1 and len(pformats) != nparams:
        raise ProtocolViolation(
            "08P01", f"bind message has {len(pformats)} parameter formats but {nparams} parameters"
        )
    params: list[bytes | None] = []
    for _ in range(nparams):
        n = m.int32()
        params.append(None if n == -1 else m._take(n))
    rformats = [m.int16() for _ in range(m.uint16())]
    m.end()
    _check_formats(pformats)
    _check_formats(rformats)
    return BindMsg(portal, statement, pformats, params, rformats)


def _kind_and_name(body: bytes, what: str) -> tuple[Literal["S", "P"], str]:
    m = _Msg(_body(body))
    kind = m.byte()
    name = m.string()
    m.end()
    if kind == 0x53:
        return "S", name
    if kind == 0x50:
        return "P", name
    raise ProtocolViolation("08P01", f"invalid {what} message subtype {kind}")


def parse_describe(body: bytes) -> tuple[Literal["S", "P"], str]:
    return _kind_and_name(body, "DESCRIBE")


def parse_close(body: bytes) -> tuple[Literal["S", "P"], str]:
    return _kind_and_name(body, "CLOSE")


def parse_execute(body: bytes) -> tuple[str, int]:
    """Returns (portal, max_rows); max_rows <= 0 means all rows."""
    m = _Msg(_body(body))
    portal = m.string()
    max_rows = m.int32()
    m.end()
    return portal, max_rows


def parse_copy_data(body: bytes) -> bytes:
    return _body(body)


def parse_copy_fail(body: bytes) -> str:
    m = _Msg(_body(body))
    s = m.string()
    m.end()
    return s


def parse_password(body: bytes) -> bytes:
    """PasswordMessage: the password without its NUL (as recv_password_packet checks it)."""
    b = _body(body)
    nul = b.find(b"\0")
    if nul != len(b) - 1:
        raise ProtocolViolation("08P01", "invalid password packet size")
    if nul == 0:
        raise ProtocolViolation("28P01", "empty password returned by client")
    return b[:nul]


def parse_sasl_initial(body: bytes) -> tuple[str, bytes | None]:
    m = _Msg(_body(body))
    raw = m.raw_string()
    n = m.int32()
    data = None if n == -1 else m._take(n)
    m.end()
    return raw.decode("utf-8", "replace"), data


def parse_sasl_response(body: bytes) -> bytes:
    return _body(body)


# --------------------------------------------------------------------------------------------------
# Bind parameter decoding


def _bad_binary(paramno: int) -> ProtocolViolation:
    return ProtocolViolation("22P03", f"incorrect binary data format in bind parameter {paramno}")


def _fixed(value: bytes, st: struct.Struct, paramno: int) -> object:
    if len(value) != st.size:
        raise _bad_binary(paramno)
    return st.unpack(value)[0]


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad_utf8(value, e) from None


def pg_us_to_datetime(us: int, tz: bool = True) -> datetime:
    """µs since 2000-01-01 -> aware UTC (or naive) datetime; ``OverflowError`` outside Python's range."""
    return (_PG_EPOCH_UTC if tz else _PG_EPOCH) + timedelta(microseconds=us)


def _decode_numeric(value: bytes, paramno: int) -> object:
    from decimal import Decimal

    if len(value) < 8:
        raise _bad_binary(paramno)
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", value)
    if ndigits < 0 or len(value) != 8 + 2 * ndigits:
        raise ProtocolViolation("22P03", 'invalid length in external "numeric" value')
    if sign == _NUMERIC_NAN:
        return Decimal("NaN")
    if sign == _NUMERIC_PINF:
        return Decimal("Infinity")
    if sign == _NUMERIC_NINF:
        return Decimal("-Infinity")
    if sign not in (_NUMERIC_POS, _NUMERIC_NEG):
        raise ProtocolViolation("22P03", 'invalid sign in external "numeric" value')
    if dscale < 0 or dscale > 0x3FFF:
        raise ProtocolViolation("22P03", 'invalid scale in external "numeric" value')
    coeff = 0
    for d in struct.unpack_from(f"!{ndigits}h", value, 8):
        if not 0 <= d < 10000:
            raise ProtocolViolation("22P03", 'invalid digit in external "numeric" value')
        coeff = coeff * 10000 + d
    exp = 4 * (weight - ndigits + 1)
    # numeric_recv truncates digits hidden by dscale, and dscale pads the rest.
    if exp > -dscale:
        coeff *= 10 ** (exp + dscale)
    elif exp < -dscale:
        coeff //= 10 ** (-dscale - exp)
    digits = tuple(int(c) for c in str(coeff))
    return Decimal((1 if sign == _NUMERIC_NEG else 0, digits, -dscale))


def decode_param(value: bytes | None, type_oid: int, fmt: int, paramno: int = 1) -> object:
    """Bind parameter -> Python value. Text format yields ``str`` (the SQL layer casts it).

    ``paramno`` is 1-based and only used in error messages.
    """
    if value is None:
        return None
    if fmt == 0:
        return _text(value)
    if fmt != 1:
        raise ProtocolViolation("22023", f"unsupported format code: {fmt}")
    if type_oid == INT4:
        return _fixed(value, _I32, paramno)
    if type_oid == INT8:
        return _fixed(value, _I64, paramno)
    if type_oid == INT2:
        return _fixed(value, _I16, paramno)
    if type_oid == BOOL:
        if len(value) != 1:
            raise _bad_binary(paramno)
        return value[0] != 0
    if type_oid == FLOAT8:
        return _fixed(value, _F64, paramno)
    if type_oid == FLOAT4:
        return _fixed(value, _F32, paramno)
    if type_oid == BYTEA:
        return bytes(value)
    if type_oid in _TEXTLIKE:
        return _text(value)
    if type_oid == JSONB:
        if not value or value[0] != 1:
            raise ProtocolViolation(
                "22P03", f"unsupported jsonb version number {value[0] if value else 0}"
            )
        return _text(value[1:])
    if type_oid in (TIMESTAMPTZ, TIMESTAMP):
        us = _fixed(value, _I64, paramno)
        assert isinstance(us, int)
        if us == _TS_NOEND:
            return "infinity"
        if us == _TS_NOBEGIN:
            return "-infinity"
        try:
            return pg_us_to_datetime(us, type_oid == TIMESTAMPTZ)
        except OverflowError:
            raise ProtocolViolation("22008", "timestamp out of range") from None
    if type_oid == DATE:
        days = _fixed(value, _I32, paramno)
        assert isinstance(days, int)
        if days == _DATE_NOEND:
            return "infinity"
        if days == _DATE_NOBEGIN:
            return "-infinity"
        try:
            return date.fromordinal(_PG_EPOCH_DATE_ORD + days)
        except (ValueError, OverflowError):
            raise ProtocolViolation("22008", "date out of range") from None
    if type_oid == UUID:
        if len(value) != 16:
            raise _bad_binary(paramno)
        import uuid

        return uuid.UUID(bytes=bytes(value))
    if type_oid == NUMERIC:
        return _decode_numeric(value, paramno)
    if type_oid in (OID, REGCLASS):
        return _fixed(value, _U32, paramno)
    if type_oid == PG_LSN:
        return _fixed(value, _U64, paramno)
    raise ProtocolViolation("0A000", f"binary format is not supported for parameters of type OID {type_oid}")


# --------------------------------------------------------------------------------------------------
# Result value encoding


def _shortest_digits(v: float, single: bool) -> tuple[str, int]:
    """Shortest round-trip significant digits of |v| and the decimal exponent of the first one."""
    if single:
        target = _F32.unpack(_F32.pack(v))[0]  # caller guarantees v fits in float4
        s = ""
        for p in range(9):
            s = f"{target:.{p}e}"
            if _F32.unpack(_F32.pack(float(s)))[0] == target:
                break
    else:
        s = repr(v)  # Python's repr is already the shortest round-trip form
    mant, _, e = s.lstrip("-").partition("e")
    ip, _, fp = mant.partition(".")
    all_digits = ip + fp
    lead_zeros = len(all_digits) - len(all_digits.lstrip("0"))
    exp = len(ip) - 1 - lead_zeros + (int(e) if e else 0)
    return all_digits[lead_zeros:].rstrip("0"), exp


def format_float(v: float, single: bool = False) -> str:
    """float4out/float8out with extra_float_digits > 0: shortest round-trip, PG's notation thresholds."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    sign = "-" if str(v).startswith("-") else ""
    if v == 0:
        return sign + "0"
    if single and abs(v) > 3.4028234663852886e38:
        single = False  # not representable as float4; show the value rather than fail while rendering
    digits, exp = _shortest_digits(v, single)
    if -4 <= exp < (6 if single else 15):
        if exp < 0:
            return f"{sign}0.{'0' * (-exp - 1)}{digits}"
        if len(digits) <= exp + 1:
            return sign + digits + "0" * (exp + 1 - len(digits))
        return f"{sign}{digits[: exp + 1]}.{digits[exp + 1 :]}"
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _frac(us: int) -> str:
    return f".{us:06d}".rstrip("0") if us else ""


def _fmt_time(t: time | datetime) -> str:
    return f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}{_frac(t.microsecond)}"


def _fmt_offset(off: timedelta | None) -> str:
    secs = int(off.total_seconds()) if off is not None else 0
    sign = "-" if secs < 0 else "+"
    secs = abs(secs)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    if s:
        return f"{sign}{h:02d}:{m:02d}:{s:02d}"
    if m:
        return f"{sign}{h:02d}:{m:02d}"
    return f"{sign}{h:02d}"


def _fmt_date(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def format_timestamp(dt: datetime, tz: bool) -> str:
    """ISO DateStyle output. Naive values are taken as UTC for timestamptz; aware ones keep their offset."""
    if not tz:
        if dt.tzinfo is not None:
            dt = dt.astimezone(_UTC).replace(tzinfo=None)
        return f"{_fmt_date(dt)} {_fmt_time(dt)}"
    off = dt.utcoffset()
    return f"{_fmt_date(dt)} {_fmt_time(dt)}{_fmt_offset(off)}"


def format_interval(td: timedelta) -> str:
    """IntervalStyle=postgres for a timedelta, split like timestamp subtraction: days and time same sign."""
    total = td // _ONE_US
    neg = total < 0
    total = abs(total)
    days, us = divmod(total, 86_400_000_000)
    parts: list[str] = []
    if days:
        parts.append(f"{'-' if neg else ''}{days} day{'s' if neg or days != 1 else ''}")
    if us or not days:
        secs, frac = divmod(us, 1_000_000)
        h, rem = divmod(secs, 3600)
        m, s = divmod(rem, 60)
        # PG prefixes "+" on a positive time after a negative field; ours share a sign, so never.
        parts.append(f"{'-' if neg and us else ''}{h:02d}:{m:02d}:{s:02d}{_frac(frac)}")
    return " ".join(parts)


def _numeric_text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        r = repr(value)
        if "e" in r:
            from decimal import Decimal

            r = format(Decimal(r), "f")
        return r[:-2] if r.endswith(".0") else r
    if hasattr(value, "is_nan") and hasattr(value, "is_infinite"):  # Decimal, without importing decimal
        if value.is_nan():
            return "NaN"
        if value.is_infinite():
            return "-Infinity" if value.is_signed() else "Infinity"  # type: ignore[attr-defined]
        s = format(value, "f")
        return s[1:] if s.startswith("-") and not value else s  # numeric has no negative zero
    return str(value)


def _int_value(value: object) -> int:
    if isinstance(value, float):
        return round(value)  # float->int in PG uses rint(): half-even, like round()
    if isinstance(value, str):
        return int(value.strip())
    return int(value)  # type: ignore[call-overload]


def _array_text(value: Sequence[object], elem_oid: int) -> str:
    out: list[str] = []
    for v in value:
        if v is None:
            out.append("NULL")
            continue
        s = encode_text(v, elem_oid).decode("utf-8")
        needs_quote = (
            s == ""
            or s.upper() == "NULL"
            or any(c in s for c in '{}",\\')
            or any(c.isspace() for c in s)
        )
        if needs_quote:
            s = '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(s)
    return "{" + ",".join(out) + "}"


def encode_text(value: object, type_oid: int) -> bytes:
    """A non-NULL result value in PG's text output form for ``type_oid``. Strings pass through."""
    if isinstance(value, str):
        if type_oid == BOOL:
            b = parse_bool(value)
            if b is not None:
                return b"t" if b else b"f"
        elif type_oid == BYTEA and not value.startswith("\\x"):
            return b"\\x" + value.encode("utf-8").hex().encode("ascii")
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        if type_oid == BYTEA:
            return b"\\x" + bytes(value).hex().encode("ascii")
        return bytes(value)
    if type_oid == BOOL:
        return b"t" if value else b"f"
    if type_oid in (INT2, INT4, INT8, OID, REGCLASS):
        return str(_int_value(value)).encode("ascii")
    if type_oid in (FLOAT8, FLOAT4):
        return format_float(float(value), type_oid == FLOAT4).encode("ascii")  # type: ignore[arg-type]
    if type_oid == NUMERIC:
        return _numeric_text(value).encode("ascii")
    if isinstance(value, datetime):
        if type_oid == DATE:
            return _fmt_date(value).encode("ascii")
        return format_timestamp(value, type_oid != TIMESTAMP).encode("ascii")
    if isinstance(value, date):
        return _fmt_date(value).encode("ascii")
    if isinstance(value, time):
        s = _fmt_time(value)
        if value.tzinfo is not None:
            s += _fmt_offset(value.utcoffset())
        return s.encode("ascii")
    if isinstance(value, timedelta):
        return format_interval(value).encode("ascii")
    if type_oid == PG_LSN and isinstance(value, int):
        return format_lsn(value).encode("ascii")
    if type_oid in (JSON, JSONB) and not isinstance(value, (int, float)):
        import json

        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    if type_oid == INT4_ARRAY and isinstance(value, (list, tuple)):
        return _array_text(value, INT4).encode("utf-8")
    if type_oid == INT2_ARRAY and isinstance(value, (list, tuple)):
        return _array_text(value, INT2).encode("utf-8")
    if type_oid == TEXT_ARRAY and isinstance(value, (list, tuple)):
        return _array_text(value, TEXT).encode("utf-8")
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, float):
        return format_float(value).encode("ascii")
    return str(value).encode("utf-8")


def _numeric_binary(value: object) -> bytes:
    from decimal import Decimal

    if isinstance(value, float):
        value = Decimal(repr(value))
    elif isinstance(value, (int, str)):
        value = Decimal(value)
    if not isinstance(value, Decimal):
        raise ProtocolViolation("22P03", f"cannot send {type(value).__name__} as binary numeric")
    if value.is_nan():
        return struct.pack("!hhHh", 0, 0, _NUMERIC_NAN, 0)
    if value.is_infinite():
        return struct.pack("!hhHh", 0, 0, _NUMERIC_NINF if value.is_signed() else _NUMERIC_PINF, 0)
    sign, digit_tuple, exp = value.as_tuple()
    assert isinstance(exp, int)
    dscale = max(0, -exp)
    coeff = int("".join(map(str, digit_tuple)) or "0")
    # Align the exponent to a base-10000 boundary.
    shift = exp % 4
    coeff *= 10**shift
    exp -= shift
    groups: list[int] = []
    while coeff:
        coeff, g = divmod(coeff, 10000)
        groups.append(g)
    groups.reverse()
    if not groups:
        return struct.pack("!hhHh", 0, 0, _NUMERIC_POS, dscale)
    weight = len(groups) - 1 + exp // 4
    while groups and groups[-1] == 0:
        groups.pop()
    head = struct.pack("!hhHh", len(groups), weight, _NUMERIC_NEG if sign else _NUMERIC_POS, dscale)
    return head + struct.pack(f"!{len(groups)}h", *groups)


def _to_datetime(value: object) -> datetime | str:
    if isinstance(value, str):
        if value in ("infinity", "-infinity"):
            return value
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ProtocolViolation("22007", f'invalid input syntax for type timestamp: "{value}"') from None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise ProtocolViolation("22P03", f"cannot send {type(value).__name__} as binary timestamp")


_INT_BINARY = {INT2: (_I16, "smallint"), INT4: (_I32, "integer"), INT8: (_I64, "bigint")}


def encode_binary(value: object, type_oid: int) -> bytes:
    """A non-NULL result value in PG's binary send form; unsupported types raise 0A000."""
    if type_oid in _INT_BINARY:
        st, name = _INT_BINARY[type_oid]
        try:
            return st.pack(_int_value(value))
        except struct.error:
            raise ProtocolViolation("22003", f"{name} out of range") from None
    if type_oid == BOOL:
        if isinstance(value, str):
            b = parse_bool(value)
            if b is None:
                raise ProtocolViolation("22P02", f'invalid input syntax for type boolean: "{value}"')
            value = b
        return b"\x01" if value else b"\x00"
    if type_oid in (FLOAT8, FLOAT4):
        return (_F64 if type_oid == FLOAT8 else _F32).pack(float(value))  # type: ignore[arg-type]
    if type_oid == BYTEA or type_oid in _TEXTLIKE:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        return (value if isinstance(value, str) else encode_text(value, type_oid).decode()).encode("utf-8")
    if type_oid == JSONB:
        return b"\x01" + encode_text(value, JSONB)
    if type_oid in (OID, REGCLASS):
        return _U32.pack(_int_value(value))
    if type_oid == PG_LSN:
        return _U64.pack(parse_lsn(value) if isinstance(value, str) else _int_value(value))
    if type_oid == UUID:
        raw = getattr(value, "bytes", None)
        if raw is None:
            import uuid

            raw = uuid.UUID(str(value)).bytes
        return bytes(raw)
    if type_oid == DATE:
        if value in ("infinity", "-infinity"):
            return _I32.pack(_DATE_NOEND if value == "infinity" else _DATE_NOBEGIN)
        d = date.fromisoformat(value) if isinstance(value, str) else value
        if isinstance(d, datetime):
            d = d.date()
        if not isinstance(d, date):
            raise ProtocolViolation("22P03", f"cannot send {type(value).__name__} as binary date")
        return _I32.pack(d.toordinal() - _PG_EPOCH_DATE_ORD)
    if type_oid in (TIMESTAMP, TIMESTAMPTZ):
        dt = _to_datetime(value)
        if isinstance(dt, str):
            return _I64.pack(_TS_NOEND if dt == "infinity" else _TS_NOBEGIN)
        if type_oid == TIMESTAMPTZ:
            us = (dt.replace(tzinfo=_UTC) if dt.tzinfo is None else dt) - _PG_EPOCH_UTC
        else:
            us = (dt if dt.tzinfo is None else dt.astimezone(_UTC).replace(tzinfo=None)) - _PG_EPOCH
        return _I64.pack(us // _ONE_US)
    if type_oid == NUMERIC:
        return _numeric_binary(value)
    raise ProtocolViolation("0A000", f"binary output format is not supported for type OID {type_oid}")


# --------------------------------------------------------------------------------------------------
# LSN and time helpers


def format_lsn(lsn: int) -> str:
    if not 0 <= lsn < 2**64:
        raise ValueError(f"LSN out of range: {lsn}")
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


_HEX = frozenset("0123456789abcdefABCDEF")


def parse_lsn(text: str) -> int:
    """pg_lsn_in: 1-8 hex digits, '/', 1-8 hex digits; case-insensitive."""
    hi, sep, lo = text.partition("/")
    for part in (hi, lo):
        if not sep or not 1 <= len(part) <= 8 or not _HEX.issuperset(part):
            raise ValueError(f'invalid input syntax for type pg_lsn: "{text}"')
    return (int(hi, 16) << 32) | int(lo, 16)


def pg_epoch_us(now: float | None = None) -> int:
    """µs since 2000-01-01 00:00 UTC: the clock used by replication messages and timestamptz binary."""
    if now is None:
        import time as _time

        return _time.time_ns() // 1000 - _PG_EPOCH_UNIX_S * 1_000_000
    return round((now - _PG_EPOCH_UNIX_S) * 1_000_000)


def pg_epoch_us_to_unix(us: int) -> float:
    """Inverse of ``pg_epoch_us``: seconds since the Unix epoch."""
    return us / 1_000_000 + _PG_EPOCH_UNIX_S
