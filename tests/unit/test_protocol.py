"""Unit tests for node.protocol: golden bytes built by hand with struct, plus psycopg's own encodings."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from node import protocol as p
from node.protocol import ProtocolViolation


def msg(t: bytes, body: bytes) -> bytes:
    return t + struct.pack("!i", len(body) + 4) + body


def startup_body(params: dict[str, str], code: int = p.PROTOCOL_3_0) -> bytes:
    kv = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
    return struct.pack("!I", code) + kv + b"\0"


def violation(fn, *args) -> ProtocolViolation:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolViolation) as ei:
        fn(*args)
    return ei.value


# ------------------------------------------------------------------------------------------------
# Startup


def test_ssl_gss_cancel_requests() -> None:
    assert p.parse_startup_packet(struct.pack("!I", 80877103)).kind == "ssl"
    assert p.parse_startup_packet(struct.pack("!I", 80877104)).kind == "gss"
    c = p.parse_startup_packet(struct.pack("!iiI", 80877102, 4242, 0xDEADBEEF))
    assert (c.kind, c.cancel_pid, c.cancel_key) == ("cancel", 4242, 0xDEADBEEF)
    e = violation(p.parse_startup_packet, struct.pack("!ii", 80877102, 4242))
    assert (e.sqlstate, e.message) == ("08P01", "invalid length of startup packet")


def test_startup_3_0_params() -> None:
    pkt = p.parse_startup_packet(
        startup_body(
            {"user": "alice", "database": "db1", "application_name": "psql", "client_encoding": "UTF8"}
        )
    )
    assert (pkt.kind, pkt.major, pkt.minor) == ("startup", 3, 0)
    assert pkt.user == "alice" and pkt.database == "db1"
    assert pkt.params["application_name"] == "psql"
    assert pkt.replication == ""
    assert pkt.unrecognized_options == [] and pkt.option_settings == []
    assert not p.needs_negotiation(pkt)


def test_database_defaults_to_user() -> None:
    pkt = p.parse_startup_packet(startup_body({"user": "bob"}))
    assert pkt.params["database"] == "bob"
    pkt = p.parse_startup_packet(startup_body({"user": "bob", "database": ""}))
    assert pkt.database == "bob"


def test_startup_3_2_negotiation_exact_bytes() -> None:
    pkt = p.parse_startup_packet(startup_body({"user": "u"}, code=(3 << 16) | 2))
    assert pkt.minor == 2 and p.needs_negotiation(pkt)
    assert p.negotiate_protocol_version(pkt) == b"v" + struct.pack("!iIi", 12, 0x00030000, 0)
    assert p.negotiate_protocol_version(pkt) == bytes.fromhex("760000000c0003000000000000")

    pkt = p.parse_startup_packet(startup_body({"user": "u", "_pq_.foo": "1", "_pq_.bar": "x"}))
    assert p.needs_negotiation(pkt)
    assert "_pq_.foo" not in pkt.params
    body = struct.pack("!Ii", 0x00030000, 2) + b"_pq_.foo\0_pq_.bar\0"
    assert p.negotiate_protocol_version(pkt) == msg(b"v", body)


def test_major_2_rejected() -> None:
    e = violation(p.parse_startup_packet, startup_body({"user": "u"}, code=2 << 16))
    assert e.sqlstate == "0A000"
    assert e.message == "unsupported frontend protocol 2.0: server supports 3.0 to 3.0"


def test_missing_user() -> None:
    e = violation(p.parse_startup_packet, startup_body({"database": "d"}))
    assert (e.sqlstate, e.message) == ("28000", "no PostgreSQL user name specified in startup packet")


def test_layout_errors() -> None:
    body = startup_body({"user": "u"})
    for bad in (body[:-1], body + b"x\0", struct.pack("!I", p.PROTOCOL_3_0) + b"user\0"):
        e = violation(p.parse_startup_packet, bad)
        assert e.sqlstate == "08P01"
        assert e.message == "invalid startup packet layout: expected terminator as last byte"
    assert violation(p.parse_startup_packet, b"\0\3").message == "invalid length of startup packet"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", "physical"),
        ("on", "physical"),
        ("1", "physical"),
        ("YES", "physical"),
        ("database", "logical"),
        ("false", ""),
        ("off", ""),
        ("0", ""),
        ("no", ""),
    ],
)
def test_replication_values(value: str, expected: str) -> None:
    pkt = p.parse_startup_packet(startup_body({"user": "u", "database": "replication", "replication": value}))
    assert pkt.replication == expected


def test_bad_replication_value() -> None:
    e = violation(p.parse_startup_packet, startup_body({"user": "u", "replication": "maybe"}))
    assert e.sqlstate == "22023"
    assert e.message == 'invalid value for parameter "replication": "maybe"'
    # A lone "o" is ambiguous between on/off in PG's parse_bool.
    violation(p.parse_startup_packet, startup_body({"user": "u", "replication": "o"}))


def test_options_parsing() -> None:
    opts = r"-c a=b  --search-path=x\ y -cstatement_timeout=5 -c geqo=off\\"
    pkt = p.parse_startup_packet(startup_body({"user": "u", "options": opts}))
    assert pkt.option_settings == [
        ("a", "b"),
        ("search_path", "x y"),
        ("statement_timeout", "5"),
        ("geqo", "off\\"),
    ]
    e = violation(p.parse_startup_packet, startup_body({"user": "u", "options": "-c novalue"}))
    assert (e.sqlstate, e.message) == ("42601", "-c novalue requires a value")
    e = violation(p.parse_startup_packet, startup_body({"user": "u", "options": "-X"}))
    assert e.message == "invalid command-line argument for server process: -X"


def test_read_startup_length() -> None:
    assert p.read_startup_length(struct.pack("!i", 8)) == 8
    assert p.read_startup_length(struct.pack("!i", 10004)) == 10004
    for n in (0, 7, 10005, -1):
        e = violation(p.read_startup_length, struct.pack("!i", n))
        assert (e.sqlstate, e.message) == ("08P01", "invalid length of startup packet")


# ------------------------------------------------------------------------------------------------
# Backend encoders


def test_authentication_messages() -> None:
    assert p.authentication_ok() == b"R\0\0\0\x08\0\0\0\0"
    assert p.authentication_cleartext() == msg(b"R", struct.pack("!i", 3))
    assert p.authentication_md5(b"abcd") == msg(b"R", struct.pack("!i", 5) + b"abcd")
    assert p.authentication_sasl(["SCRAM-SHA-256"]) == msg(b"R", struct.pack("!i", 10) + b"SCRAM-SHA-256\0\0")
    assert p.authentication_sasl_continue(b"r=x,s=y,i=4096") == msg(
        b"R", struct.pack("!i", 11) + b"r=x,s=y,i=4096"
    )
    assert p.authentication_sasl_final(b"v=sig") == msg(b"R", struct.pack("!i", 12) + b"v=sig")
    with pytest.raises(ValueError):
        p.authentication_md5(b"abc")


def test_session_messages() -> None:
    assert p.parameter_status("TimeZone", "Etc/UTC") == msg(b"S", b"TimeZone\0Etc/UTC\0")
    assert p.backend_key_data(1234, 0xCAFEBABE) == msg(b"K", struct.pack("!iI", 1234, 0xCAFEBABE))
    assert p.backend_key_data(1234, -1) == msg(b"K", struct.pack("!iI", 1234, 0xFFFFFFFF))
    assert p.ready_for_query(b"I") == b"Z\0\0\0\x05I"
    assert p.ready_for_query("T") == b"Z\0\0\0\x05T"
    assert p.ready_for_query(b"E") == b"Z\0\0\0\x05E"
    with pytest.raises(ValueError):
        p.ready_for_query("X")  # type: ignore[arg-type]


def test_row_description_and_data_row() -> None:
    cols = [p.Column("id", p.INT4, 4), p.Column("name", p.TEXT, table_oid=16384, attnum=2)]
    expected = struct.pack("!h", 2)
    expected += b"id\0" + struct.pack("!IhIhih", 0, 0, 23, 4, -1, 0)
    expected += b"name\0" + struct.pack("!IhIhih", 16384, 2, 25, -1, -1, 0)
    assert p.row_description(cols) == msg(b"T", expected)
    assert p.Column.for_type("n", p.NAME) == p.Column("n", 19, 64)
    assert p.data_row([b"1", None, b""]) == msg(
        b"D",
        struct.pack("!h", 3) + struct.pack("!i", 1) + b"1" + struct.pack("!i", -1) + struct.pack("!i", 0),
    )


def test_simple_messages() -> None:
    assert p.command_complete("INSERT 0 1") == msg(b"C", b"INSERT 0 1\0")
    assert p.empty_query_response() == msg(b"I", b"")
    assert p.parse_complete() == msg(b"1", b"")
    assert p.bind_complete() == msg(b"2", b"")
    assert p.close_complete() == msg(b"3", b"")
    assert p.no_data() == msg(b"n", b"")
    assert p.portal_suspended() == msg(b"s", b"")
    assert p.copy_done() == msg(b"c", b"")
    assert p.parameter_description([23, 25]) == msg(b"t", struct.pack("!hII", 2, 23, 25))
    assert p.copy_both_response() == msg(b"W", b"\0\0\0")
    assert p.copy_out_response() == msg(b"H", b"\0\0\0")
    assert p.copy_out_response(0, [0, 0]) == msg(b"H", struct.pack("!bhhh", 0, 2, 0, 0))
    assert p.copy_in_response(1, [1]) == msg(b"G", struct.pack("!bhh", 1, 1, 1))
    assert p.copy_data(b"xyz") == msg(b"d", b"xyz")
    assert p.notification_response(7, "ch", "hi") == msg(b"A", struct.pack("!i", 7) + b"ch\0hi\0")
    with pytest.raises(ValueError):
        p.command_complete("bad\0tag")


def test_replication_copy_messages() -> None:
    assert p.xlog_data(0x16B3748, 0x2000000, 99, b"ab") == msg(
        b"d", b"w" + struct.pack("!QQq", 0x16B3748, 0x2000000, 99) + b"ab"
    )
    assert p.primary_keepalive(5, 6, True) == msg(b"d", b"k" + struct.pack("!QqB", 5, 6, 1))
    st = p.parse_standby_status(b"r" + struct.pack("!QQQqB", 1, 2, 3, 4, 1))
    assert (st.write_lsn, st.flush_lsn, st.apply_lsn, st.send_time, st.reply_requested) == (1, 2, 3, 4, True)
    violation(p.parse_standby_status, b"r" + b"\0" * 10)


def test_error_response_golden() -> None:
    err = p.ErrorFields("ERROR", "42601", 'syntax error at or near "selec"', detail="d", hint="h", position=1)
    body = b"SERROR\0VERROR\0C42601\0M" + b'syntax error at or near "selec"' + b"\0" + b"Dd\0Hh\0P1\0" + b"\0"
    assert p.error_response(err) == msg(b"E", body)
    notice = p.ErrorFields("WARNING", "25P01", "there is no transaction in progress")
    assert p.notice_response(notice) == msg(
        b"N", b"SWARNING\0VWARNING\0C25P01\0Mthere is no transaction in progress\0\0"
    )
    full = p.ErrorFields(
        "ERROR",
        "23505",
        "dup",
        context="ctx",
        schema="public",
        table="t",
        column="c",
        datatype="int4",
        constraint="t_pkey",
        file="f.c",
        line=12,
        routine="r",
        internal_position=3,
        internal_query="q",
    )
    assert p.error_response(full) == msg(
        b"E",
        b"SERROR\0VERROR\0C23505\0Mdup\0p3\0qq\0Wctx\0spublic\0tt\0cc\0dint4\0nt_pkey\0Ff.c\0L12\0Rr\0\0",
    )
    # A NUL in foreign error text must not break framing.
    assert p.error_response(p.ErrorFields("ERROR", "XX000", "a\0b")) == msg(
        b"E", b"SERROR\0VERROR\0CXX000\0Mab\0\0"
    )
    pv = ProtocolViolation("08P01", "invalid message length")
    assert p.error_response(pv.to_error_fields("FATAL")).startswith(b"E")


# ------------------------------------------------------------------------------------------------
# Framing


def test_reader_split_feeds() -> None:
    stream = msg(b"Q", b"select 1\0") + msg(b"S", b"") + msg(b"X", b"")
    r = p.MessageReader()
    out = []
    for i in range(len(stream)):
        r.feed(stream[i : i + 1])
        while (m := r.next_message()) is not None:
            out.append(m)
    assert out == [(b"Q", b"select 1\0"), (b"S", b""), (b"X", b"")]
    assert r.buffered() == 0
    assert r.next_message() is None


def test_reader_batch_and_partial() -> None:
    r = p.MessageReader()
    big = msg(b"d", b"x" * 70000)
    r.feed(big + msg(b"H", b"")[:3])
    assert r.next_message() == (b"d", b"x" * 70000)
    assert r.next_message() is None
    r.feed(msg(b"H", b"")[3:])
    assert r.next_message() == (b"H", b"")


@pytest.mark.parametrize("length", [3, 0, -1, p.MAX_MESSAGE_LENGTH + 1])
def test_reader_bad_lengths(length: int) -> None:
    r = p.MessageReader()
    r.feed(b"Q" + struct.pack("!i", length))
    e = violation(r.next_message)
    assert (e.sqlstate, e.message) == ("08P01", "invalid message length")


def test_reader_custom_cap() -> None:
    r = p.MessageReader(max_length=p.MAX_AUTH_TOKEN_LENGTH)
    r.feed(b"p" + struct.pack("!i", 70000))
    violation(r.next_message)


# ------------------------------------------------------------------------------------------------
# Decoders


def test_parse_query() -> None:
    assert p.parse_query(b"select 1\0") == "select 1"
    assert violation(p.parse_query, b"select 1").message == "invalid string in message"
    assert violation(p.parse_query, b"a\0b").message == "invalid message format"
    assert violation(p.parse_query, b"\xff\0").sqlstate == "22021"


def test_parse_parse() -> None:
    body = b"_pg3_0\0select $1, $2\0" + struct.pack("!hII", 2, 23, 0)
    assert p.parse_parse(body) == p.ParseMsg("_pg3_0", "select $1, $2", [23, 0])
    assert p.parse_parse(b"\0q\0\0\0") == p.ParseMsg("", "q", [])
    e = violation(p.parse_parse, b"\0q\0" + struct.pack("!h", 1))
    assert (e.sqlstate, e.message) == ("08P01", "insufficient data left in message")
    assert violation(p.parse_parse, b"\0q\0\0\0extra").message == "invalid message format"


def test_parse_bind() -> None:
    body = (
        b"\0\0"
        + struct.pack("!hhh", 2, 0, 1)
        + struct.pack("!h", 2)
        + struct.pack("!i", 3)
        + b"abc"
        + struct.pack("!i", -1)
        + struct.pack("!hh", 1, 0)
    )
    b = p.parse_bind(body)
    assert b == p.BindMsg("", "", [0, 1], [b"abc", None], [0])
    assert b.param_format(1) == 1 and b.result_format(5) == 0
    one = p.parse_bind(
        b"portal\0stmt\0" + struct.pack("!hhh", 1, 1, 1) + struct.pack("!i", 2) + b"\0\x01\0\0"
    )
    assert one.portal == "portal" and one.statement == "stmt" and one.param_format(0) == 1
    assert p.parse_bind(b"\0\0\0\0\0\0\0\0").param_format(0) == 0


def test_parse_bind_malformed() -> None:
    e = violation(p.parse_bind, b"\0\0" + struct.pack("!hhhh", 2, 0, 0, 3))
    assert e.message == "bind message has 2 parameter formats but 3 parameters"
    e = violation(p.parse_bind, b"\0\0\0\0" + struct.pack("!hi", 1, 10) + b"abc")
    assert e.message == "insufficient data left in message"
    e = violation(p.parse_bind, b"\0\0\0\0" + struct.pack("!hi", 1, -2) + b"\0\0")
    assert e.message == "insufficient data left in message"
    e = violation(p.parse_bind, b"\0\0" + struct.pack("!hh", 1, 2) + b"\0\0\0\0")
    assert (e.sqlstate, e.message) == ("22023", "unsupported format code: 2")
    assert violation(p.parse_bind, b"\0").message == "invalid string in message"
    assert violation(p.parse_bind, b"\0\0\0\0\0\0\0\0x").message == "invalid message format"


def test_describe_close_execute() -> None:
    assert p.parse_describe(b"P\0") == ("P", "")
    assert p.parse_describe(b"S_pg3_1\0") == ("S", "_pg3_1")
    assert p.parse_close(b"Sfoo\0") == ("S", "foo")
    assert violation(p.parse_describe, b"X\0").message == "invalid DESCRIBE message subtype 88"
    assert violation(p.parse_close, b"Q\0").message == "invalid CLOSE message subtype 81"
    assert violation(p.parse_describe, b"").message == "no data left in message"
    assert p.parse_execute(b"\0" + struct.pack("!i", 0)) == ("", 0)
    assert p.parse_execute(b"c1\0" + struct.pack("!i", 10)) == ("c1", 10)
    assert violation(p.parse_execute, b"\0\0\0").message == "insufficient data left in message"


def test_copy_password_sasl() -> None:
    assert p.parse_copy_data(b"\x00\x01") == b"\x00\x01"
    assert p.parse_copy_fail(b"oops\0") == "oops"
    assert p.parse_password(b"secret\0") == b"secret"
    assert violation(p.parse_password, b"sec\0ret\0").message == "invalid password packet size"
    assert violation(p.parse_password, b"secret").message == "invalid password packet size"
    e = violation(p.parse_password, b"\0")
    assert (e.sqlstate, e.message) == ("28P01", "empty password returned by client")
    first = b"n,,n=,r=abc"
    body = b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first
    assert p.parse_sasl_initial(body) == ("SCRAM-SHA-256", first)
    assert p.parse_sasl_initial(b"SCRAM-SHA-256\0" + struct.pack("!i", -1)) == ("SCRAM-SHA-256", None)
    assert violation(p.parse_sasl_initial, b"SCRAM").message == "invalid string in message"
    assert violation(p.parse_sasl_initial, body + b"!").message == "invalid message format"
    assert p.parse_sasl_response(b"c=biws") == b"c=biws"


# ------------------------------------------------------------------------------------------------
# Parameter decoding


def _psycopg_binary(value: object) -> tuple[int, bytes]:
    adapt = pytest.importorskip("psycopg.adapt")
    tx = adapt.Transformer()
    dumper = tx.get_dumper(value, adapt.PyFormat.BINARY)
    return dumper.oid, bytes(dumper.dump(value))


@pytest.mark.parametrize(
    ("value", "oid"),
    [
        (1, p.INT2),
        (-300, p.INT2),
        (2**20, p.INT4),
        (-(2**31), p.INT4),
        (2**40, p.INT8),
        (-(2**63), p.INT8),
        (True, p.BOOL),
        (False, p.BOOL),
        (1.5, p.FLOAT8),
        (-1e300, p.FLOAT8),
        (date(2026, 11, 25), p.DATE),
        (date(1970, 1, 1), p.DATE),
        (datetime(2026, 11, 25, 9, 21, 37, 57495, tzinfo=UTC), p.TIMESTAMPTZ),
        (datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), p.TIMESTAMPTZ),
        (datetime(2020, 1, 1, 12), p.TIMESTAMP),
        (b"\x00ab\xff", p.BYTEA),
        (b"", p.BYTEA),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), p.UUID),
        (Decimal("-123.4500"), p.NUMERIC),
        (Decimal("12345678.9"), p.NUMERIC),
        (Decimal("0.0001"), p.NUMERIC),
        (Decimal("1E+10"), p.NUMERIC),
        (Decimal("0"), p.NUMERIC),
        (Decimal("0.00"), p.NUMERIC),
        (Decimal("99999999999999999999999999999999999999.123456789"), p.NUMERIC),
    ],
)
def test_decode_binary_psycopg(value: object, oid: int) -> None:
    got_oid, raw = _psycopg_binary(value)
    assert got_oid == oid
    decoded = p.decode_param(raw, oid, 1)
    assert decoded == value and type(decoded) is type(value)
    if isinstance(value, Decimal):
        assert str(decoded) == format(value, "f")  # scale preserved, not just numerically equal


def test_decode_binary_psycopg_timestamptz_offset() -> None:
    value = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    _, raw = _psycopg_binary(value)
    got = p.decode_param(raw, p.TIMESTAMPTZ, 1)
    assert got == value and isinstance(got, datetime) and got.utcoffset() == timedelta(0)


def test_decode_binary_other_types() -> None:
    assert p.decode_param(struct.pack("!f", 0.5), p.FLOAT4, 1) == 0.5
    assert p.decode_param("héllo".encode(), p.TEXT, 1) == "héllo"
    assert p.decode_param(b"x", p.VARCHAR, 1) == "x"
    assert p.decode_param(b'{"a": 1}', p.JSON, 1) == '{"a": 1}'
    assert p.decode_param(b'\x01{"a": 1}', p.JSONB, 1) == '{"a": 1}'
    assert p.decode_param(struct.pack("!I", 4000000000), p.OID, 1) == 4000000000
    assert p.decode_param(struct.pack("!Q", 0x16B3748), p.PG_LSN, 1) == 0x16B3748
    assert p.decode_param(struct.pack("!q", 2**63 - 1), p.TIMESTAMPTZ, 1) == "infinity"
    assert p.decode_param(struct.pack("!q", -(2**63)), p.TIMESTAMP, 1) == "-infinity"
    assert p.decode_param(struct.pack("!i", 2**31 - 1), p.DATE, 1) == "infinity"
    assert p.decode_param(struct.pack("!i", -(2**31)), p.DATE, 1) == "-infinity"
    assert p.decode_param(struct.pack("!hhHh", 0, 0, 0xC000, 0), p.NUMERIC, 1).is_nan()  # type: ignore[union-attr]
    assert p.decode_param(struct.pack("!hhHh", 0, 0, 0xF000, 0), p.NUMERIC, 1) == Decimal("-Infinity")
    # Digits hidden by dscale are truncated like numeric_recv does.
    assert str(p.decode_param(struct.pack("!hhHhhh", 2, 0, 0, 1, 1, 2345), p.NUMERIC, 1)) == "1.2"


def test_decode_text_and_null() -> None:
    assert p.decode_param(b"42", p.INT4, 0) == "42"
    assert p.decode_param(b"2026-01-01", 0, 0) == "2026-01-01"
    assert p.decode_param(None, p.INT4, 1) is None
    assert p.decode_param(None, 0, 0) is None
    assert violation(p.decode_param, b"\xc3", 0, 0).sqlstate == "22021"
    assert violation(p.decode_param, b"1", p.INT4, 2).sqlstate == "22023"


def test_decode_binary_errors() -> None:
    e = violation(p.decode_param, b"\0\0\0", p.INT4, 1, 3)
    assert (e.sqlstate, e.message) == ("22P03", "incorrect binary data format in bind parameter 3")
    for oid, raw in [
        (p.INT2, b"\0"),
        (p.INT8, b"\0" * 4),
        (p.BOOL, b""),
        (p.FLOAT8, b"\0" * 4),
        (p.DATE, b"\0" * 8),
        (p.TIMESTAMPTZ, b"\0" * 4),
        (p.UUID, b"\0" * 15),
    ]:
        assert violation(p.decode_param, raw, oid, 1).sqlstate == "22P03"
    assert violation(p.decode_param, struct.pack("!hhHh", 1, 0, 0, 0), p.NUMERIC, 1).sqlstate == "22P03"
    assert (
        violation(p.decode_param, struct.pack("!hhHhh", 1, 0, 0x1234, 0, 1), p.NUMERIC, 1).sqlstate == "22P03"
    )
    assert (
        violation(p.decode_param, struct.pack("!hhHhh", 1, 0, 0, 0, 10000), p.NUMERIC, 1).sqlstate == "22P03"
    )
    assert violation(p.decode_param, b"\x02{}", p.JSONB, 1).sqlstate == "22P03"
    assert violation(p.decode_param, struct.pack("!i", 2**30), p.DATE, 1).sqlstate == "22008"
    e = violation(p.decode_param, b"{1,2}", p.INT2_ARRAY, 1)
    assert e.sqlstate == "0A000" and "1005" in e.message


# ------------------------------------------------------------------------------------------------
# Result encoding


def test_encode_text_forms() -> None:
    t = p.encode_text
    assert t(True, p.BOOL) == b"t" and t(0, p.BOOL) == b"f" and t(1, p.BOOL) == b"t"
    assert t("false", p.BOOL) == b"f"
    assert t(42, p.INT8) == b"42" and t(3.0, p.INT4) == b"3" and t(True, p.INT4) == b"1"
    assert t(float("inf"), p.FLOAT8) == b"Infinity"
    assert t(float("-inf"), p.FLOAT8) == b"-Infinity"
    assert t(float("nan"), p.FLOAT8) == b"NaN"
    assert t(0.1 + 0.2, p.FLOAT8) == b"0.30000000000000004"
    assert t(1.0, p.FLOAT8) == b"1"
    assert t(1e15, p.FLOAT8) == b"1e+15" and t(1e14, p.FLOAT8) == b"100000000000000"
    assert t(1e-5, p.FLOAT8) == b"1e-05" and t(0.0001, p.FLOAT8) == b"0.0001"
    assert t(-0.0, p.FLOAT8) == b"-0"
    assert t(1e6, p.FLOAT4) == b"1e+06" and t(100000.0, p.FLOAT4) == b"100000"
    assert t(0.1 + 0.2, p.FLOAT4) == b"0.3"
    assert t(b"\x00\xde\xad", p.BYTEA) == b"\\x00dead"
    assert t(b"", p.BYTEA) == b"\\x"
    assert t(Decimal("1.50"), p.NUMERIC) == b"1.50"
    assert t(Decimal("1E+3"), p.NUMERIC) == b"1000"
    assert t(Decimal("NaN"), p.NUMERIC) == b"NaN"
    assert t(Decimal("-0.0"), p.NUMERIC) == b"0.0"
    assert t(2.5, p.NUMERIC) == b"2.5" and t(1e20, p.NUMERIC) == b"100000000000000000000"
    assert t(uuid.UUID(int=1), p.UUID) == b"00000000-0000-0000-0000-000000000001"
    assert t(date(2026, 11, 25), p.DATE) == b"2026-11-25"
    assert t("héllo", p.TEXT) == "héllo".encode()
    assert t(0x16B3748, p.PG_LSN) == b"0/16B3748"
    assert t({"a": [1, None]}, p.JSONB) == b'{"a": [1, null]}'
    assert t([1, None, 3], p.INT4_ARRAY) == b"{1,NULL,3}"
    assert t(["a", "b c", "", 'q"', "null"], p.TEXT_ARRAY) == b'{a,"b c","","q\\"","null"}'


def test_encode_text_timestamps() -> None:
    t = p.encode_text
    ts = datetime(2026, 11, 25, 9, 21, 37, 57495)
    assert t(ts, p.TIMESTAMP) == b"2026-11-25 09:21:37.057495"
    assert t(ts.replace(tzinfo=UTC), p.TIMESTAMPTZ) == b"2026-11-25 09:21:37.057495+00"
    assert t(datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC), p.TIMESTAMPTZ) == b"2026-01-02 03:04:05.5+00"
    assert t(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), p.TIMESTAMPTZ) == b"2026-01-02 03:04:05+00"
    assert t(datetime(2026, 1, 2, 3, 4, 5), p.TIMESTAMPTZ) == b"2026-01-02 03:04:05+00"
    ist = timezone(timedelta(hours=5, minutes=30))
    assert t(datetime(2026, 1, 2, 3, 4, 5, tzinfo=ist), p.TIMESTAMPTZ) == b"2026-01-02 03:04:05+05:30"
    neg = timezone(-timedelta(hours=8))
    assert t(datetime(2026, 1, 2, 3, 4, 5, tzinfo=neg), p.TIMESTAMPTZ) == b"2026-01-02 03:04:05-08"
    assert t(timedelta(days=1, hours=2), p.INTERVAL) == b"1 day 02:00:00"
    assert t(timedelta(days=3), p.INTERVAL) == b"3 days"
    assert t(timedelta(0), p.INTERVAL) == b"00:00:00"
    assert t(timedelta(hours=-1), p.INTERVAL) == b"-01:00:00"
    assert t(-timedelta(days=1, hours=2, microseconds=5), p.INTERVAL) == b"-1 days -02:00:00.000005"


def test_encode_text_loads_in_psycopg() -> None:
    adapt = pytest.importorskip("psycopg.adapt")
    from psycopg.pq import Format

    tx = adapt.Transformer()
    cases = [
        (datetime(2026, 11, 25, 9, 21, 37, 57495, tzinfo=UTC), p.TIMESTAMPTZ),
        (datetime(2026, 11, 25, 9, 21, 37), p.TIMESTAMP),
        (date(2026, 11, 25), p.DATE),
        (b"\x00\x01", p.BYTEA),
        (1.25, p.FLOAT8),
        (Decimal("-3.140"), p.NUMERIC),
        (True, p.BOOL),
        (timedelta(days=-2, hours=3, microseconds=7), p.INTERVAL),
    ]
    for value, oid in cases:
        loader = tx.get_loader(oid, Format.TEXT)
        assert loader.load(p.encode_text(value, oid)) == value, value


def test_encode_binary() -> None:
    b = p.encode_binary
    assert (
        b(1, p.INT2) == b"\0\x01"
        and b(-1, p.INT4) == b"\xff" * 4
        and b(2**40, p.INT8) == struct.pack("!q", 2**40)
    )
    assert b(True, p.BOOL) == b"\x01" and b(False, p.BOOL) == b"\x00" and b("t", p.BOOL) == b"\x01"
    assert b(1.5, p.FLOAT8) == struct.pack("!d", 1.5)
    assert b("héllo", p.TEXT) == "héllo".encode() and b(b"\x00\x01", p.BYTEA) == b"\x00\x01"
    assert b(date(2000, 1, 2), p.DATE) == struct.pack("!i", 1)
    assert b(datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC), p.TIMESTAMPTZ) == struct.pack("!q", 1_000_000)
    assert b("2000-01-01 00:00:00.000001", p.TIMESTAMP) == struct.pack("!q", 1)
    assert b(0x16B3748, p.PG_LSN) == struct.pack("!Q", 0x16B3748)
    e = violation(b, 40000, p.INT2)
    assert (e.sqlstate, e.message) == ("22003", "smallint out of range")
    e = violation(b, timedelta(1), p.INTERVAL)
    assert e.sqlstate == "0A000"


@pytest.mark.parametrize(
    "value",
    [
        Decimal("-123.4500"),
        Decimal("12345678.9"),
        Decimal("0.0001"),
        Decimal("1E+10"),
        Decimal("0"),
        Decimal("0.00"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("10000"),
        Decimal("-0.5"),
    ],
)
def test_encode_binary_numeric_matches_psycopg(value: Decimal) -> None:
    _, raw = _psycopg_binary(value)
    assert p.encode_binary(value, p.NUMERIC) == raw


def test_encode_binary_roundtrips_decode() -> None:
    for value, oid in [
        (uuid.UUID(int=99), p.UUID),
        (date(1999, 3, 4), p.DATE),
        (datetime(2030, 5, 6, 7, 8, 9, 10), p.TIMESTAMP),
        (datetime(1990, 1, 1, tzinfo=UTC), p.TIMESTAMPTZ),
        (-7, p.INT8),
        (Decimal("3.14159"), p.NUMERIC),
    ]:
        assert p.decode_param(p.encode_binary(value, oid), oid, 1) == value


# ------------------------------------------------------------------------------------------------
# LSN and time helpers


def test_lsn() -> None:
    assert p.format_lsn(0x16B3748) == "0/16B3748"
    assert p.format_lsn(5 << 32) == "5/0"
    assert p.parse_lsn("0/16B3748") == 0x16B3748
    assert p.parse_lsn("0/16b3748") == 0x16B3748
    assert p.parse_lsn("5/0") == 5 << 32
    assert p.parse_lsn("FFFFFFFF/FFFFFFFF") == 2**64 - 1
    for s in ("0/16B3748", "5/0", "0/0", "FFFFFFFF/FFFFFFFF"):
        assert p.format_lsn(p.parse_lsn(s)) == s
    for bad in ("", "5", "/5", "5/", "1/2/3", "123456789/0", "g/0", " 0/0", "0/0 "):
        with pytest.raises(ValueError):
            p.parse_lsn(bad)
    with pytest.raises(ValueError):
        p.format_lsn(-1)


def test_pg_epoch() -> None:
    assert p.pg_epoch_us(946684800.0) == 0
    assert p.pg_epoch_us(946684801.5) == 1_500_000
    assert p.pg_epoch_us_to_unix(1_500_000) == 946684801.5
    now = p.pg_epoch_us()
    assert now > 26 * 365 * 86400 * 1_000_000
    assert p.pg_us_to_datetime(0) == datetime(2000, 1, 1, tzinfo=UTC)


def test_import_is_light() -> None:
    import subprocess
    import sys
    from pathlib import Path

    heavy = ("asyncio", "email", "uuid", "decimal", "json")
    code = f"import sys, node.protocol; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert out.strip() == ""
