"""Password authentication (PostgreSQL 15's auth.c, auth-sasl.c, auth-scram.c, crypt.c) and role DDL, sans-I/O.

What it does:
- Builds and parses the password verifiers PostgreSQL stores in ``pg_authid.rolpassword``:
  ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`` and ``md5<hex>``; ``encrypt_password`` stores an
  already-encrypted password as is, like crypt.c.
- Runs the server side of the three password methods as small state machines fed with raw message bodies:
  ``ScramExchange`` (SASL, mechanism SCRAM-SHA-256 only, never channel binding), ``Md5Exchange`` and
  ``PasswordExchange`` (cleartext). ``challenge_method`` picks MD5 or SCRAM for an ``md5`` hba line the way
  CheckPWChallengeAuth does. A missing role / missing or expired password runs a *mock* SCRAM exchange with a
  salt derived from the user name, failing at the end exactly like a wrong password.
- Failures raise ``AuthFailed`` (a FATAL ``PGError``) with PostgreSQL's SQLSTATE, message and detail; the reason
  for the server log only (``Role "x" does not exist.``, ...) is in ``log_detail``, never sent to the client.
- Parses ``CREATE ROLE|USER|GROUP``, ``ALTER ROLE|USER ... [WITH] options``, ``ALTER ROLE ... RENAME TO``,
  ``DROP ROLE|USER|GROUP`` (``parse_create_role``) and turns them into SQLite statements on the
  ``pgbed_authid`` table with PostgreSQL's checks, notices and errors (``plan_role_statement``).

What it deliberately does not do: touch sockets or the database (the caller fetches rows and executes the
returned SQL), channel binding / SCRAM-SHA-256-PLUS (no TLS), role membership (IN ROLE, ROLE, ADMIN, USER
lists: 0A000), per-role settings (``ALTER ROLE ... SET/RESET`` is left to the caller: ``None``), CREATEDB,
CREATEROLE, INHERIT, REPLICATION, BYPASSRLS and CONNECTION LIMIT are parsed and checked but not stored (the
table has no columns for them; a role never has CREATEROLE, so only superusers manage roles), the
check_password_hook, and PostgreSQL's general timestamp input (VALID UNTIL takes ISO 8601 forms and the
special words; a time without zone is read as UTC).

SASLprep (RFC 4013) follows pg_saslprep: pure-ASCII passwords are used unchanged, invalid UTF-8 or a
prohibited result means "use the raw bytes"; mapping (C.1.2 → space, B.1 → nothing), NFKC normalisation
(``unicodedata``, Unicode 14 like PostgreSQL 15), prohibited output C.1.2-C.9, unassigned A.1 and the bidi rule
use the RFC 3454 tables of the stdlib ``stringprep`` module. As in PostgreSQL the prohibited/bidi checks look at
the mapped string before normalisation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from node import protocol as P
from node.elog import PGError

# --------------------------------------------------------------------------------------------------
# Constants (scram-common.h, crypt.h, auth-sasl.c, auth.c)

SCRAM_SHA_256 = "SCRAM-SHA-256"
SCRAM_DEFAULT_ITERATIONS = 4096
SCRAM_DEFAULT_SALT_LEN = 16
SCRAM_RAW_NONCE_LEN = 18
SCRAM_KEY_LEN = 32
MD5_PASSWD_LEN = 35
MAX_PASSWORD_LENGTH = 1024  # pg_saslprep: longer → ERROR 54000 "password too long"
MAX_SASL_MESSAGE_LENGTH = 1024  # PG_MAX_SASL_MESSAGE_LENGTH (body limit for SASL 'p' messages)
MAX_PASSWORD_MESSAGE_LENGTH = 1000  # recv_password_packet's pq_getmessage limit
NAMEDATALEN = 64

PasswordType = Literal["md5", "scram-sha-256", "plaintext"]
Method = Literal["scram-sha-256", "md5", "password"]

_MD5_RE = re.compile(r"md5[0-9a-f]{32}")


class AuthFailed(PGError):
    """A FATAL authentication error; ``log_detail`` is the server-log-only DETAIL (errdetail_log)."""

    def __init__(
        self,
        sqlstate: str,
        message: str,
        detail: str | None = None,
        *,
        log_detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, sqlstate, severity="FATAL", detail=detail, hint=hint)
        self.log_detail = log_detail


def password_failed(username: str, log_detail: str | None = None) -> AuthFailed:
    """auth_failed() for the password methods: FATAL 28P01."""
    return AuthFailed("28P01", f'password authentication failed for user "{username}"', log_detail=log_detail)


def hba_log_detail(log_detail: str | None, line_number: int, raw_line: str) -> str:
    """The DETAIL auth_failed() logs (PG 15): the reason, newline, the matched pg_hba.conf line."""
    cdetail = f'Connection matched pg_hba.conf line {line_number}: "{raw_line}"'
    return f"{log_detail}\n{cdetail}" if log_detail else cdetail


def _from_violation(pv: P.ProtocolViolation) -> AuthFailed:
    return AuthFailed(pv.sqlstate, pv.message, hint=pv.hint)


# --------------------------------------------------------------------------------------------------
# SASLprep


def _pw_bytes(password: str | bytes) -> bytes:
    return password if isinstance(password, bytes) else password.encode("utf-8", "surrogateescape")


def _prohibited(ch: str) -> bool:
    return (
        stringprep.in_table_c12(ch)
        or stringprep.in_table_c21_c22(ch)
        or stringprep.in_table_c3(ch)
        or stringprep.in_table_c4(ch)
        or stringprep.in_table_c5(ch)
        or stringprep.in_table_c6(ch)
        or stringprep.in_table_c7(ch)
        or stringprep.in_table_c8(ch)
        or stringprep.in_table_c9(ch)
        or stringprep.in_table_a1(ch)
    )


def saslprep(password: str | bytes) -> bytes | None:
    """pg_saslprep: the prepared UTF-8 bytes, or None when PostgreSQL would use the raw bytes instead."""
    raw = _pw_bytes(password)
    if len(raw) > MAX_PASSWORD_LENGTH:
        raise PGError("password too long", "54000")
    if raw.isascii():
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None  # SASLPREP_INVALID_UTF8
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c))
    if not mapped or any(_prohibited(c) for c in mapped):
        return None  # SASLPREP_PROHIBITED (an empty result is prohibited too)
    if any(stringprep.in_table_d1(c) for c in mapped):
        if any(stringprep.in_table_d2(c) for c in mapped):
            return None
        if not (stringprep.in_table_d1(mapped[0]) and stringprep.in_table_d1(mapped[-1])):
            return None
    return unicodedata.normalize("NFKC", mapped).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# Verifiers


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _salted_password(password: str | bytes, salt: bytes, iterations: int) -> bytes:
    prepared = saslprep(password)
    pw = prepared if prepared is not None else _pw_bytes(password)
    return hashlib.pbkdf2_hmac("sha256", pw, salt, iterations)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _pg_b64decode(text: str) -> bytes | None:
    """pg_b64_decode: whitespace is skipped, anything else must be canonical padded base64."""
    cleaned = re.sub(r"[ \t\n\r]", "", text)
    try:
        return binascii.a2b_base64(cleaned.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def scram_verifier(
    password: str | bytes, *, iterations: int = SCRAM_DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """pg_be_scram_build_secret: ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``."""
    if iterations < 1:
        raise ValueError("iterations must be positive")
    if salt is None:
        salt = secrets.token_bytes(SCRAM_DEFAULT_SALT_LEN)
    salted = _salted_password(password, salt, iterations)
    stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
    server_key = _hmac(salted, b"Server Key")
    return f"{SCRAM_SHA_256}${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def md5_verifier(password: str | bytes, user: str) -> str:
    """pg_md5_encrypt(password, user): ``"md5" + md5(password || user)``."""
    return "md5" + hashlib.md5(_pw_bytes(password) + user.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ScramSecret:
    iterations: int
    salt_b64: str  # as stored; sent verbatim in server-first-message
    salt: bytes
    stored_key: bytes
    server_key: bytes


def _strtok(s: str, pos: int, delims: str) -> tuple[str | None, int]:
    while pos < len(s) and s[pos] in delims:
        pos += 1
    if pos >= len(s):
        return None, pos
    end = pos
    while end < len(s) and s[end] not in delims:
        end += 1
    return s[pos:end], min(end + 1, len(s))


def parse_scram_verifier(verifier: str) -> ScramSecret | None:
    """parse_scram_secret (strtok-based like PostgreSQL); None if it is not a valid SCRAM secret.

    Deviation: an iteration count below 1 or above 2**31-1 is treated as invalid (PostgreSQL accepts it).
    """
    scheme, pos = _strtok(verifier, 0, "$")
    iters, pos = _strtok(verifier, pos, ":")
    salt_str, pos = _strtok(verifier, pos, "$")
    stored_str, pos = _strtok(verifier, pos, ":")
    server_str = verifier[pos:] or None
    if scheme is None or iters is None or salt_str is None or stored_str is None or server_str is None:
        return None
    if scheme != SCRAM_SHA_256 or not re.fullmatch(r"[ \t\n\v\f\r]*[+-]?[0-9]+", iters):
        return None
    iterations = int(iters)
    if not 1 <= iterations <= 2**31 - 1:
        return None
    salt = _pg_b64decode(salt_str)
    stored = _pg_b64decode(stored_str)
    server = _pg_b64decode(server_str)
    if salt is None or stored is None or server is None:
        return None
    if len(stored) != SCRAM_KEY_LEN or len(server) != SCRAM_KEY_LEN:
        return None
    return ScramSecret(iterations, salt_str, salt, stored, server)


def password_type(verifier: str) -> PasswordType:
    """get_password_type."""
    if _MD5_RE.fullmatch(verifier):
        return "md5"
    if parse_scram_verifier(verifier) is not None:
        return "scram-sha-256"
    return "plaintext"


def md5_possible(verifier: str | None) -> bool:
    """True when an ``md5`` hba line really runs MD5 for this stored password (else it falls back to SCRAM)."""
    return verifier is not None and password_type(verifier) == "md5"


def encrypt_password(password: str, user: str, method: str = "scram-sha-256") -> str:
    """encrypt_password: verifier for ``password_encryption``; an already-encrypted password is kept as is."""
    if password_type(password) != "plaintext":
        return password
    if method == "md5":
        return md5_verifier(password, user)
    if method == "scram-sha-256":
        return scram_verifier(password)
    raise ValueError(f"cannot encrypt password to requested type {method!r}")


def _plain_verify(username: str, verifier: str, password: str | bytes) -> str | None:
    """plain_crypt_verify: None on success, else the log detail."""
    kind = password_type(verifier)
    if kind == "scram-sha-256":
        secret = parse_scram_verifier(verifier)
        assert secret is not None
        salted = _salted_password(password, secret.salt, secret.iterations)
        if hmac.compare_digest(_hmac(salted, b"Server Key"), secret.server_key):
            return None
        return f'Password does not match for user "{username}".'
    if kind == "md5":
        if hmac.compare_digest(md5_verifier(password, username).encode(), verifier.encode()):
            return None
        return f'Password does not match for user "{username}".'
    return f'Password of user "{username}" is in unrecognized format.'


def check_cleartext(verifier: str, password: str | bytes, username: str) -> bool:
    """Check a cleartext password against either verifier kind (MD5 needs the role name: it is the salt)."""
    return _plain_verify(username, verifier, password) is None


def challenge_method(hba_method: str, verifier: str | None, password_encryption: str = "scram-sha-256") -> Method:
    """CheckPWChallengeAuth: ``md5`` lines use MD5 only for an MD5 verifier, else SCRAM.

    Without a usable password the mock exchange uses the type ``password_encryption`` would have produced.
    """
    if hba_method == "password":
        return "password"
    kind = password_encryption if verifier is None else password_type(verifier)
    if hba_method == "md5" and kind == "md5":
        return "md5"
    return "scram-sha-256"


# --------------------------------------------------------------------------------------------------
# Exchanges


def _sanitize_char(c: str) -> str:
    o = ord(c)
    return f"'{c}'" if 0x21 <= o <= 0x7E else f"0x{o:02x}"


def _malformed(detail: str) -> AuthFailed:
    return AuthFailed("08P01", "malformed SCRAM message", detail)


class _Cursor:
    """A C-string cursor: reading past the end yields NUL, like the pointer walk in auth-scram.c."""

    __slots__ = ("pos", "s")

    def __init__(self, s: str) -> None:
        self.s = s
        self.pos = 0

    def peek(self) -> str:
        return self.s[self.pos] if self.pos < len(self.s) else "\0"

    def at_end(self) -> bool:
        return self.pos >= len(self.s)

    def _value(self) -> str:
        end = self.s.find(",", self.pos)
        if end < 0:
            value, self.pos = self.s[self.pos :], len(self.s)
        else:
            value, self.pos = self.s[self.pos : end], end + 1
        return value

    def attr_value(self, attr: str) -> str:
        """read_attr_value."""
        c = self.peek()
        if c != attr:
            raise _malformed(f'Expected attribute "{attr}" but found "{_sanitize_char(c)}".')
        self.pos += 1
        if self.peek() != "=":
            raise _malformed(f'Expected character "=" for attribute "{attr}".')
        self.pos += 1
        return self._value()

    def any_attr(self) -> tuple[str, str]:
        """read_any_attr."""
        attr = self.peek()
        if attr == "\0":
            raise _malformed("Attribute expected, but found end of string.")
        if not ("A" <= attr <= "Z" or "a" <= attr <= "z"):
            raise _malformed(f'Attribute expected, but found invalid character "{_sanitize_char(attr)}".')
        self.pos += 1
        if self.peek() != "=":
            raise _malformed(f'Expected character "=" for attribute "{attr}".')
        self.pos += 1
        return attr, self._value()


def mock_salt(username: str, mock_nonce: bytes = b"") -> bytes:
    """scram_mock_salt: sha256(username || cluster mock nonce), first 16 bytes."""
    return hashlib.sha256(username.encode("utf-8") + mock_nonce).digest()[:SCRAM_DEFAULT_SALT_LEN]


class ScramExchange:
    """Server side of SCRAM-SHA-256 (CheckSASLAuth + pg_be_scram_mech), one instance per connection.

    ``verifier`` is the stored password (None: role missing, no password or expired → mock exchange that
    fails at the end); ``log_detail`` is the reason for that, logged on failure. ``mock_nonce`` should be a
    per-cluster secret so the mock salt cannot be predicted from the user name alone.
    """

    max_message_length = MAX_SASL_MESSAGE_LENGTH
    expected_message = "SASL response"

    def __init__(
        self,
        verifier: str | None,
        username: str,
        *,
        log_detail: str | None = None,
        mock_nonce: bytes = b"",
    ) -> None:
        self.username = username
        self.log_detail = log_detail
        self.doomed = False
        self.succeeded = False
        self._state: Literal["init", "salt_sent", "finished", "failed"] = "init"
        self._initial_seen = False
        secret: ScramSecret | None = None
        if verifier is not None:
            # get_password_type already parses the secret, so "invalid SCRAM secret" cannot happen here.
            secret = parse_scram_verifier(verifier)
            if secret is None:  # an MD5 hash (or plaintext): no SCRAM possible
                self.log_detail = f'User "{username}" does not have a valid SCRAM secret.'
        if secret is None:
            salt = mock_salt(username, mock_nonce)
            secret = ScramSecret(SCRAM_DEFAULT_ITERATIONS, _b64(salt), salt, bytes(32), bytes(32))
            self.doomed = True
        self._secret = secret
        self._cbind_flag = "n"
        self._client_first_bare = ""
        self._client_nonce = ""
        self._server_nonce = ""
        self._server_first = ""

    @property
    def done(self) -> bool:
        return self._state in ("finished", "failed")

    def initial_message(self) -> bytes:
        """AuthenticationSASL listing SCRAM-SHA-256 only (no -PLUS: we never run TLS)."""
        return P.authentication_sasl([SCRAM_SHA_256])

    def expect_message(self, mtype: bytes) -> None:
        """The message-type check before each response ('p' expected)."""
        _expect(mtype, self.expected_message)

    def handle(self, body: bytes) -> bytes:
        """Feed the next 'p' message body (initial or not); returns the wire bytes to send."""
        return self.handle_response(body) if self._initial_seen else self.handle_initial(body)

    def handle_initial(self, body: bytes) -> bytes:
        """SASLInitialResponse → AuthenticationSASLContinue (server-first-message, or empty if no data)."""
        if self._initial_seen:
            raise RuntimeError("SASLInitialResponse already handled")
        self._initial_seen = True
        try:
            try:
                mech, data = P.parse_sasl_initial(body)
            except P.ProtocolViolation as pv:
                # mech->init() runs before the rest is read: a bad mechanism wins over a short message.
                nul = bytes(body).find(b"\0")
                if nul >= 0 and bytes(body)[:nul] != SCRAM_SHA_256.encode():
                    raise _invalid_mechanism() from None
                raise _from_violation(pv) from None
            if mech != SCRAM_SHA_256:
                raise _invalid_mechanism()
            if data is None:
                return P.authentication_sasl_continue(b"")  # empty challenge; client-first comes next
            return self._exchange(data)
        except AuthFailed:
            self._state = "failed"
            raise

    def handle_response(self, body: bytes) -> bytes:
        """SASLResponse: client-final-message → AuthenticationSASLFinal (or client-first after an empty challenge)."""
        if not self._initial_seen:
            raise RuntimeError("SASLResponse before SASLInitialResponse")
        try:
            return self._exchange(P.parse_sasl_response(body))
        except AuthFailed:
            self._state = "failed"
            raise

    handle_final = handle_response

    def _exchange(self, data: bytes) -> bytes:
        if len(data) == 0:
            raise _malformed("The message is empty.")
        if b"\0" in data:
            raise _malformed("Message length does not match input length.")
        text = data.decode("latin-1")  # one char per byte; SCRAM syntax is ASCII
        if self._state == "init":
            self._read_client_first(text)
            self._server_nonce = _b64(secrets.token_bytes(SCRAM_RAW_NONCE_LEN))
            s = self._secret
            self._server_first = f"r={self._client_nonce}{self._server_nonce},s={s.salt_b64},i={s.iterations}"
            self._state = "salt_sent"
            return P.authentication_sasl_continue(self._server_first.encode("latin-1"))
        if self._state == "salt_sent":
            without_proof, final_nonce, proof = self._read_client_final(text)
            if final_nonce != self._client_nonce + self._server_nonce:
                raise AuthFailed("08P01", "invalid SCRAM response", "Nonce does not match.")
            auth_message = ",".join((self._client_first_bare, self._server_first, without_proof)).encode("latin-1")
            # The proof is computed even when doomed, so timing does not tell whether the role exists.
            client_signature = _hmac(self._secret.stored_key, auth_message)
            client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
            proof_ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), self._secret.stored_key)
            if not proof_ok or self.doomed:
                self._state = "failed"
                raise password_failed(self.username, self.log_detail)
            self._state = "finished"
            self.succeeded = True
            signature = _b64(_hmac(self._secret.server_key, auth_message))
            return P.authentication_sasl_final(f"v={signature}".encode("ascii"))
        raise AuthFailed("XX000", "invalid SCRAM exchange state")

    def _read_client_first(self, text: str) -> None:
        cur = _Cursor(text)
        flag = cur.peek()
        self._cbind_flag = flag
        if flag in ("n", "y"):
            cur.pos += 1
            if cur.peek() != ",":
                raise _malformed(f'Comma expected, but found character "{_sanitize_char(cur.peek())}".')
            cur.pos += 1
        elif flag == "p":
            raise _malformed(
                "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes "
                "channel binding data."
            )
        else:
            raise _malformed(f'Unexpected channel-binding flag "{_sanitize_char(flag)}".')
        if cur.peek() == "a":
            raise AuthFailed("0A000", "client uses authorization identity, but it is not supported")
        if cur.peek() != ",":
            raise _malformed(f'Unexpected attribute "{_sanitize_char(cur.peek())}" in client-first-message.')
        cur.pos += 1
        self._client_first_bare = text[cur.pos :]
        if cur.peek() == "m":
            raise AuthFailed("0A000", "client requires an unsupported SCRAM extension")
        cur.attr_value("n")  # the SCRAM user name is ignored: the startup packet's user counts
        nonce = cur.attr_value("r")
        if any(not (0x21 <= ord(c) <= 0x7E) or c == "," for c in nonce):
            raise AuthFailed("08P01", "non-printable characters in SCRAM nonce")
        self._client_nonce = nonce
        while not cur.at_end():
            cur.any_attr()  # extensions are ignored

    def _read_client_final(self, text: str) -> tuple[str, str, bytes]:
        cur = _Cursor(text)
        cbind = cur.attr_value("c")
        if not ((cbind == "biws" and self._cbind_flag == "n") or (cbind == "eSws" and self._cbind_flag == "y")):
            raise AuthFailed("08P01", "unexpected SCRAM channel-binding attribute in client-final-message")
        final_nonce = cur.attr_value("r")
        while True:
            proof_start = cur.pos - 1
            attr, value = cur.any_attr()
            if attr == "p":
                break
        proof = _pg_b64decode(value)
        if proof is None or len(proof) != SCRAM_KEY_LEN:
            raise _malformed("Malformed proof in client-final-message.")
        if not cur.at_end():
            raise _malformed("Garbage found at the end of client-final-message.")
        return text[:proof_start], final_nonce, proof


def _invalid_mechanism() -> AuthFailed:
    return AuthFailed("08P01", "client selected an invalid SASL authentication mechanism")


def _expect(mtype: bytes, what: str) -> None:
    if mtype != b"p":
        code = mtype[0] if mtype else -1
        raise AuthFailed("08P01", f"expected {what}, got message type {code}")


def _parse_password(body: bytes) -> bytes:
    try:
        return P.parse_password(body)
    except P.ProtocolViolation as pv:
        raise _from_violation(pv) from None


class Md5Exchange:
    """AuthenticationMD5Password + PasswordMessage check (CheckMD5Auth / md5_crypt_verify)."""

    max_message_length = MAX_PASSWORD_MESSAGE_LENGTH
    expected_message = "password response"

    def __init__(
        self, verifier: str | None, username: str, *, log_detail: str | None = None, salt: bytes | None = None
    ) -> None:
        self.verifier = verifier
        self.username = username
        self.log_detail = log_detail
        self.salt = secrets.token_bytes(4) if salt is None else salt
        if len(self.salt) != 4:
            raise ValueError("MD5 salt must be 4 bytes")
        self.succeeded = False
        self.done = False

    def initial_message(self) -> bytes:
        return P.authentication_md5(self.salt)

    def expect_message(self, mtype: bytes) -> None:
        _expect(mtype, self.expected_message)

    def handle(self, body: bytes) -> bytes:
        self.handle_password(body)
        return b""

    def handle_password(self, body: bytes) -> None:
        self.done = True
        client = _parse_password(body)
        if self.verifier is None:
            raise password_failed(self.username, self.log_detail)
        if not md5_possible(self.verifier):
            raise password_failed(
                self.username, f'User "{self.username}" has a password that cannot be used with MD5 authentication.'
            )
        expected = "md5" + hashlib.md5(self.verifier[3:].encode("ascii") + self.salt).hexdigest()
        if not hmac.compare_digest(client, expected.encode("ascii")):
            raise password_failed(self.username, f'Password does not match for user "{self.username}".')
        self.succeeded = True


class PasswordExchange:
    """AuthenticationCleartextPassword + PasswordMessage check (CheckPasswordAuth / plain_crypt_verify)."""

    max_message_length = MAX_PASSWORD_MESSAGE_LENGTH
    expected_message = "password response"

    def __init__(self, verifier: str | None, username: str, *, log_detail: str | None = None) -> None:
        self.verifier = verifier
        self.username = username
        self.log_detail = log_detail
        self.succeeded = False
        self.done = False

    def initial_message(self) -> bytes:
        return P.authentication_cleartext()

    def expect_message(self, mtype: bytes) -> None:
        _expect(mtype, self.expected_message)

    def handle(self, body: bytes) -> bytes:
        self.handle_password(body)
        return b""

    def handle_password(self, body: bytes) -> None:
        self.done = True
        client = _parse_password(body)
        if self.verifier is None:
            raise password_failed(self.username, self.log_detail)
        detail = _plain_verify(self.username, self.verifier, client)
        if detail is not None:
            raise password_failed(self.username, detail)
        self.succeeded = True


Exchange = ScramExchange | Md5Exchange | PasswordExchange


def start_exchange(
    hba_method: str,
    verifier: str | None,
    username: str,
    *,
    log_detail: str | None = None,
    password_encryption: str = "scram-sha-256",
    mock_nonce: bytes = b"",
) -> Exchange:
    """The exchange PostgreSQL runs for hba method ``scram-sha-256``, ``md5`` or ``password``."""
    method = challenge_method(hba_method, verifier, password_encryption)
    if method == "password":
        return PasswordExchange(verifier, username, log_detail=log_detail)
    if method == "md5":
        return Md5Exchange(verifier, username, log_detail=log_detail)
    return ScramExchange(verifier, username, log_detail=log_detail, mock_nonce=mock_nonce)


# --------------------------------------------------------------------------------------------------
# Role catalog

ROLE_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS pgbed_authid (rolname TEXT PRIMARY KEY, rolsuper INTEGER, rolcanlogin INTEGER, "
    "rolpassword TEXT, rolvaliduntil TEXT)"
)
SELECT_ROLE_SQL = (
    "SELECT rolname, rolsuper, rolcanlogin, rolpassword, rolvaliduntil FROM pgbed_authid WHERE rolname = ?"
)

Statement = tuple[str, tuple[object, ...]]
Notice = tuple[str, str]  # (SQLSTATE, message) of a NOTICE


@dataclass(frozen=True, slots=True)
class RoleRow:
    rolname: str
    rolsuper: bool
    rolcanlogin: bool
    rolpassword: str | None
    rolvaliduntil: str | None

    @classmethod
    def from_row(cls, row: tuple[object, ...] | None) -> RoleRow | None:
        """A row of SELECT_ROLE_SQL (or None when there is none)."""
        if row is None:
            return None
        name, sup, login, pw, until = row
        return cls(str(name), bool(sup), bool(login), None if pw is None else str(pw),
                   None if until is None else str(until))  # fmt: skip


def lookup_role(datadir: str, user: str) -> RoleRow | None:
    """The role's row, read from the heap with a read-only connection (hot standbys too)."""
    import apsw

    from node.storage import heap_path

    conn = apsw.Connection(str(heap_path(datadir)), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(5000)
    try:
        return RoleRow.from_row(conn.execute(SELECT_ROLE_SQL, (user,)).fetchone())
    except apsw.SQLError:
        return None  # no role table: a data directory from before roles existed
    finally:
        conn.close()


def role_name_by_oid(datadir: str, oid: int) -> str | None:
    """The name of the role with this OID, as node/pgcatalog.py numbers them in pg_roles (the
    bootstrap superuser 10, others 16384 + their heap rowid), or None."""
    import apsw

    from node.pgcatalog import BOOTSTRAP_SUPERUSER, BOOTSTRAP_SUPERUSER_OID, FIRST_NORMAL_OID
    from node.storage import heap_path

    if oid == BOOTSTRAP_SUPERUSER_OID:
        return BOOTSTRAP_SUPERUSER
    if oid < FIRST_NORMAL_OID:
        return None
    conn = apsw.Connection(str(heap_path(datadir)), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(5000)
    try:
        row = conn.execute("SELECT rolname FROM pgbed_authid WHERE rowid = ?", (oid - FIRST_NORMAL_OID,)).fetchone()
    except apsw.SQLError:
        return None
    finally:
        conn.close()
    return None if row is None or row[0] == BOOTSTRAP_SUPERUSER else str(row[0])


def role_oid_by_name(datadir: str, name: str) -> int | None:
    """get_role_oid(name, missing_ok=true) with pg_roles' numbering."""
    import apsw

    from node.pgcatalog import BOOTSTRAP_SUPERUSER, BOOTSTRAP_SUPERUSER_OID, FIRST_NORMAL_OID
    from node.storage import heap_path

    if name == BOOTSTRAP_SUPERUSER:
        return BOOTSTRAP_SUPERUSER_OID
    conn = apsw.Connection(str(heap_path(datadir)), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(5000)
    try:
        row = conn.execute("SELECT rowid FROM pgbed_authid WHERE rolname = ?", (name,)).fetchone()
    except apsw.SQLError:
        return None
    finally:
        conn.close()
    return None if row is None else FIRST_NORMAL_OID + int(row[0])


def bootstrap_role_sql(name: str) -> Statement:
    """The initdb superuser (rolsuper, rolcanlogin, no password)."""
    return ("INSERT OR IGNORE INTO pgbed_authid (rolname, rolsuper, rolcanlogin, rolpassword, rolvaliduntil) "
            "VALUES (?, 1, 1, NULL, NULL)", (name,))  # fmt: skip


def role_password(row: RoleRow | None, username: str, now: datetime | None = None) -> tuple[str | None, str | None]:
    """get_role_password: (verifier, None) or (None, the log detail saying why there is none)."""
    if row is None:
        return None, f'Role "{username}" does not exist.'
    if row.rolpassword is None:
        return None, f'User "{username}" has no password assigned.'
    if row.rolvaliduntil is not None:
        until = _stored_timestamp(row.rolvaliduntil)
        if until is not None and until < (now or datetime.now(UTC)):
            return None, f'User "{username}" has an expired password.'
    return row.rolpassword, None


def check_login(row: RoleRow | None, username: str) -> None:
    """InitializeSessionUserId's checks after authentication (FATAL 28000)."""
    if row is None:
        raise PGError(f'role "{username}" does not exist', "28000", severity="FATAL")
    if not row.rolcanlogin:
        raise PGError(f'role "{username}" is not permitted to log in', "28000", severity="FATAL")


# -- timestamps for VALID UNTIL ------------------------------------------------------------------------

_TS_RE = re.compile(
    r"\s*(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:[Tt]|\s+)(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"\s*(?:([Zz]|UTC|utc|GMT|gmt)|([+-])(\d{1,2})(?::?(\d{2}))?)?\s*"
)


def _format_ts(dt: datetime) -> str:
    s = dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if dt.microsecond:
        s += f".{dt.microsecond:06d}".rstrip("0")
    return s + "+00"


def parse_valid_until(text: str, now: datetime | None = None) -> str:
    """timestamptz_in for VALID UNTIL, rendered as PostgreSQL shows it (TimeZone UTC)."""
    now = now or datetime.now(UTC)
    word = text.strip().lower()
    if word in ("infinity", "+infinity"):
        return "infinity"
    if word == "-infinity":
        return "-infinity"
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    specials = {"now": now, "today": midnight, "tomorrow": midnight + timedelta(days=1),
                "yesterday": midnight - timedelta(days=1), "epoch": datetime(1970, 1, 1, tzinfo=UTC)}  # fmt: skip
    if word in specials:
        return _format_ts(specials[word])
    m = _TS_RE.fullmatch(text)
    bad = PGError(f'invalid input syntax for type timestamp with time zone: "{text}"', "22007")
    if not m:
        raise bad
    y, mo, d, hh, mi, ss, frac, _zone, sign, tzh, tzm = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0), tzinfo=UTC)
    except ValueError:
        raise PGError(f'date/time field value out of range: "{text}"', "22008") from None
    if frac:
        dt += timedelta(microseconds=round(int(frac) * 10 ** (6 - len(frac))) if len(frac) <= 6
                        else round(int(frac) / 10 ** (len(frac) - 6)))  # fmt: skip
    if sign:
        offset = timedelta(hours=int(tzh), minutes=int(tzm or 0))
        dt -= offset if sign == "+" else -offset
    return _format_ts(dt)


def _stored_timestamp(text: str) -> datetime | None:
    """rolvaliduntil back to a datetime (None = infinity)."""
    if text == "infinity":
        return None
    if text == "-infinity":
        return datetime.min.replace(tzinfo=UTC)
    m = _TS_RE.fullmatch(text)
    if not m:
        return None
    return datetime.fromisoformat(parse_valid_until(text).replace("+00", "+00:00"))


# -- the lexer --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: Literal["ident", "string", "int", "op", "other", "eof"]
    value: str  # folded identifier / string value / digits / operator text
    raw: str
    pos: int  # 0-based character offset
    quoted: bool = False


# PostgreSQL 15's keywords (pg_get_keywords()): reserved ones cannot be role names; no keyword at all can be
# a role option (the grammar takes options as IDENT), so an unhandled keyword there is a syntax error.
_RESERVED = frozenset(
    """
all analyse analyze and any array as asc asymmetric both case cast check collate column constraint create
current_catalog current_date current_role current_time current_timestamp current_user default deferrable desc
distinct do else end except false fetch for foreign from grant group having in initially intersect into lateral
leading limit localtime localtimestamp not null offset on only or order placing primary references returning select
session_user some symmetric table then to trailing true union unique user using variadic when where window with
""".split()
)
_NONRESERVED_KEYWORDS = frozenset(
    """
abort absolute access action add admin after aggregate also alter always asensitive assertion assignment at atomic
attach attribute authorization backward before begin between bigint binary bit boolean breadth by cache call called
cascade cascaded catalog chain char character characteristics checkpoint class close cluster coalesce collation
columns comment comments commit committed compression concurrently configuration conflict connection constraints
content continue conversion copy cost cross csv cube current current_schema cursor cycle data database day
deallocate dec decimal declare defaults deferred definer delete delimiter delimiters depends depth detach dictionary
disable discard document domain double drop each enable encoding encrypted enum escape event exclude excluding
exclusive execute exists explain expression extension external extract family filter finalize first float following
force forward freeze full function functions generated global granted greatest grouping groups handler header hold
hour identity if ilike immediate immutable implicit import include including increment index indexes inherit
inherits inline inner inout input insensitive insert instead int integer interval invoker is isnull isolation join
key label language large last leakproof least left level like listen load local location lock locked logged mapping
match matched materialized maxvalue merge method minute minvalue mode month move name names national natural nchar
new next nfc nfd nfkc nfkd no none normalize normalized nothing notify notnull nowait nullif nulls numeric object of
off oids old operator option options ordinality others out outer over overlaps overlay overriding owned owner
parallel parameter parser partial partition passing password plans policy position preceding precision prepare
prepared preserve prior privileges procedural procedure procedures program publication quote range read real
reassign recheck recursive ref referencing refresh reindex relative release rename repeatable replace replica reset
restart restrict return returns revoke right role rollback rollup routine routines row rows rule savepoint schema
schemas scroll search second security sequence sequences serializable server session set setof sets share show
similar simple skip smallint snapshot sql stable standalone start statement statistics stdin stdout storage stored
strict strip subscription substring support sysid system tables tablesample tablespace temp template temporary text
ties time timestamp transaction transform treat trigger trim truncate trusted type types uescape unbounded
uncommitted unencrypted unknown unlisten unlogged until update vacuum valid validate validator value values varchar
varying verbose version view views volatile whitespace within without work wrapper write xml xmlattributes xmlconcat
xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable year yes zone
""".split()
)


def _syntax_error(tok: _Tok, sql: str) -> PGError:
    if tok.kind == "eof":
        return PGError("syntax error at end of input", "42601", position=len(sql) + 1)
    return PGError(f'syntax error at or near "{tok.raw}"', "42601", position=tok.pos + 1)


def _truncate_identifier(name: str, notices: list[Notice]) -> str:
    raw = name.encode("utf-8")
    if len(raw) < NAMEDATALEN:
        return name
    cut = raw[: NAMEDATALEN - 1].decode("utf-8", "ignore")
    notices.append(("42622", f'identifier "{name}" will be truncated to "{cut}"'))
    return cut


_E_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _lex(sql: str, notices: list[Notice]) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(sql)

    def err(msg: str, at: int, raw: str) -> PGError:
        return PGError(f'{msg} at or near "{raw}"', "42601", position=at + 1)

    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise err("unterminated /* comment", i, sql[i:])
            i = j
        elif c == '"':
            j, parts = i + 1, []
            while True:
                k = sql.find('"', j)
                if k < 0:
                    raise err("unterminated quoted identifier", i, sql[i:])
                parts.append(sql[j:k])
                if sql.startswith('""', k):
                    parts.append('"')
                    j = k + 2
                    continue
                j = k + 1
                break
            value = "".join(parts)
            if not value:
                raise err("zero-length delimited identifier", i, '""')
            toks.append(_Tok("ident", _truncate_identifier(value, notices), sql[i:j], i, quoted=True))
            i = j
        elif c == "'" or (c in "eE" and sql.startswith("'", i + 1)):
            escapes = c != "'"
            j = i + (2 if escapes else 1)
            out: list[str] = []
            while True:
                if j >= n:
                    raise err("unterminated quoted string", i, sql[i:])
                ch = sql[j]
                if ch == "'":
                    if sql.startswith("''", j):
                        out.append("'")
                        j += 2
                        continue
                    j += 1
                    break
                if ch == "\\" and escapes and j + 1 < n:
                    nxt = sql[j + 1]
                    if nxt in "01234567":
                        m = re.match(r"[0-7]{1,3}", sql[j + 1 :])
                        assert m
                        out.append(chr(int(m.group(), 8)))
                        j += 1 + len(m.group())
                    elif nxt == "x" and re.match(r"[0-9A-Fa-f]", sql[j + 2 : j + 3]):
                        m = re.match(r"[0-9A-Fa-f]{1,2}", sql[j + 2 :])
                        assert m
                        out.append(chr(int(m.group(), 16)))
                        j += 2 + len(m.group())
                    elif nxt in "uU":
                        width = 4 if nxt == "u" else 8
                        hexd = sql[j + 2 : j + 2 + width]
                        if not re.fullmatch(f"[0-9A-Fa-f]{{{width}}}", hexd):
                            raise err("invalid Unicode escape", j, sql[j : j + 2])
                        out.append(chr(int(hexd, 16)))
                        j += 2 + width
                    else:
                        out.append(_E_ESCAPES.get(nxt, nxt))
                        j += 2
                    continue
                out.append(ch)
                j += 1
            toks.append(_Tok("string", "".join(out), sql[i:j], i))
            i = j
        elif c == "$" and (m := re.match(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z_0-9\x80-\U0010ffff]*)?\$", sql[i:])):
            tag = m.group()
            k = sql.find(tag, i + len(tag))
            if k < 0:
                raise err("unterminated dollar-quoted string", i, sql[i:])
            toks.append(_Tok("string", sql[i + len(tag) : k], sql[i : k + len(tag)], i))
            i = k + len(tag)
        elif c.isalpha() or c == "_" or ord(c) >= 0x80:
            m = re.match(r"[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9$\x80-\U0010ffff]*", sql[i:])
            assert m
            word = m.group()
            if word[0] in "bBxXuUnN" and sql.startswith("'", i + len(word)) and len(word) <= 2:
                # B'..', X'..', U&'..', N'..': not needed for role DDL
                j = sql.find("'", i + len(word) + 1)
                j = n if j < 0 else j + 1
                toks.append(_Tok("other", word, sql[i:j], i))
                i = j
                continue
            folded = "".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in word)
            toks.append(_Tok("ident", _truncate_identifier(folded, notices), word, i))
            i += len(word)
        elif c.isdigit():
            m = re.match(r"\d+(\.\d*)?([eE][+-]?\d+)?", sql[i:])
            assert m
            kind: Literal["int", "other"] = "int" if m.group().isdigit() and int(m.group()) < 2**31 else "other"
            toks.append(_Tok(kind, m.group(), m.group(), i))
            i += len(m.group())
        else:
            toks.append(_Tok("op", c, c, i))
            i += 1
    toks.append(_Tok("eof", "", "", n))
    return toks


# -- the parser -------------------------------------------------------------------------------------

_ROLE_IDENT_OPTIONS = {
    "superuser": ("superuser", True), "nosuperuser": ("superuser", False),
    "createrole": ("createrole", True), "nocreaterole": ("createrole", False),
    "replication": ("isreplication", True), "noreplication": ("isreplication", False),
    "createdb": ("createdb", True), "nocreatedb": ("createdb", False),
    "login": ("canlogin", True), "nologin": ("canlogin", False),
    "bypassrls": ("bypassrls", True), "nobypassrls": ("bypassrls", False),
    "noinherit": ("inherit", False),
}  # fmt: skip
_SPECIAL_ROLES = {"current_user": "CURRENT_USER", "current_role": "CURRENT_ROLE", "session_user": "SESSION_USER"}


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """One parsed role statement.

    ``names``: the role (CREATE/ALTER/RENAME) or roles (DROP). ``special`` is set when the statement named
    CURRENT_USER / CURRENT_ROLE / SESSION_USER / PUBLIC instead (ALTER: resolved by ``plan_role_statement``;
    DROP: an error there). ``password_given`` distinguishes PASSWORD NULL (password None) from no PASSWORD.
    ``options`` holds every given option by PostgreSQL's defname (``canlogin``, ``superuser``, ``createdb``,
    ``connectionlimit``, ...) with its position, for the conflict check and the options not stored.
    """

    action: Literal["create", "alter", "rename", "drop"]
    kind: Literal["role", "user", "group"]
    names: tuple[str, ...]
    special: str | None = None
    superuser: bool | None = None
    login: bool | None = None
    password_given: bool = False
    password: str | None = None
    valid_until: str | None = None
    connection_limit: int | None = None
    new_name: str | None = None
    if_exists: bool = False
    options: tuple[tuple[str, object, int], ...] = ()
    notices: tuple[Notice, ...] = ()

    @property
    def tag(self) -> str:
        return {"create": "CREATE ROLE", "alter": "ALTER ROLE", "rename": "ALTER ROLE", "drop": "DROP ROLE"}[
            self.action
        ]


@dataclass
class _Parser:
    sql: str
    toks: list[_Tok]
    i: int = 0
    notices: list[Notice] = field(default_factory=list)

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def is_kw(self, word: str, tok: _Tok | None = None) -> bool:
        t = tok or self.tok
        return t.kind == "ident" and not t.quoted and t.value == word

    def accept(self, word: str) -> bool:
        if self.is_kw(word):
            self.i += 1
            return True
        return False

    def expect(self, word: str) -> _Tok:
        if not self.is_kw(word):
            raise _syntax_error(self.tok, self.sql)
        self.i += 1
        return self.toks[self.i - 1]

    def fail(self) -> PGError:
        return _syntax_error(self.tok, self.sql)

    def role_spec(self) -> tuple[str, str | None, _Tok]:
        """RoleSpec: (name, special keyword or None, token)."""
        t = self.tok
        if t.kind != "ident":
            raise self.fail()
        if not t.quoted and t.value in _SPECIAL_ROLES:
            self.i += 1
            return "", _SPECIAL_ROLES[t.value], t
        if not t.quoted and t.value in _RESERVED:
            raise self.fail()
        self.i += 1
        if t.value == "public":
            return "", "PUBLIC", t
        if t.value == "none":
            raise PGError('role name "none" is reserved', "42939", position=t.pos + 1)
        return t.value, None, t

    def role_id(self) -> str:
        """RoleId: a RoleSpec that must be a plain name."""
        name, special, t = self.role_spec()
        if special == "PUBLIC":
            raise PGError('role name "public" is reserved', "42939", position=t.pos + 1)
        if special:
            raise PGError(f"{special} cannot be used as a role name here", "42939", position=t.pos + 1)
        return name

    def role_list(self) -> None:
        self.role_spec()
        while self.tok.kind == "op" and self.tok.value == ",":
            self.i += 1
            self.role_spec()

    def string(self) -> str:
        if self.tok.kind != "string":
            raise self.fail()
        self.i += 1
        return self.toks[self.i - 1].value

    def signed_int(self) -> int:
        sign = 1
        if self.tok.kind == "op" and self.tok.value in "+-":
            sign = -1 if self.tok.value == "-" else 1
            self.i += 1
        if self.tok.kind != "int":
            raise self.fail()
        self.i += 1
        return sign * int(self.toks[self.i - 1].value)

    def options(self, create: bool) -> list[tuple[str, object, int]]:
        opts: list[tuple[str, object, int]] = []
        while self.tok.kind == "ident":
            t = self.tok
            word = t.value
            unquoted = not t.quoted
            if unquoted and word == "password":
                self.i += 1
                if self.accept("null"):
                    opts.append(("password", None, t.pos))
                else:
                    opts.append(("password", self.string(), t.pos))
            elif unquoted and word == "encrypted":
                self.i += 1
                self.expect("password")
                opts.append(("password", self.string(), t.pos))
            elif unquoted and word == "unencrypted":
                raise PGError("UNENCRYPTED PASSWORD is no longer supported", "0A000", position=t.pos + 1,
                              hint="Remove UNENCRYPTED to store the password in encrypted form instead.")  # fmt: skip
            elif unquoted and word == "inherit":
                self.i += 1
                opts.append(("inherit", True, t.pos))
            elif unquoted and word == "connection":
                self.i += 1
                self.expect("limit")
                opts.append(("connectionlimit", self.signed_int(), t.pos))
            elif unquoted and word == "valid":
                self.i += 1
                self.expect("until")
                opts.append(("validUntil", self.string(), t.pos))
            elif unquoted and word == "user":
                self.i += 1
                self.role_list()
                opts.append(("rolemembers", None, t.pos))
            elif create and unquoted and word == "sysid":
                self.i += 1
                if self.tok.kind != "int":
                    raise self.fail()
                self.i += 1
                opts.append(("sysid", None, t.pos))
            elif create and unquoted and word in ("admin", "role"):
                self.i += 1
                self.role_list()
                opts.append(("adminmembers" if word == "admin" else "rolemembers", None, t.pos))
            elif create and unquoted and word == "in":
                self.i += 1
                if not (self.accept("role") or self.accept("group")):
                    raise self.fail()
                self.role_list()
                opts.append(("addroleto", None, t.pos))
            elif unquoted and (word in _RESERVED or word in _NONRESERVED_KEYWORDS):
                raise self.fail()
            elif word in _ROLE_IDENT_OPTIONS:
                self.i += 1
                defname, value = _ROLE_IDENT_OPTIONS[word]
                opts.append((defname, value, t.pos))
            else:
                raise PGError(f'unrecognized role option "{word}"', "42601", position=t.pos + 1)
        return opts

    def end(self) -> None:
        while self.tok.kind == "op" and self.tok.value == ";":
            self.i += 1
        if self.tok.kind != "eof":
            raise self.fail()


_MAYBE_ROLE_STMT = re.compile(r"\b(?:create|alter|drop)\b.*?\b(?:role|user|group)\b", re.IGNORECASE | re.DOTALL)


def parse_create_role(sql: str) -> RoleSpec | None:
    """Parse CREATE/ALTER/DROP ROLE|USER|GROUP; None when ``sql`` is another statement.

    Also None for valid role statements this module leaves to the caller: ALTER ROLE ... SET/RESET,
    ALTER ROLE ALL, and the USER MAPPING statements. Raises PGError (42601 etc.) with a 1-based position.
    One statement only (trailing semicolons allowed).
    """
    if not _MAYBE_ROLE_STMT.search(sql):
        return None  # cheap pre-filter: the backend may call this for every statement
    notices: list[Notice] = []
    try:
        toks = _lex(sql, notices)
    except PGError:
        # Only complain about the lexing when this looks like a role statement at all.
        head = re.match(r"\s*(create|alter|drop)\s+(role|user|group)\b", sql, re.IGNORECASE)
        if head is None:
            return None
        raise
    p = _Parser(sql, toks, notices=notices)
    verb = p.tok.value if p.tok.kind == "ident" and not p.tok.quoted else ""
    obj_tok = p.peek()
    obj = obj_tok.value if obj_tok.kind == "ident" and not obj_tok.quoted else ""
    if verb not in ("create", "alter", "drop") or obj not in ("role", "user", "group"):
        return None
    kind: Literal["role", "user", "group"] = obj  # type: ignore[assignment]
    if (
        obj == "user"
        and p.is_kw("mapping", p.peek(2))
        and (p.is_kw("for", p.peek(3)) or (verb == "drop" and p.is_kw("if", p.peek(3))))
    ):
        return None
    p.i = 2
    if verb == "create":
        name = p.role_id()
        p.accept("with")
        opts = p.options(create=True)
        p.end()
        return _spec("create", kind, (name,), None, opts, p.notices)
    if verb == "drop":
        if_exists = False
        if p.is_kw("if") and p.is_kw("exists", p.peek()):
            p.i += 2
            if_exists = True
        names: list[str] = []
        special: str | None = None
        while True:
            n, sp, _ = p.role_spec()
            names.append(n)
            special = special or sp
            if p.tok.kind == "op" and p.tok.value == ",":
                p.i += 1
                continue
            break
        p.end()
        return RoleSpec("drop", kind, tuple(names), special=special, if_exists=if_exists, notices=tuple(p.notices))
    # ALTER
    if p.is_kw("all"):
        return None  # ALTER ROLE ALL [IN DATABASE] SET/RESET
    name, special, tok = p.role_spec()
    if p.is_kw("rename"):
        if special == "PUBLIC":
            raise PGError('role name "public" is reserved', "42939", position=tok.pos + 1)
        if special:
            raise PGError(f"{special} cannot be used as a role name here", "42939", position=tok.pos + 1)
        p.i += 1
        p.expect("to")
        new = p.role_id()
        p.end()
        return RoleSpec("rename", kind, (name,), new_name=new, notices=tuple(p.notices))
    if p.is_kw("set") or p.is_kw("reset") or (p.is_kw("in") and p.is_kw("database", p.peek())):
        return None
    if kind == "group":
        if p.is_kw("add") or p.is_kw("drop"):
            raise PGError("role membership is not supported by pgbed", "0A000", position=p.tok.pos + 1)
        raise p.fail()
    p.accept("with")
    opts = p.options(create=False)
    p.end()
    return _spec("alter", kind, (name,), special, opts, p.notices)


def _spec(
    action: Literal["create", "alter"],
    kind: Literal["role", "user", "group"],
    names: tuple[str, ...],
    special: str | None,
    opts: list[tuple[str, object, int]],
    notices: list[Notice],
) -> RoleSpec:
    values: dict[str, object] = {}
    for defname, value, _pos in opts:
        if defname == "sysid":
            continue
        values.setdefault(defname, value)
    login = values.get("canlogin")
    if action == "create" and login is None:
        login = kind == "user"  # CREATE USER implies LOGIN
    sup = values.get("superuser")
    climit = values.get("connectionlimit")
    until = values.get("validUntil")
    pw = values.get("password")
    return RoleSpec(
        action, kind, names, special=special,
        superuser=None if sup is None else bool(sup),
        login=None if login is None else bool(login),
        password_given="password" in values,
        password=None if pw is None else str(pw),
        valid_until=None if until is None else str(until),
        connection_limit=None if climit is None else int(climit),  # type: ignore[call-overload]
        options=tuple(opts), notices=tuple(notices),
    )  # fmt: skip


# -- planning ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RolePlan:
    """What to execute (in order, one transaction), the NOTICEs to send, and the command tag."""

    statements: tuple[Statement, ...]
    notices: tuple[Notice, ...]
    tag: str


def _reserved_name(name: str) -> PGError:
    return PGError(f'role name "{name}" is reserved', "42939", detail='Role names starting with "pg_" are reserved.')


def _insufficient(msg: str) -> PGError:
    return PGError(msg, "42501")


def _check_options(spec: RoleSpec) -> None:
    seen: set[str] = set()
    for defname, _value, pos in spec.options:
        if defname == "sysid":
            continue
        if defname in seen:
            raise PGError("conflicting or redundant options", "42601", position=pos + 1)
        seen.add(defname)
    if spec.connection_limit is not None and spec.connection_limit < -1:
        raise PGError(f"invalid connection limit: {spec.connection_limit}", "22023")
    if any(d in ("rolemembers", "adminmembers", "addroleto") for d, _v, _p in spec.options):
        raise PGError("role membership is not supported by pgbed", "0A000")


def _new_password(spec: RoleSpec, role: str, password_encryption: str, notices: list[Notice]) -> str | None:
    pw = spec.password
    if pw is None:
        return None
    if pw == "" or (password_type(pw) != "plaintext" and check_cleartext(pw, "", role)):
        notices.append(("00000", "empty string is not a valid password, clearing password"))
        return None
    return encrypt_password(pw, role, password_encryption)


def plan_role_statement(
    spec: RoleSpec,
    lookup: Callable[[str], RoleRow | None],
    *,
    current_user: str,
    is_superuser: bool,
    session_user: str | None = None,
    password_encryption: str = "scram-sha-256",
    bootstrap_superuser: str | None = None,
    now: datetime | None = None,
) -> RolePlan:
    """CreateRole / AlterRole / RenameRole / DropRole on pgbed_authid, with PostgreSQL 15's checks and texts.

    ``lookup(name)`` returns the current row (e.g. ``RoleRow.from_row(conn.execute(SELECT_ROLE_SQL,
    (name,)).fetchone())``). Roles never have CREATEROLE here, so non-superusers may only change their own
    password. Raises PGError; the statements are to be run in one transaction.
    """
    session_user = session_user or current_user
    notices: list[Notice] = list(spec.notices)
    stmts: list[Statement] = []
    opt = {d for d, _v, _p in spec.options}

    if spec.action == "create":
        if "sysid" in opt:
            notices.extend(("00000", "SYSID can no longer be specified") for d, _v, _p in spec.options if d == "sysid")
        _check_options(spec)
        if not is_superuser:
            if spec.superuser:
                raise _insufficient("must be superuser to create superusers")
            if "isreplication" in opt and dict((d, v) for d, v, _p in spec.options).get("isreplication"):
                raise _insufficient("must be superuser to create replication users")
            if dict((d, v) for d, v, _p in spec.options).get("bypassrls"):
                raise _insufficient("must be superuser to create bypassrls users")
            raise _insufficient("permission denied to create role")
        name = spec.names[0]
        if name.startswith("pg_"):
            raise _reserved_name(name)
        if lookup(name) is not None:
            raise PGError(f'role "{name}" already exists', "42710")
        until = None if spec.valid_until is None else parse_valid_until(spec.valid_until, now)
        pw = _new_password(spec, name, password_encryption, notices)
        stmts.append((
            "INSERT INTO pgbed_authid (rolname, rolsuper, rolcanlogin, rolpassword, rolvaliduntil) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, int(bool(spec.superuser)), int(bool(spec.login)), pw, until),
        ))  # fmt: skip
        return RolePlan(tuple(stmts), tuple(notices), spec.tag)

    if spec.action == "alter":
        _check_options(spec)
        if spec.special == "PUBLIC":
            raise PGError('role "public" does not exist', "42704")
        name = {"CURRENT_USER": current_user, "CURRENT_ROLE": current_user,
                "SESSION_USER": session_user}.get(spec.special or "", spec.names[0])  # fmt: skip
        row = lookup(name)
        if row is None:
            raise PGError(f'role "{name}" does not exist', "42704")
        if row.rolsuper or "superuser" in opt:
            if not is_superuser:
                raise _insufficient("must be superuser to alter superuser roles or change superuser attribute")
        elif "isreplication" in opt:
            if not is_superuser:
                raise _insufficient("must be superuser to alter replication roles or change replication attribute")
        elif "bypassrls" in opt:
            if not is_superuser:
                raise _insufficient("must be superuser to change bypassrls attribute")
        elif not is_superuser and (opt - {"password"} or "password" not in opt or name != current_user):
            raise _insufficient("permission denied")
        sets: list[tuple[str, object]] = []
        if spec.valid_until is not None:
            sets.append(("rolvaliduntil", parse_valid_until(spec.valid_until, now)))
        if spec.password_given:
            sets.append(("rolpassword", _new_password(spec, name, password_encryption, notices)))
        if spec.superuser is not None:
            sets.append(("rolsuper", int(spec.superuser)))
        if spec.login is not None:
            sets.append(("rolcanlogin", int(spec.login)))
        if sets:
            cols = ", ".join(f"{c} = ?" for c, _v in sets)
            stmts.append((f"UPDATE pgbed_authid SET {cols} WHERE rolname = ?", (*(v for _c, v in sets), name)))
        return RolePlan(tuple(stmts), tuple(notices), spec.tag)

    if spec.action == "rename":
        old, new = spec.names[0], spec.new_name or ""
        row = lookup(old)
        if row is None:
            raise PGError(f'role "{old}" does not exist', "42704")
        if old == session_user:
            raise PGError("session user cannot be renamed", "0A000")
        if old == current_user:
            raise PGError("current user cannot be renamed", "0A000")
        if old.startswith("pg_"):
            raise _reserved_name(old)
        if new.startswith("pg_"):
            raise _reserved_name(new)
        if lookup(new) is not None:
            raise PGError(f'role "{new}" already exists', "42710")
        if not is_superuser:
            raise _insufficient("must be superuser to rename superusers" if row.rolsuper
                                else "permission denied to rename role")  # fmt: skip
        if row.rolpassword is not None and password_type(row.rolpassword) == "md5":
            notices.append(("00000", "MD5 password cleared because of role rename"))
            stmts.append(("UPDATE pgbed_authid SET rolname = ?, rolpassword = NULL WHERE rolname = ?", (new, old)))
        else:
            stmts.append(("UPDATE pgbed_authid SET rolname = ? WHERE rolname = ?", (new, old)))
        return RolePlan(tuple(stmts), tuple(notices), spec.tag)

    # DROP
    if not is_superuser:
        raise _insufficient("permission denied to drop role")
    if spec.special:
        raise PGError("cannot use special role specifier in DROP ROLE", "22023")
    for name in spec.names:
        row = lookup(name)
        if row is None:
            if not spec.if_exists:
                raise PGError(f'role "{name}" does not exist', "42704")
            notices.append(("00000", f'role "{name}" does not exist, skipping'))
            continue
        if name == current_user:
            raise PGError("current user cannot be dropped", "55006")
        if name == session_user:
            raise PGError("session user cannot be dropped", "55006")
        if name == bootstrap_superuser:
            raise PGError(f"cannot drop role {name} because it is required by the database system", "2BP01")
        stmts.append(("DELETE FROM pgbed_authid WHERE rolname = ?", (name,)))
    return RolePlan(tuple(stmts), tuple(notices), spec.tag)
