"""node.replclient: libpq-style connection strings (conninfo_parse / conninfo_uri_parse) and quoting, and the
client side of password authentication (cleartext, MD5, SCRAM-SHA-256 with the server-signature check) run
against the server exchanges of node/auth.py over a socketpair, single-threaded: the server answers from the
client's wait callback, so nothing blocks and no network is used."""

from __future__ import annotations

import base64
import gc
import hashlib
import socket
import struct
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from node import auth, replclient
from node import protocol as P
from node.replclient import ReplClientError, ReplConnection, parse_conninfo, quote_conninfo_value

USER = "rep"
PASSWORD = "s3cret pw"
SALT = b"\x01\x02\x03\x04"


# ---- parse_conninfo --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host=primary port=5433 user=rep", {"host": "primary", "port": "5433", "user": "rep"}),
        ("  host = primary   port= 5433 user =rep  ", {"host": "primary", "port": "5433", "user": "rep"}),
        ("host=a\tport=1\nuser=u", {"host": "a", "port": "1", "user": "u"}),
        ("application_name='my standby'", {"application_name": "my standby"}),
        ("password='it\\'s' user=x", {"password": "it's", "user": "x"}),
        ("password='back\\\\slash'", {"password": "back\\slash"}),
        ("password='a\\b'", {"password": "ab"}),  # a backslash escapes any character
        ("password=no\\ space", {"password": "no space"}),
        ("password=a'b", {"password": "a'b"}),  # quotes only matter at the start of a value
        ("password=''", {"password": ""}),
        ("password= '' user=u", {"password": "", "user": "u"}),
        ("options='-c x=1'", {"options": "-c x=1"}),
        ("dbname=x=y", {"dbname": "x=y"}),
        ("host=a host=b", {"host": "b"}),  # the last one wins
        ("", {}),
        ("   ", {}),
    ],
)
def test_parse_conninfo(text: str, expected: dict[str, str]) -> None:
    assert parse_conninfo(text) == expected


def test_parse_conninfo_uri() -> None:
    assert parse_conninfo("postgresql://user:pw@host:5433/db?application_name=x") == {
        "host": "host", "port": "5433", "user": "user", "password": "pw", "dbname": "db", "application_name": "x",
    }  # fmt: skip
    assert parse_conninfo("postgres://host") == {"host": "host"}
    assert parse_conninfo("postgresql://u%40x:p%3Aw%2F@h/d%20b") == {
        "host": "h", "user": "u@x", "password": "p:w/", "dbname": "d b",
    }  # fmt: skip
    assert parse_conninfo("postgresql://[::1]:6543/") == {"host": "::1", "port": "6543"}
    assert parse_conninfo("postgresql://%2Fvar%2Frun%2Fpostgresql/db") == {
        "host": "/var/run/postgresql",
        "dbname": "db",
    }
    assert parse_conninfo("postgresql://h/?connect_timeout=3&application_name=a%20b") == {
        "host": "h", "connect_timeout": "3", "application_name": "a b",
    }  # fmt: skip


def test_parse_conninfo_uri_plus_is_literal() -> None:
    assert parse_conninfo("postgresql://h/db?application_name=a+b")["application_name"] == "a+b"


def test_parse_conninfo_missing_equals() -> None:
    with pytest.raises(ReplClientError) as ei:
        parse_conninfo("host")
    assert ei.value.message == 'missing "=" after "host" in connection info string'
    with pytest.raises(ReplClientError) as ei:
        parse_conninfo("host=a port 5432")
    assert ei.value.message == 'missing "=" after "port" in connection info string'


@pytest.mark.parametrize("text", ["host='abc", "password='it\\'s", "host=a password='", "password='x\\'"])
def test_parse_conninfo_unterminated_quote(text: str) -> None:
    with pytest.raises(ReplClientError) as ei:
        parse_conninfo(text)
    assert ei.value.message == "unterminated quoted string in connection info string"


@pytest.mark.parametrize(
    "value",
    ["plain", "with space", "it's", "back\\slash", "\\'", "'", "''", "", "x=y", "tab\there", " lead", "trail ",
     "a\\'b'c\\", "/var/run/postgresql", "ünïcode"],
)  # fmt: skip
def test_quote_conninfo_value_round_trips(value: str) -> None:
    quoted = quote_conninfo_value(value)
    assert parse_conninfo(f"password={quoted}") == {"password": value}
    assert parse_conninfo(f"host=h password={quoted} user=u") == {"host": "h", "password": value, "user": "u"}


def test_quote_conninfo_value_quotes_only_when_needed() -> None:
    assert quote_conninfo_value("primary-1.example:5432") == "primary-1.example:5432"
    assert quote_conninfo_value("a b") == "'a b'"
    assert quote_conninfo_value("it's") == "'it\\'s'"
    assert quote_conninfo_value("a\\b") == "'a\\\\b'"
    assert quote_conninfo_value("") == "''"


# ---- authentication against node/auth.py -----------------------------------------------------


class FakeServer:
    """The server end of a socketpair. `pump` is the client's wait callback: it reads what the client sent,
    feeds each message to the node.auth exchange and writes the answers (an ErrorResponse on AuthFailed)."""

    def __init__(self, sock: socket.socket, exchange: auth.Exchange | None,
                 rewrite: Callable[[bytes], bytes] | None = None) -> None:  # fmt: skip
        self.sock = sock
        self.exchange = exchange
        self.rewrite = rewrite or (lambda b: b)
        self.reader = P.MessageReader()
        self.received: list[tuple[bytes, bytes]] = []
        self.failure: auth.AuthFailed | None = None

    def start(self, first: bytes | None = None) -> None:
        assert self.exchange is not None or first is not None
        self.sock.sendall(first if first is not None else self.exchange.initial_message())  # type: ignore[union-attr]

    def pump(self, _client: socket.socket, _timeout: float) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        self.reader.feed(data)
        while (m := self.reader.next_message()) is not None:
            mtype, body = m
            self.received.append((mtype, body))
            assert self.exchange is not None
            try:
                self.exchange.expect_message(mtype)
                out = self.exchange.handle(body)
            except auth.AuthFailed as e:
                self.failure = e
                self.sock.sendall(P.error_response(P.ErrorFields("FATAL", e.sqlstate, e.message, e.detail)))
                return
            if out:
                self.sock.sendall(self.rewrite(out))
            if self.exchange.succeeded:
                self.sock.sendall(P.authentication_ok())


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[socket.socket, socket.socket]]:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def authenticate(pair: tuple[socket.socket, socket.socket], server_exchange: auth.Exchange | None, *,
                 password: str | None = PASSWORD, first: bytes | None = None,
                 rewrite: Callable[[bytes], bytes] | None = None) -> FakeServer:  # fmt: skip
    client_sock, server_sock = pair
    server = FakeServer(server_sock, server_exchange, rewrite)
    params = {"user": USER, "host": "127.0.0.1", "port": "1"}
    if password is not None:
        params["password"] = password
    conn = ReplConnection(params, wait=server.pump, connect_timeout=2.0)
    conn.sock = client_sock
    server.start(first)
    conn._authenticate(time.monotonic() + 2.0)
    return server


def test_trust_needs_no_password(pair: tuple[socket.socket, socket.socket]) -> None:
    server = authenticate(pair, None, password=None, first=P.authentication_ok())
    assert server.received == []


def test_cleartext_password(pair: tuple[socket.socket, socket.socket]) -> None:
    ex = auth.PasswordExchange(auth.encrypt_password(PASSWORD, USER), USER)
    server = authenticate(pair, ex)
    assert server.received == [(b"p", PASSWORD.encode() + b"\0")]
    assert ex.succeeded


def test_md5_response_and_server_check(pair: tuple[socket.socket, socket.socket]) -> None:
    ex = auth.Md5Exchange(auth.encrypt_password(PASSWORD, USER, "md5"), USER, salt=SALT)
    server = authenticate(pair, ex)
    inner = hashlib.md5((PASSWORD + USER).encode()).hexdigest()
    expected = "md5" + hashlib.md5(inner.encode() + SALT).hexdigest()
    assert server.received == [(b"p", expected.encode() + b"\0")]
    assert len(expected) == 35
    assert ex.succeeded


def test_md5_wrong_password_reports_the_server_error(pair: tuple[socket.socket, socket.socket]) -> None:
    ex = auth.Md5Exchange(auth.encrypt_password("other", USER, "md5"), USER, salt=SALT)
    with pytest.raises(ReplClientError) as ei:
        authenticate(pair, ex)
    assert ei.value.sqlstate == "28P01"
    assert ei.value.message == f'FATAL:  password authentication failed for user "{USER}"'
    assert not ex.succeeded


def test_scram_sha_256(pair: tuple[socket.socket, socket.socket]) -> None:
    ex = auth.start_exchange("scram-sha-256", auth.encrypt_password(PASSWORD, USER), USER)
    assert isinstance(ex, auth.ScramExchange)
    server = authenticate(pair, ex)
    assert ex.succeeded and server.failure is None
    (t1, initial), (t2, final) = server.received
    assert (t1, t2) == (b"p", b"p")
    mech, _, rest = initial.partition(b"\0")
    assert mech == b"SCRAM-SHA-256"
    first = rest[4:].decode()
    assert int.from_bytes(rest[:4], "big") == len(first)
    assert first.startswith("n,,n=,r=")
    client_nonce = first.removeprefix("n,,n=,r=")
    assert len(base64.b64decode(client_nonce)) == 18
    assert final.decode().startswith(f"c=biws,r={client_nonce}")
    assert ",p=" in final.decode()


def test_scram_via_md5_hba_line_with_scram_verifier(pair: tuple[socket.socket, socket.socket]) -> None:
    ex = auth.start_exchange("md5", auth.encrypt_password(PASSWORD, USER), USER)
    assert isinstance(ex, auth.ScramExchange)
    authenticate(pair, ex)
    assert ex.succeeded


def test_scram_wrong_password(pair: tuple[socket.socket, socket.socket]) -> None:
    ex = auth.ScramExchange(auth.encrypt_password("not it", USER), USER)
    with pytest.raises(ReplClientError) as ei:
        authenticate(pair, ex)
    assert ei.value.sqlstate == "28P01"
    assert ei.value.message == f'FATAL:  password authentication failed for user "{USER}"'
    assert not ex.succeeded


def test_scram_rejects_a_forged_server_signature(pair: tuple[socket.socket, socket.socket]) -> None:
    def forge(wire: bytes) -> bytes:
        code = int.from_bytes(wire[5:9], "big")
        if code != 12:
            return wire
        return P.authentication_sasl_final(b"v=" + base64.b64encode(bytes(32)))

    ex = auth.ScramExchange(auth.encrypt_password(PASSWORD, USER), USER)
    with pytest.raises(ReplClientError) as ei:
        authenticate(pair, ex, rewrite=forge)
    assert ei.value.message == "invalid SCRAM server signature"


def test_scram_rejects_a_server_nonce_not_extending_the_client_nonce(pair: tuple[socket.socket, socket.socket]) -> None:
    def swap_nonce(wire: bytes) -> bytes:
        if int.from_bytes(wire[5:9], "big") != 11:
            return wire
        attrs = wire[9:].decode().split(",")
        attrs[0] = "r=" + "A" * 24 + attrs[0][2:]
        return P.authentication_sasl_continue(",".join(attrs).encode())

    ex = auth.ScramExchange(auth.encrypt_password(PASSWORD, USER), USER)
    with pytest.raises(ReplClientError) as ei:
        authenticate(pair, ex, rewrite=swap_nonce)
    assert ei.value.message == "invalid SCRAM response (nonce mismatch)"


@pytest.mark.parametrize("password", ["\u2168", "pa\u00adss"])
def test_scram_applies_saslprep_like_libpq(pair: tuple[socket.socket, socket.socket], password: str) -> None:
    ex = auth.ScramExchange(auth.encrypt_password(password, USER), USER)
    authenticate(pair, ex, password=password)
    assert ex.succeeded


@pytest.mark.parametrize(
    "first",
    [P.authentication_md5(SALT), P.authentication_sasl(["SCRAM-SHA-256"]), P.authentication_cleartext()],
    ids=["md5", "sasl", "cleartext"],
)
def test_missing_password(pair: tuple[socket.socket, socket.socket], first: bytes) -> None:
    with pytest.raises(ReplClientError) as ei:
        authenticate(pair, None, password=None, first=first)
    assert ei.value.message == "fe_sendauth: no password supplied"
    with pytest.raises(BlockingIOError):
        pair[1].recv(1)  # the client sent nothing


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # see test_pgpass_file_is_closed
def test_password_from_pgpass(pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch,
                              tmp_path: Path) -> None:  # fmt: skip
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"# comment\nother:*:*:*:wrong\n127.0.0.1:1:*:{USER}:pw:with:colons\n")
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    ex = auth.PasswordExchange(auth.encrypt_password("pw:with:colons", USER), USER)
    server = authenticate(pair, ex, password=None)
    assert server.received == [(b"p", b"pw:with:colons\0")]
    assert ex.succeeded


def test_pgpass_file_is_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pgpass = tmp_path / "pgpass"
    pgpass.write_text("h:5432:*:u:pw\n")
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert replclient._pgpass_lookup("h", "5432", "u") == "pw"
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_sasl_without_scram_sha_256(pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(ReplClientError) as ei:
        authenticate(pair, None, first=P.authentication_sasl(["SCRAM-SHA-256-PLUS"]))
    assert ei.value.message == "none of the server's SASL authentication mechanisms are supported"


def test_unsupported_method_and_unexpected_message(pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(ReplClientError) as ei:
        authenticate(pair, None, first=b"R" + struct.pack("!II", 8, 7))  # AuthenticationGSS
    assert ei.value.message == "authentication method 7 not supported"


def test_error_before_authentication(pair: tuple[socket.socket, socket.socket]) -> None:
    err = P.error_response(P.ErrorFields("FATAL", "28000", "no pg_hba.conf entry for replication connection"))
    with pytest.raises(ReplClientError) as ei:
        authenticate(pair, None, first=err)
    assert ei.value.sqlstate == "28000"
    assert ei.value.fields["S"] == "FATAL"
    assert ei.value.message == "FATAL:  no pg_hba.conf entry for replication connection"


def test_timeout_when_the_server_says_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    client_sock, _ = pair
    conn = ReplConnection({"user": USER, "password": PASSWORD}, wait=lambda _s, t: time.sleep(min(t, 0.01)))
    conn.sock = client_sock
    with pytest.raises(ReplClientError) as ei:
        conn._authenticate(time.monotonic() + 0.05)
    assert ei.value.message == "timeout expired"
