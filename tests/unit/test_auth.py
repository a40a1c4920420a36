"""Unit tests for node.auth: verifiers (known answers computed by PostgreSQL 15), SCRAM/MD5/cleartext
exchanges driven by an RFC 5802 test client and by real libpq (psycopg) over a loopback socket, and the
role DDL parser/planner against an in-memory SQLite table (error texts captured from PostgreSQL 15)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import socket
import sqlite3
import struct
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from node import auth as A
from node import protocol as P
from node.elog import PGError

# Computed by PostgreSQL 15 (SET password_encryption=...; CREATE ROLE ... PASSWORD ...; SELECT rolpassword).
PG_KAT1 = (  # kat1 / 'pencil'
    "SCRAM-SHA-256$4096:Ksv7ZLX/XoANxEb1eYMtCQ==$meh/16Ug7EGkfGkfb6pledORsPjEoPpO7puKT6M9Coo=:"
    "7d6y3eU29G4bOnp2VOaKb34DP1XJUSGwKGV9Dj8HOV8="
)
PG_KAT2 = (  # kat2 / 'I½ⅨÅ' (SASLprep-normalised by PostgreSQL)
    "SCRAM-SHA-256$4096:6VizOrwXCfVo1yK3bZ6nJg==$5DdpJuRJ7DdCFqrGkV8Y2r2LQSealOnC+zMw/vzpun4=:"
    "eNXg0zwXDclUicqF566uL+Cc22zmJZ0ZDGxYMdyTgjQ="
)
PG_KAT3 = "md57cb6b7a63166d288e59124b67198bff2"  # kat3 / 'pencil' with password_encryption=md5

VERIFIER_RE = re.compile(r"SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]{44}):([A-Za-z0-9+/=]{44})")


# --------------------------------------------------------------------------------------------------
# helpers: a small RFC 5802 client and message codecs


def auth_msg(wire: bytes) -> tuple[int, bytes]:
    """Decode an 'R' message: (auth code, payload)."""
    assert wire[:1] == b"R"
    (length,) = struct.unpack("!i", wire[1:5])
    assert length == len(wire) - 1
    (code,) = struct.unpack("!i", wire[5:9])
    return code, wire[9:]


def sasl_initial(data: bytes | None, mech: str = "SCRAM-SHA-256") -> bytes:
    n = -1 if data is None else len(data)
    return mech.encode() + b"\0" + struct.pack("!i", n) + (data or b"")


def pw_body(password: bytes) -> bytes:
    return password + b"\0"


class ScramClient:
    """Client side of SCRAM-SHA-256 written from RFC 5802/7677 (no channel binding, empty n=)."""

    def __init__(self, password: str, nonce: str | None = None) -> None:
        self.password = password
        self.nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.server_signature = b""

    def first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def final(self, server_first: bytes, extension: str = "") -> bytes:
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        assert attrs["r"].startswith(self.nonce) and len(attrs["r"]) > len(self.nonce)
        salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
        prepared = A.saslprep(self.password) or self.password.encode()
        salted = hashlib.pbkdf2_hmac("sha256", prepared, salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}{extension}"
        auth_message = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        assert server_final == b"v=" + base64.b64encode(self.server_signature)


def run_scram(ex: A.ScramExchange, client: ScramClient) -> bytes:
    code, mechs = auth_msg(ex.initial_message())
    assert (code, mechs) == (10, b"SCRAM-SHA-256\0\0")
    code, server_first = auth_msg(ex.handle_initial(sasl_initial(client.first())))
    assert code == 11
    code, server_final = auth_msg(ex.handle_final(client.final(server_first)))
    assert code == 12
    client.verify(server_final)
    return server_first


def auth_failed(fn: Callable[[], object]) -> A.AuthFailed:
    with pytest.raises(A.AuthFailed) as ei:
        fn()
    assert ei.value.severity == "FATAL"
    return ei.value


def pg_error(fn: Callable[[], object]) -> PGError:
    with pytest.raises(PGError) as ei:
        fn()
    return ei.value


# --------------------------------------------------------------------------------------------------
# verifiers


def test_scram_verifier_format_and_randomness() -> None:
    v1, v2 = A.scram_verifier("secret"), A.scram_verifier("secret")
    m = VERIFIER_RE.fullmatch(v1)
    assert m and m.group(1) == "4096" and len(base64.b64decode(m.group(2))) == 16
    assert v1 != v2  # random salt
    assert A.password_type(v1) == "scram-sha-256"
    v3 = A.scram_verifier("secret", iterations=10, salt=b"0123456789abcdef")
    assert v3.startswith("SCRAM-SHA-256$10:MDEyMzQ1Njc4OWFiY2RlZg==$")
    secret = A.parse_scram_verifier(v3)
    assert secret is not None and secret.iterations == 10 and secret.salt == b"0123456789abcdef"


def test_known_answers_from_postgresql() -> None:
    for verifier, password in ((PG_KAT1, "pencil"), (PG_KAT2, "I½ⅨÅ")):
        secret = A.parse_scram_verifier(verifier)
        assert secret is not None
        assert A.scram_verifier(password, iterations=secret.iterations, salt=secret.salt) == verifier
    assert A.md5_verifier("pencil", "kat3") == PG_KAT3
    assert A.password_type(PG_KAT3) == "md5"


def test_saslprep_rules() -> None:
    assert A.saslprep("plain ascii\x07") == b"plain ascii\x07"  # pure ASCII: untouched
    assert A.saslprep("I½ⅨÅ") == "I1\u20442IXÅ".encode()  # NFKC
    assert A.saslprep("a\u00a0b\u00adc\u00e9") == "a bcé".encode()  # C.1.2 → space, B.1 → nothing
    assert A.saslprep(b"\xff\xfe") is None  # invalid UTF-8: raw bytes are used
    assert A.saslprep("é\x07") is None  # ASCII control in a non-ASCII string: prohibited
    assert A.saslprep("é\ue000") is None  # private use
    assert A.saslprep("\u05d0a\u05d0") is None  # RandALCat mixed with LCat
    assert A.saslprep("\u05d0\u05d1") == "\u05d0\u05d1".encode()
    assert A.saslprep("\u00ad") is None  # maps to empty
    # A prohibited password is hashed raw, and the exchange still works with the same rule on both sides.
    v = A.scram_verifier(b"\xff\xfe")
    assert A.check_cleartext(v, b"\xff\xfe", "u") and not A.check_cleartext(v, b"\xff", "u")
    with pytest.raises(PGError, match="password too long"):
        A.saslprep("x" * 1025)


def test_encrypt_password_keeps_verifiers() -> None:
    assert A.encrypt_password(PG_KAT1, "anyone", "md5") == PG_KAT1
    assert A.encrypt_password(PG_KAT3, "anyone", "scram-sha-256") == PG_KAT3
    assert A.encrypt_password("pencil", "kat3", "md5") == PG_KAT3
    assert A.password_type("md5abc") == "plaintext"
    stored = A.encrypt_password("md5abc", "u", "scram-sha-256")
    assert VERIFIER_RE.fullmatch(stored) and A.check_cleartext(stored, "md5abc", "u")
    assert A.password_type("MD57CB6B7A63166D288E59124B67198BFF2") == "plaintext"  # lower-case hex only
    with pytest.raises(ValueError):
        A.encrypt_password("x", "u", "plaintext")


def test_parse_scram_verifier_rejects_bad_secrets() -> None:
    good = PG_KAT1
    assert A.parse_scram_verifier(good) is not None
    bad = [
        good.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
        good.replace("$4096:", "$4x96:"),
        good.replace("$4096:", "$0:"),
        good.replace("Ksv7ZLX/XoANxEb1eYMtCQ==", "Ksv7ZLX/XoANxEb1eYMtCQ=!"),
        good[: good.rindex(":")],
        good[:-4],  # ServerKey no longer 32 bytes / bad padding
        "SCRAM-SHA-256$4096:c2FsdA==$",
    ]
    for b in bad:
        assert A.parse_scram_verifier(b) is None, b
        assert A.password_type(b) == "plaintext"


def test_check_cleartext_both_kinds() -> None:
    assert A.check_cleartext(PG_KAT1, "pencil", "kat1")
    assert not A.check_cleartext(PG_KAT1, "Pencil", "kat1")
    assert A.check_cleartext(PG_KAT2, "I½ⅨÅ", "kat2")
    assert A.check_cleartext(PG_KAT2, "I1\u20442IXÅ", "kat2")  # same after SASLprep
    assert A.check_cleartext(PG_KAT3, "pencil", "kat3")
    assert not A.check_cleartext(PG_KAT3, "pencil", "other")  # the role name is the MD5 salt
    assert not A.check_cleartext("plaintext-in-catalog", "plaintext-in-catalog", "u")


@pytest.mark.parametrize(
    ("hba", "verifier", "encryption", "expected"),
    [
        ("scram-sha-256", PG_KAT3, "md5", "scram-sha-256"),
        ("md5", PG_KAT3, "scram-sha-256", "md5"),
        ("md5", PG_KAT1, "md5", "scram-sha-256"),  # SCRAM secret: md5 line falls back to SCRAM
        ("md5", "plaintext", "md5", "scram-sha-256"),
        ("md5", None, "md5", "md5"),  # mock exchange blends in with password_encryption
        ("md5", None, "scram-sha-256", "scram-sha-256"),
        ("password", PG_KAT1, "scram-sha-256", "password"),
    ],
)
def test_challenge_method(hba: str, verifier: str | None, encryption: str, expected: str) -> None:
    assert A.challenge_method(hba, verifier, encryption) == expected
    ex = A.start_exchange(hba, verifier, "u", password_encryption=encryption)
    kind = {"scram-sha-256": A.ScramExchange, "md5": A.Md5Exchange, "password": A.PasswordExchange}[expected]
    assert type(ex) is kind
    assert A.md5_possible(verifier) == (verifier == PG_KAT3)


# --------------------------------------------------------------------------------------------------
# SCRAM exchange


def test_scram_exchange_against_postgresql_verifier() -> None:
    ex = A.ScramExchange(PG_KAT1, "kat1")
    client = ScramClient("pencil")
    server_first = run_scram(ex, client)
    assert ex.succeeded and ex.done and not ex.doomed
    assert re.fullmatch(rf"r={re.escape(client.nonce)}[A-Za-z0-9+/]{{24}},s=Ksv7ZLX/XoANxEb1eYMtCQ==,i=4096",
                        server_first.decode())  # fmt: skip
    with pytest.raises(A.AuthFailed, match="invalid SCRAM exchange state"):
        ex.handle_final(b"c=biws,r=x,p=x")


def test_scram_exchange_with_own_verifier_and_unicode_password() -> None:
    v = A.scram_verifier("I½ⅨÅ", iterations=64)
    ex = A.ScramExchange(v, "u")
    run_scram(ex, ScramClient("I1\u20442IXÅ"))  # the client sends the SASLprep'd form: same keys
    assert ex.succeeded


def test_scram_uniform_handle_and_missing_initial_response() -> None:
    ex = A.ScramExchange(PG_KAT1, "kat1")
    client = ScramClient("pencil")
    ex.expect_message(b"p")
    code, data = auth_msg(ex.handle(sasl_initial(None)))
    assert (code, data) == (11, b"") and not ex.done  # empty challenge; client-first comes as SASLResponse
    code, server_first = auth_msg(ex.handle(client.first()))
    assert code == 11
    code, server_final = auth_msg(ex.handle(client.final(server_first)))
    assert code == 12 and ex.done and ex.succeeded
    client.verify(server_final)


def test_scram_wrong_password() -> None:
    ex = A.ScramExchange(PG_KAT1, "kat1", log_detail=None)
    client = ScramClient("wrong")
    _, server_first = auth_msg(ex.handle_initial(sasl_initial(client.first())))
    err = auth_failed(lambda: ex.handle_final(client.final(server_first)))
    assert (err.sqlstate, err.message) == ("28P01", 'password authentication failed for user "kat1"')
    assert err.detail is None and err.log_detail is None  # PostgreSQL logs only the hba line for this
    assert ex.done and not ex.succeeded


def test_scram_unknown_user_runs_mock_exchange() -> None:
    verifier, detail = A.role_password(None, "ghost")
    assert verifier is None and detail == 'Role "ghost" does not exist.'
    ex = A.ScramExchange(verifier, "ghost", log_detail=detail, mock_nonce=b"cluster-secret")
    real = A.ScramExchange(PG_KAT1, "kat1")
    assert ex.initial_message() == real.initial_message()
    client = ScramClient("pencil")
    _, first = auth_msg(ex.handle_initial(sasl_initial(client.first())))
    salt = dict(kv.split("=", 1) for kv in first.decode().split(","))["s"]
    assert base64.b64decode(salt) == A.mock_salt("ghost", b"cluster-secret")
    assert len(base64.b64decode(salt)) == 16 and re.fullmatch(r"r=\S+,s=\S+,i=4096", first.decode())
    err = auth_failed(lambda: ex.handle_final(client.final(first)))
    assert (err.sqlstate, err.message) == ("28P01", 'password authentication failed for user "ghost"')
    assert err.log_detail == 'Role "ghost" does not exist.'
    # deterministic per user name, different across names and cluster nonces
    assert A.mock_salt("ghost", b"cluster-secret") == A.mock_salt("ghost", b"cluster-secret")
    assert A.mock_salt("ghost", b"cluster-secret") != A.mock_salt("ghost2", b"cluster-secret")
    assert A.mock_salt("ghost", b"cluster-secret") != A.mock_salt("ghost", b"")


def test_doomed_exchange_fails_even_with_a_valid_proof() -> None:
    ex = A.ScramExchange(PG_KAT1, "kat1", log_detail="forced")
    ex.doomed = True
    client = ScramClient("pencil")
    _, first = auth_msg(ex.handle_initial(sasl_initial(client.first())))
    err = auth_failed(lambda: ex.handle_final(client.final(first)))
    assert err.sqlstate == "28P01" and err.log_detail == "forced" and not ex.succeeded


def test_scram_with_md5_verifier_is_doomed() -> None:
    ex = A.ScramExchange(PG_KAT3, "kat3")
    assert ex.doomed
    client = ScramClient("pencil")
    _, first = auth_msg(ex.handle_initial(sasl_initial(client.first())))
    err = auth_failed(lambda: ex.handle_final(client.final(first)))
    assert err.sqlstate == "28P01" and err.log_detail == 'User "kat3" does not have a valid SCRAM secret.'


def test_scram_no_password_and_expired() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    row = A.RoleRow("r", False, True, None, None)
    assert A.role_password(row, "r", now) == (None, 'User "r" has no password assigned.')
    row = A.RoleRow("r", False, True, PG_KAT1, "2029-12-31 23:59:59+00")
    assert A.role_password(row, "r", now) == (None, 'User "r" has an expired password.')
    for until in ("2030-01-01 00:00:01+00", "infinity", None):
        row = A.RoleRow("r", False, True, PG_KAT1, until)
        assert A.role_password(row, "r", now) == (PG_KAT1, None)
    row = A.RoleRow("r", False, True, PG_KAT1, "-infinity")
    assert A.role_password(row, "r", now)[0] is None


MALFORMED = "malformed SCRAM message"


@pytest.mark.parametrize(
    ("payload", "sqlstate", "message", "detail"),
    [
        (b"", "08P01", MALFORMED, "The message is empty."),
        (b"n,,n=,r=ab\0c", "08P01", MALFORMED, "Message length does not match input length."),
        (b"x,,n=,r=abc", "08P01", MALFORMED, "Unexpected channel-binding flag \"'x'\"."),
        (b"\x80,,n=,r=abc", "08P01", MALFORMED, 'Unexpected channel-binding flag "0x80".'),
        (b"p=tls-server-end-point,,n=,r=abc", "08P01", MALFORMED,
         "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel "
         "binding data."),
        (b"nx,n=,r=abc", "08P01", MALFORMED, "Comma expected, but found character \"'x'\"."),
        (b"n", "08P01", MALFORMED, 'Comma expected, but found character "0x00".'),
        (b"n,a=bob,n=,r=abc", "0A000", "client uses authorization identity, but it is not supported", None),
        (b"n,x,n=,r=abc", "08P01", MALFORMED, "Unexpected attribute \"'x'\" in client-first-message."),
        (b"n,,m=ext,n=,r=abc", "0A000", "client requires an unsupported SCRAM extension", None),
        (b"n,,r=abc", "08P01", MALFORMED, "Expected attribute \"n\" but found \"'r'\"."),
        (b"n,,n=", "08P01", MALFORMED, 'Expected attribute "r" but found "0x00".'),
        (b"n,,n=,rabc", "08P01", MALFORMED, 'Expected character "=" for attribute "r".'),
        (b"n,,n=,r=ab\x01c", "08P01", "non-printable characters in SCRAM nonce", None),
        (b"n,,n=,r=abc,1=x", "08P01", MALFORMED, "Attribute expected, but found invalid character \"'1'\"."),
        (b"n,,n=,r=abc,x", "08P01", MALFORMED, 'Expected character "=" for attribute "x".'),
    ],
)  # fmt: skip
def test_scram_malformed_client_first(payload: bytes, sqlstate: str, message: str, detail: str | None) -> None:
    for verifier in (PG_KAT1, None):  # same errors whether or not the role exists
        ex = A.ScramExchange(verifier, "u")
        err = auth_failed(lambda ex=ex: ex.handle_initial(sasl_initial(payload)))  # type: ignore[misc]
        assert (err.sqlstate, err.message, err.detail) == (sqlstate, message, detail)
        assert ex.done and not ex.succeeded


def test_scram_client_first_extensions_are_ignored() -> None:
    ex = A.ScramExchange(PG_KAT1, "kat1")
    _, first = auth_msg(ex.handle_initial(sasl_initial(b"y,,n=someone,r=abc,x=ext")))
    assert first.startswith(b"r=abc")


def _after_first(verifier: str | None = PG_KAT1) -> tuple[A.ScramExchange, ScramClient, bytes]:
    ex = A.ScramExchange(verifier, "kat1")
    client = ScramClient("pencil")
    _, first = auth_msg(ex.handle_initial(sasl_initial(client.first())))
    return ex, client, first


def test_scram_malformed_client_final() -> None:
    def final_error(mutate: Callable[[bytes, bytes], bytes]) -> A.AuthFailed:
        ex, client, first = _after_first()
        return auth_failed(lambda: ex.handle_final(mutate(client.final(first), first)))

    e = final_error(lambda f, _s: f.replace(b"c=biws", b"c=eSws"))
    assert (e.sqlstate, e.message) == ("08P01", "unexpected SCRAM channel-binding attribute in client-final-message")
    e = final_error(lambda f, s: f.replace(s[2 : s.index(b",")], s[2 : s.index(b",")] + b"x"))
    assert (e.sqlstate, e.message, e.detail) == ("08P01", "invalid SCRAM response", "Nonce does not match.")
    e = final_error(lambda f, _s: f[: f.index(b",p=")] + b",p=c2hvcnQ=")
    assert (e.message, e.detail) == (MALFORMED, "Malformed proof in client-final-message.")
    e = final_error(lambda f, _s: f[: f.index(b",p=")] + b",p=!!!")
    assert e.detail == "Malformed proof in client-final-message."
    e = final_error(lambda f, _s: f + b",x=1")
    assert e.detail == "Garbage found at the end of client-final-message."
    e = final_error(lambda f, _s: f[: f.index(b",p=")])
    assert e.detail == "Attribute expected, but found end of string."
    e = final_error(lambda f, _s: f[f.index(b",") + 1 :])
    assert e.detail == 'Expected attribute "c" but found "\'r\'".'
    # an extension between the nonce and the proof is ignored but stays part of the signed message
    ex, client, first = _after_first()
    code, server_final = auth_msg(ex.handle_final(client.final(first, extension=",x=ext")))
    assert code == 12
    client.verify(server_final)


def test_scram_invalid_mechanism_and_bad_framing() -> None:
    ex = A.ScramExchange(PG_KAT1, "kat1")
    err = auth_failed(lambda: ex.handle_initial(sasl_initial(b"n,,n=,r=abc", mech="SCRAM-SHA-256-PLUS")))
    assert (err.sqlstate, err.message) == ("08P01", "client selected an invalid SASL authentication mechanism")
    ex = A.ScramExchange(PG_KAT1, "kat1")
    err = auth_failed(lambda: ex.handle_initial(b"MD5\0\0\0"))  # bad mechanism wins over short message
    assert err.message == "client selected an invalid SASL authentication mechanism"
    ex = A.ScramExchange(PG_KAT1, "kat1")
    err = auth_failed(lambda: ex.handle_initial(b"SCRAM-SHA-256\0\0\0\0\x09abc"))
    assert (err.sqlstate, err.message) == ("08P01", "insufficient data left in message")
    err = auth_failed(lambda: A.ScramExchange(None, "u").expect_message(b"Q"))
    assert (err.sqlstate, err.message) == ("08P01", "expected SASL response, got message type 81")


# --------------------------------------------------------------------------------------------------
# MD5 and cleartext


def md5_response(password: str, user: str, salt: bytes) -> bytes:
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode()


def test_md5_exchange() -> None:
    ex = A.Md5Exchange(PG_KAT3, "kat3")
    code, salt = auth_msg(ex.initial_message())
    assert code == 5 and len(salt) == 4 and salt == ex.salt
    ex.handle_password(pw_body(md5_response("pencil", "kat3", salt)))
    assert ex.succeeded and ex.done
    assert len({A.Md5Exchange(None, "x").salt for _ in range(8)}) > 1  # random per connection

    ex = A.Md5Exchange(PG_KAT3, "kat3", salt=b"abcd")
    err = auth_failed(lambda: ex.handle_password(pw_body(md5_response("wrong", "kat3", b"abcd"))))
    assert (err.sqlstate, err.message) == ("28P01", 'password authentication failed for user "kat3"')
    assert err.log_detail == 'Password does not match for user "kat3".' and not ex.succeeded

    ex = A.Md5Exchange(PG_KAT1, "kat1", salt=b"abcd")
    err = auth_failed(lambda: ex.handle(pw_body(md5_response("pencil", "kat1", b"abcd"))))
    assert err.log_detail == 'User "kat1" has a password that cannot be used with MD5 authentication.'

    ex = A.Md5Exchange(None, "ghost", log_detail='Role "ghost" does not exist.')
    err = auth_failed(lambda: ex.handle_password(pw_body(md5_response("x", "ghost", ex.salt))))
    assert err.sqlstate == "28P01" and err.log_detail == 'Role "ghost" does not exist.'

    err = auth_failed(lambda: A.Md5Exchange(PG_KAT3, "kat3").handle_password(b"\0"))
    assert (err.sqlstate, err.message) == ("28P01", "empty password returned by client")
    err = auth_failed(lambda: A.Md5Exchange(PG_KAT3, "kat3").handle_password(b"ab\0c\0"))
    assert (err.sqlstate, err.message) == ("08P01", "invalid password packet size")
    err = auth_failed(lambda: A.Md5Exchange(PG_KAT3, "kat3").expect_message(b"X"))
    assert err.message == "expected password response, got message type 88"


def test_cleartext_exchange() -> None:
    for verifier, user in ((PG_KAT1, "kat1"), (PG_KAT3, "kat3")):
        ex = A.PasswordExchange(verifier, user)
        assert auth_msg(ex.initial_message()) == (3, b"")
        assert ex.handle(pw_body(b"pencil")) == b"" and ex.succeeded and ex.done
        err = auth_failed(lambda v=verifier, u=user: A.PasswordExchange(v, u).handle_password(pw_body(b"nope")))  # type: ignore[misc]
        assert err.sqlstate == "28P01" and err.log_detail == f'Password does not match for user "{user}".'
    err = auth_failed(lambda: A.PasswordExchange("plain", "p").handle_password(pw_body(b"plain")))
    assert err.log_detail == 'Password of user "p" is in unrecognized format.'
    err = auth_failed(lambda: A.PasswordExchange(None, "g", log_detail="why").handle_password(pw_body(b"x")))
    assert err.log_detail == "why"


def test_hba_log_detail() -> None:
    line = 'Connection matched pg_hba.conf line 3: "local all all md5"'
    assert A.hba_log_detail(None, 3, "local all all md5") == line
    assert A.hba_log_detail('Role "x" does not exist.', 3, "local all all md5") == f'Role "x" does not exist.\n{line}'


def test_check_login() -> None:
    A.check_login(A.RoleRow("a", False, True, None, None), "a")
    with pytest.raises(PGError, match='role "a" is not permitted to log in') as ei:
        A.check_login(A.RoleRow("a", False, False, None, None), "a")
    assert ei.value.sqlstate == "28000" and ei.value.severity == "FATAL"
    with pytest.raises(PGError, match='role "b" does not exist'):
        A.check_login(None, "b")


# --------------------------------------------------------------------------------------------------
# real libpq client (psycopg) against the exchanges over a loopback socket


def _serve_one(srv: socket.socket, make: Callable[[str], A.Exchange], result: dict[str, object]) -> None:
    conn, _ = srv.accept()
    with conn, conn.makefile("rb") as f:

        def read_exact(n: int) -> bytes:
            data = f.read(n)
            assert len(data) == n
            return data

        (length,) = struct.unpack("!i", read_exact(4))
        pkt = P.parse_startup_packet(read_exact(length - 4))
        ex = make(pkt.user)
        conn.sendall(ex.initial_message())
        try:
            while not ex.done:
                mtype = read_exact(1)
                (mlen,) = struct.unpack("!i", read_exact(4))
                assert mlen - 4 <= ex.max_message_length
                ex.expect_message(mtype)
                out = ex.handle(read_exact(mlen - 4))
                if out:
                    conn.sendall(out)
        except A.AuthFailed as err:
            result["error"] = err
            conn.sendall(P.error_response(P.ErrorFields("FATAL", err.sqlstate, err.message)))
            return
        result["ok"] = ex.succeeded
        conn.sendall(P.authentication_ok() + P.backend_key_data(1, 2) + P.ready_for_query("I"))
        f.read(1)  # Terminate


def _libpq_connect(make: Callable[[str], A.Exchange], user: str, password: str) -> dict[str, object]:
    psycopg = pytest.importorskip("psycopg")
    result: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(10)
        t = threading.Thread(target=_serve_one, args=(srv, make, result), daemon=True)
        t.start()
        port = srv.getsockname()[1]
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="postgres",
                                 sslmode="disable", connect_timeout=10):  # fmt: skip
                pass
        except psycopg.OperationalError as e:
            result["client_error"] = str(e)
        t.join(10)
    return result


@pytest.mark.parametrize("hba", ["scram-sha-256", "md5", "password"])
def test_libpq_client_methods(hba: str) -> None:
    store = {"kat1": PG_KAT1, "kat3": PG_KAT3}

    def make(user: str) -> A.Exchange:
        verifier, detail = A.role_password(None if user not in store else A.RoleRow(user, False, True, store[user],
                                                                                    None), user)  # fmt: skip
        return A.start_exchange(hba, verifier, user, log_detail=detail)

    for user in ("kat1", "kat3"):
        ok = _libpq_connect(make, user, "pencil")
        if hba == "scram-sha-256" and user == "kat3":  # an MD5 hash cannot do SCRAM: doomed, like PostgreSQL
            err = ok["error"]
            assert isinstance(err, A.AuthFailed)
            assert err.log_detail == 'User "kat3" does not have a valid SCRAM secret.'
        else:
            assert ok.get("ok") is True and "client_error" not in ok, ok
        bad = _libpq_connect(make, user, "wrong")
        err = bad["error"]
        assert isinstance(err, A.AuthFailed) and err.sqlstate == "28P01"
        assert f'password authentication failed for user "{user}"' in str(bad["client_error"])
    ghost = _libpq_connect(make, "ghost", "pencil")
    assert isinstance(ghost["error"], A.AuthFailed) and ghost["error"].log_detail == 'Role "ghost" does not exist.'


# --------------------------------------------------------------------------------------------------
# role DDL parsing


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE ROLE alice", dict(action="create", kind="role", names=("alice",), login=False, superuser=None)),
        ("create user Bob with password 'x' superuser",
         dict(names=("bob",), login=True, superuser=True, password_given=True, password="x")),
        ('CREATE ROLE "Mixed" LOGIN', dict(names=("Mixed",), login=True)),
        ('create role "AbC""d" login;;', dict(names=('AbC"d',), login=True)),
        ("CREATE ROLE a PASSWORD NULL", dict(password_given=True, password=None)),
        ("CREATE ROLE a ENCRYPTED PASSWORD 'p''q'", dict(password="p'q")),
        ("CREATE ROLE a PASSWORD E'a\\\\b\\n'", dict(password="a\\b\n")),
        ("CREATE ROLE a PASSWORD $$dol$$", dict(password="dol")),
        ("CREATE ROLE a PASSWORD $t$x$$y$t$", dict(password="x$$y")),
        ("create role q8 with login password 'x' /* c */ -- hi", dict(login=True, password="x")),
        ("CREATE ROLE a VALID UNTIL 'infinity' NOLOGIN", dict(valid_until="infinity", login=False)),
        ("CREATE ROLE a CONNECTION LIMIT -1 CREATEDB NOINHERIT", dict(connection_limit=-1)),
        ('CREATE ROLE a "login"', dict(login=True)),  # options are IDENTs: quoting is allowed
        ("CREATE GROUP g", dict(kind="group", login=False)),
        ("CREATE GROUP g LOGIN", dict(kind="group", login=True)),
        ("ALTER USER bob WITH PASSWORD 'new'", dict(action="alter", names=("bob",), password="new", login=None)),
        ("ALTER ROLE bob", dict(action="alter", password_given=False)),
        ("ALTER ROLE CURRENT_ROLE PASSWORD NULL", dict(special="CURRENT_ROLE", password_given=True)),
        ("ALTER ROLE bob RENAME TO Robert", dict(action="rename", names=("bob",), new_name="robert")),
        ("DROP ROLE a", dict(action="drop", names=("a",), if_exists=False)),
        ("DROP USER IF EXISTS a, \"B\"", dict(action="drop", names=("a", "B"), if_exists=True)),
        ("DROP GROUP q2, q1", dict(kind="group", names=("q2", "q1"))),
        ("DROP ROLE current_user", dict(special="CURRENT_USER")),
    ],
)  # fmt: skip
def test_parse_role_statements(sql: str, expected: dict[str, object]) -> None:
    spec = A.parse_create_role(sql)
    assert spec is not None
    for key, value in expected.items():
        assert getattr(spec, key) == value, key


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "CREATE TABLE role (x int)",
        "CREATE USER MAPPING FOR bob SERVER s",
        "DROP USER MAPPING IF EXISTS FOR bob SERVER s",
        "ALTER USER q1 SET work_mem = '1MB'",
        "ALTER ROLE ALL SET x = 1",
        "ALTER ROLE a IN DATABASE d SET x = 1",
        "create rolex",
        "SELECT 'unterminated",
    ],
)
def test_parse_not_a_role_statement(sql: str) -> None:
    assert A.parse_create_role(sql) is None


@pytest.mark.parametrize(
    ("sql", "sqlstate", "message", "position"),
    [
        ("CREATE ROLE", "42601", "syntax error at end of input", 12),
        ("CREATE ROLE x FOO", "42601", 'unrecognized role option "foo"', 15),
        ('CREATE ROLE x "LOGIN"', "42601", 'unrecognized role option "LOGIN"', 15),
        ("CREATE ROLE public", "42939", 'role name "public" is reserved', 13),
        ("CREATE ROLE none", "42939", 'role name "none" is reserved', 13),
        ("CREATE ROLE current_user", "42939", "CURRENT_USER cannot be used as a role name here", 13),
        ("CREATE ROLE select", "42601", 'syntax error at or near "select"', 13),
        ('CREATE ROLE ""', "42601", 'zero-length delimited identifier at or near """"', 13),
        ("CREATE ROLE x PASSWORD", "42601", "syntax error at end of input", 23),
        ("CREATE ROLE x WITH WITH", "42601", 'syntax error at or near "WITH"', 20),
        ("CREATE USER q5 E'x'", "42601", "syntax error at or near \"E'x'\"", 16),
        ("CREATE ROLE x ENCRYPTED PASSWORD NULL", "42601", 'syntax error at or near "NULL"', 34),
        ("ALTER ROLE q1 WITH RENAME TO q1b", "42601", 'syntax error at or near "RENAME"', 20),
        ("ALTER ROLE current_user RENAME TO x", "42939", "CURRENT_USER cannot be used as a role name here", 12),
        ("DROP ROLE", "42601", "syntax error at end of input", 10),
        ("DROP USER IF EXISTS", "42601", "syntax error at end of input", 20),
        ("CREATE ROLE x UNENCRYPTED PASSWORD 'a'", "0A000", "UNENCRYPTED PASSWORD is no longer supported", 15),
        ("CREATE ROLE x PASSWORD 'unterminated", "42601", "unterminated quoted string at or near \"'unterminated\"",
         24),
        ("CREATE ROLE x; SELECT 1", "42601", 'syntax error at or near "SELECT"', 16),
    ],
)  # fmt: skip
def test_parse_errors_match_postgresql(sql: str, sqlstate: str, message: str, position: int) -> None:
    err = pg_error(lambda: A.parse_create_role(sql))
    assert (err.sqlstate, err.message, err.position) == (sqlstate, message, position)


def test_unencrypted_hint_and_truncation_notice() -> None:
    err = pg_error(lambda: A.parse_create_role("CREATE ROLE x UNENCRYPTED PASSWORD 'a'"))
    assert err.hint == "Remove UNENCRYPTED to store the password in encrypted form instead."
    long = "a" * 74
    spec = A.parse_create_role(f"CREATE ROLE {long}")
    assert spec is not None and spec.names == ("a" * 63,)
    assert spec.notices == (("42622", f'identifier "{long}" will be truncated to "{"a" * 63}"'),)


# --------------------------------------------------------------------------------------------------
# role DDL planning against SQLite


class Catalog:
    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute(A.ROLE_TABLE_DDL)
        sql, params = A.bootstrap_role_sql("postgres")
        self.db.execute(sql, params)

    def lookup(self, name: str) -> A.RoleRow | None:
        return A.RoleRow.from_row(self.db.execute(A.SELECT_ROLE_SQL, (name,)).fetchone())

    def run(self, sql: str, *, user: str = "postgres", su: bool = True, enc: str = "scram-sha-256") -> A.RolePlan:
        spec = A.parse_create_role(sql)
        assert spec is not None
        plan = A.plan_role_statement(spec, self.lookup, current_user=user, is_superuser=su,
                                     password_encryption=enc, bootstrap_superuser="postgres",
                                     now=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
        for stmt, params in plan.statements:
            self.db.execute(stmt, params)
        return plan

    def error(self, sql: str, **kw: object) -> PGError:
        return pg_error(lambda: self.run(sql, **kw))  # type: ignore[arg-type]


def test_plan_create_alter_rename_drop() -> None:
    cat = Catalog()
    boot = cat.lookup("postgres")
    assert boot == A.RoleRow("postgres", True, True, None, None)
    plan = cat.run("CREATE USER alice PASSWORD 'pencil' VALID UNTIL '2030-01-02 03:04:05+02'")
    assert plan.tag == "CREATE ROLE" and plan.notices == ()
    alice = cat.lookup("alice")
    assert alice is not None and alice.rolcanlogin and not alice.rolsuper
    assert alice.rolvaliduntil == "2030-01-02 01:04:05+00"
    assert alice.rolpassword and A.check_cleartext(alice.rolpassword, "pencil", "alice")
    assert A.password_type(alice.rolpassword) == "scram-sha-256"

    cat.run("CREATE ROLE m PASSWORD 'pencil'", enc="md5")
    assert cat.lookup("m") == A.RoleRow("m", False, False, A.md5_verifier("pencil", "m"), None)
    cat.run(f"CREATE ROLE pre PASSWORD '{PG_KAT1}'", enc="md5")
    pre = cat.lookup("pre")
    assert pre is not None and pre.rolpassword == PG_KAT1

    plan = cat.run("ALTER ROLE alice NOLOGIN SUPERUSER VALID UNTIL 'infinity' PASSWORD NULL")
    assert plan.tag == "ALTER ROLE"
    assert cat.lookup("alice") == A.RoleRow("alice", True, False, None, "infinity")

    plan = cat.run("ALTER ROLE m RENAME TO m2")
    assert plan.notices == (("00000", "MD5 password cleared because of role rename"),)
    assert cat.lookup("m") is None and cat.lookup("m2") == A.RoleRow("m2", False, False, None, None)
    plan = cat.run("ALTER ROLE pre RENAME TO pre2")
    assert plan.notices == () and cat.lookup("pre2") is not None and cat.lookup("pre2").rolpassword == PG_KAT1  # type: ignore[union-attr]

    plan = cat.run("DROP ROLE IF EXISTS nosuch, m2, nosuch2")
    assert plan.tag == "DROP ROLE" and cat.lookup("m2") is None
    assert plan.notices == (("00000", 'role "nosuch" does not exist, skipping'),
                            ("00000", 'role "nosuch2" does not exist, skipping'))  # fmt: skip


def test_plan_empty_password_and_sysid_notices() -> None:
    cat = Catalog()
    plan = cat.run("CREATE ROLE x PASSWORD ''")
    assert plan.notices == (("00000", "empty string is not a valid password, clearing password"),)
    assert cat.lookup("x") == A.RoleRow("x", False, False, None, None)
    plan = cat.run(f"ALTER ROLE x PASSWORD '{A.md5_verifier('', 'x')}'")  # a verifier of '' is cleared too
    assert plan.notices == (("00000", "empty string is not a valid password, clearing password"),)
    plan = cat.run("CREATE ROLE y SYSID 5")
    assert plan.notices == (("00000", "SYSID can no longer be specified"),)


@pytest.mark.parametrize(
    ("sql", "kw", "sqlstate", "message"),
    [
        ("CREATE ROLE postgres", {}, "42710", 'role "postgres" already exists'),
        ("CREATE ROLE pg_x", {}, "42939", 'role name "pg_x" is reserved'),
        ("CREATE ROLE x LOGIN NOLOGIN", {}, "42601", "conflicting or redundant options"),
        ("CREATE ROLE x CONNECTION LIMIT -2", {}, "22023", "invalid connection limit: -2"),
        ("CREATE ROLE x VALID UNTIL 'bogus'", {}, "22007",
         'invalid input syntax for type timestamp with time zone: "bogus"'),
        ("CREATE ROLE x IN ROLE postgres", {}, "0A000", "role membership is not supported by pgbed"),
        ("CREATE ROLE n1", {"user": "lu", "su": False}, "42501", "permission denied to create role"),
        ("CREATE ROLE n1 SUPERUSER", {"user": "lu", "su": False}, "42501", "must be superuser to create superusers"),
        ("ALTER ROLE nosuch LOGIN", {}, "42704", 'role "nosuch" does not exist'),
        ("ALTER ROLE public PASSWORD 'x'", {}, "42704", 'role "public" does not exist'),
        ("ALTER ROLE lu LOGIN", {"user": "lu", "su": False}, "42501", "permission denied"),
        ("ALTER ROLE kat PASSWORD 'x'", {"user": "lu", "su": False}, "42501", "permission denied"),
        ("ALTER ROLE postgres PASSWORD 'x'", {"user": "lu", "su": False}, "42501",
         "must be superuser to alter superuser roles or change superuser attribute"),
        ("ALTER ROLE lu RENAME TO k", {"user": "lu", "su": False}, "0A000", "session user cannot be renamed"),
        ("ALTER ROLE kat RENAME TO k", {"user": "lu", "su": False}, "42501", "permission denied to rename role"),
        ("ALTER ROLE lu RENAME TO kat", {}, "42710", 'role "kat" already exists'),
        ("ALTER ROLE nosuch RENAME TO pg_x", {}, "42704", 'role "nosuch" does not exist'),
        ("ALTER ROLE lu RENAME TO pg_q", {}, "42939", 'role name "pg_q" is reserved'),
        ("DROP ROLE nosuch", {}, "42704", 'role "nosuch" does not exist'),
        ("DROP ROLE kat", {"user": "lu", "su": False}, "42501", "permission denied to drop role"),
        ("DROP ROLE current_user", {}, "22023", "cannot use special role specifier in DROP ROLE"),
        ("DROP ROLE public", {}, "22023", "cannot use special role specifier in DROP ROLE"),
        ("DROP ROLE lu, postgres", {}, "55006", "current user cannot be dropped"),
        ("DROP ROLE postgres", {"user": "su2"}, "2BP01",
         "cannot drop role postgres because it is required by the database system"),
    ],
)  # fmt: skip
def test_plan_errors_match_postgresql(sql: str, kw: dict[str, object], sqlstate: str, message: str) -> None:
    cat = Catalog()
    for setup in ("CREATE USER lu PASSWORD 'lu'", "CREATE ROLE kat", "CREATE ROLE su2 SUPERUSER LOGIN"):
        cat.run(setup)
    err = cat.error(sql, **kw)
    assert (err.sqlstate, err.message) == (sqlstate, message)
    if sqlstate == "42939":
        assert err.detail == 'Role names starting with "pg_" are reserved.'
    if message == "conflicting or redundant options":
        assert err.position == 21


def test_plan_non_superuser_changes_own_password_only() -> None:
    cat = Catalog()
    cat.run("CREATE USER lu PASSWORD 'old'")
    cat.run("ALTER ROLE current_user PASSWORD 'new'", user="lu", su=False)
    lu = cat.lookup("lu")
    assert lu is not None and lu.rolpassword and A.check_cleartext(lu.rolpassword, "new", "lu")
    cat.run("ALTER ROLE lu WITH")  # a superuser may run an empty ALTER: no statement
    assert cat.lookup("lu") == lu


def test_parse_valid_until_forms() -> None:
    now = datetime(2026, 11, 25, 11, 48, 50, 48504, tzinfo=UTC)
    assert A.parse_valid_until("2030-01-02T03:04:05.123456789Z") == "2030-01-02 03:04:05.123457+00"
    assert A.parse_valid_until("2030-01-02") == "2030-01-02 00:00:00+00"
    assert A.parse_valid_until("-infinity") == "-infinity"
    assert A.parse_valid_until("now", now) == "2026-11-25 11:48:50.048504+00"
    assert A.parse_valid_until("2030-01-02 03:04-0130") == "2030-01-02 04:34:00+00"
    with pytest.raises(PGError) as ei:
        A.parse_valid_until("2030-02-30")
    assert ei.value.sqlstate == "22008"
