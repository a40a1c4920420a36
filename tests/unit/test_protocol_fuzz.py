"""Fuzzing the frontend-message decoders: any byte string either decodes or raises
ProtocolViolation — never another exception (issue 3 point 5; wire-protocol §1)."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node import protocol as P

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_protocol_errors(fn, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except P.ProtocolViolation:
        pass


@FAST
@given(st.binary(max_size=300))
def test_message_bodies(body: bytes) -> None:
    for fn in (P.parse_query, P.parse_parse, P.parse_bind, P.parse_describe, P.parse_execute, P.parse_close,
               P.parse_password, P.parse_sasl_initial, P.parse_copy_data):
        _only_protocol_errors(fn, body)


@FAST
@given(st.binary(max_size=300))
def test_startup_packets(body: bytes) -> None:
    _only_protocol_errors(P.parse_startup_packet, body)
    if len(body) >= 4:
        _only_protocol_errors(P.read_startup_length, body[:4])


@FAST
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_framer_any_chunking(chunks: list[bytes]) -> None:
    r = P.MessageReader(max_length=1 << 20)
    try:
        for ch in chunks:
            r.feed(ch)
            while r.next_message() is not None:
                pass
    except P.ProtocolViolation as e:
        assert e.sqlstate == "08P01"


@FAST
@given(st.binary(max_size=40), st.sampled_from([P.INT2, P.INT4, P.INT8, P.BOOL, P.FLOAT4, P.FLOAT8, P.BYTEA, P.TEXT,
                                                 P.DATE, P.TIMESTAMP, P.TIMESTAMPTZ, P.UUID, P.NUMERIC, P.JSONB, 0]),
       st.sampled_from([0, 1]))
def test_binary_and_text_parameters(value: bytes, oid: int, fmt: int) -> None:
    _only_protocol_errors(P.decode_param, value, oid, fmt)


@FAST
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_huge_lengths_are_refused_not_allocated(n: int) -> None:
    r = P.MessageReader(max_length=1 << 20)
    r.feed(b"Q" + struct.pack("!I", n))
    try:
        assert r.next_message() is None or n <= (1 << 20)
    except P.ProtocolViolation as e:
        assert e.sqlstate == "08P01"
