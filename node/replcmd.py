"""Replication commands: the grammar of repl_gram.y / repl_scanner.l, as pure functions.

What it does: `parse()` turns the text of a simple Query on a walsender connection into one
command object, or returns None when its first token is not a replication keyword (PG15's
replication_scanner_is_replication_command: the text is then SQL, which a physical walsender
refuses with 0A000). Keywords are case-insensitive, identifiers are downcased unless
double-quoted, string constants are single-quoted with '' escapes, a trailing `;` is allowed.
BASE_BACKUP takes both the PG15 option list `( NAME [value], ... )` and the legacy keywords.

What it deliberately does not do: run anything (node/walsender.py does), or logical replication
(parsed so that the error can say so, then refused by the walsender).

Errors are PGError with PostgreSQL's wording: `syntax error` (42601) for anything the grammar
rejects, and the scanner's own messages (`invalid streaming start location`, `unterminated
quoted string`, `zero-length delimited identifier`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from node.elog import PGError

KEYWORDS = frozenset({
    "BASE_BACKUP", "IDENTIFY_SYSTEM", "READ_REPLICATION_SLOT", "SHOW", "START_REPLICATION",
    "CREATE_REPLICATION_SLOT", "DROP_REPLICATION_SLOT", "TIMELINE_HISTORY",
})  # fmt: skip


@dataclass(frozen=True)
class IdentifySystem:
    pass


@dataclass(frozen=True)
class Show:
    name: str


@dataclass(frozen=True)
class TimelineHistory:
    timeline: int


@dataclass(frozen=True)
class StartReplication:
    lsn: int
    timeline: int = 0  # 0 = not given: the server's current timeline
    slot: str | None = None
    logical: bool = False


@dataclass(frozen=True)
class CreateSlot:
    name: str
    temporary: bool = False
    logical: bool = False
    reserve_wal: bool = False


@dataclass(frozen=True)
class DropSlot:
    name: str
    wait: bool = False


@dataclass(frozen=True)
class ReadSlot:
    name: str


@dataclass(frozen=True)
class BaseBackup:
    options: dict[str, Any] = field(default_factory=dict)


Command = IdentifySystem | Show | TimelineHistory | StartReplication | CreateSlot | DropSlot | ReadSlot | BaseBackup

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<recptr>[0-9A-Fa-f]+/[0-9A-Fa-f]+)
    | (?P<num>\d+(?![A-Za-z_]))
    | (?P<sconst>'(?:[^']|'')*'?)
    | (?P<qident>"(?:[^"]|"")*"?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<punct>[(),.;=])
    )""",
    re.X,
)


def _syntax_error() -> PGError:
    return PGError("syntax error", "42601")


def tokenize(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            return out
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _syntax_error()
        pos = m.end()
        kind = m.lastgroup
        tok = m.group(kind)  # type: ignore[arg-type]
        if kind == "recptr":
            hi, lo = tok.split("/")
            if len(hi) > 8 or len(lo) > 8:
                raise PGError("invalid streaming start location", "42601")
            out.append(("recptr", (int(hi, 16) << 32) | int(lo, 16)))
        elif kind == "num":
            out.append(("num", int(tok)))
        elif kind == "sconst":
            if len(tok) < 2 or not tok.endswith("'") or (tok.endswith("''") and not _closed(tok)):
                raise PGError("unterminated quoted string", "42601")
            out.append(("sconst", tok[1:-1].replace("''", "'")))
        elif kind == "qident":
            if len(tok) < 2 or not tok.endswith('"'):
                raise PGError("unterminated quoted identifier", "42601")
            name = tok[1:-1].replace('""', '"')
            if not name:
                raise PGError("zero-length delimited identifier", "42601")
            out.append(("ident", name))
        elif kind == "ident":
            out.append(("word", tok))
        else:
            out.append(("punct", tok))


def _closed(tok: str) -> bool:
    body = tok[1:]
    i = 0
    while i < len(body):
        if body[i] == "'":
            if i + 1 < len(body) and body[i + 1] == "'":
                i += 2
                continue
            return i == len(body) - 1
        i += 1
    return False


def is_replication_command(text: str) -> bool:
    """replication_scanner_is_replication_command: the first token is one of the command
    keywords, which the scanner knows in upper case only (anything else is an identifier)."""
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_$]*)", text)
    return bool(m) and m.group(1) in KEYWORDS  # type: ignore[union-attr]


class _Parser:
    def __init__(self, toks: list[tuple[str, Any]]) -> None:
        if toks and toks[-1] == ("punct", ";"):  # opt_semicolon: one, not more
            toks = toks[:-1]
        self.toks = toks
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self) -> tuple[str, Any]:
        t = self.peek()
        if t is None:
            raise _syntax_error()
        self.i += 1
        return t

    def kw(self, word: str) -> bool:
        t = self.peek()
        if t is not None and t[0] == "word" and t[1] == word:  # keywords are upper case only
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.kw(word):
            raise _syntax_error()

    def ident(self) -> str:
        kind, v = self.next()
        if kind == "ident":
            return v
        if kind == "word":
            return v.lower()
        raise _syntax_error()

    def number(self) -> int:
        kind, v = self.next()
        if kind != "num":
            raise _syntax_error()
        return v

    def end(self) -> None:
        if self.peek() is not None:
            raise _syntax_error()

    def generic_options(self) -> dict[str, Any]:
        """`( name [value] [, ...] )`; value = string, number, or a word."""
        opts: dict[str, Any] = {}
        self.next_punct("(")
        while True:
            name = self.ident()
            t = self.peek()
            value: Any = None
            if t is not None and not (t[0] == "punct" and t[1] in ",)"):
                kind, value = self.next()
                if kind == "word":
                    value = value.lower()
            opts[name.lower()] = value
            kind, v = self.next()
            if (kind, v) == ("punct", ")"):
                return opts
            if (kind, v) != ("punct", ","):
                raise _syntax_error()

    def next_punct(self, p: str) -> None:
        if self.next() != ("punct", p):
            raise _syntax_error()

    def at_punct(self, p: str) -> bool:
        return self.peek() == ("punct", p)


_LEGACY_BACKUP = {"PROGRESS": "progress", "FAST": "checkpoint", "WAL": "wal", "NOWAIT": "wait",
                  "TABLESPACE_MAP": "tablespace_map", "NOVERIFY_CHECKSUMS": "verify_checksums"}  # fmt: skip


def _boolean(name: str, value: Any) -> bool:
    """defGetBoolean: no value means true; otherwise PostgreSQL's boolean spellings."""
    if value is None:
        return True
    text = str(value).strip().lower()
    if text in ("true", "on", "1", "yes", "t", "y"):
        return True
    if text in ("false", "off", "0", "no", "f", "n"):
        return False
    raise PGError(f"{name} requires a Boolean value", "42601")


def parse(text: str) -> Command | None:
    """The command in `text`, or None when it is not a replication command (i.e. SQL)."""
    if not is_replication_command(text):
        return None
    p = _Parser(tokenize(text))
    kind, word = p.next()
    word = word.upper()
    if word == "IDENTIFY_SYSTEM":
        p.end()
        return IdentifySystem()
    if word == "SHOW":
        parts = [p.ident()]
        while p.at_punct("."):
            p.next()
            parts.append(p.ident())
        p.end()
        return Show(".".join(parts))
    if word == "TIMELINE_HISTORY":
        tli = p.number()
        p.end()
        if tli <= 0:
            raise PGError(f"invalid timeline {tli}", "42601")
        return TimelineHistory(tli)
    if word == "START_REPLICATION":
        slot = None
        if p.kw("SLOT"):
            slot = p.ident()
        if p.kw("LOGICAL"):
            k, lsn = p.next()
            if k != "recptr" or slot is None:
                raise _syntax_error()
            if p.at_punct("("):
                p.generic_options()
            p.end()
            return StartReplication(lsn, slot=slot, logical=True)
        p.kw("PHYSICAL")
        k, lsn = p.next()
        if k != "recptr":
            raise _syntax_error()
        tli = 0
        if p.kw("TIMELINE"):
            tli = p.number()
            if tli <= 0:
                raise PGError(f"invalid timeline {tli}", "42601")
        p.end()
        return StartReplication(lsn, tli, slot)
    if word == "CREATE_REPLICATION_SLOT":
        name = p.ident()
        temporary = p.kw("TEMPORARY")
        reserve = False
        if p.kw("LOGICAL"):
            p.ident()  # output plugin
            logical = True
        else:
            p.expect_kw("PHYSICAL")
            logical = False
        if p.at_punct("("):
            opts = p.generic_options()
            for k, v in opts.items():
                if k not in ("reserve_wal", "snapshot", "two_phase"):
                    raise PGError(f"unrecognized option: {k}", "XX000")
                if k == "reserve_wal":
                    reserve = _boolean(k, v)
        else:
            while p.peek() is not None:
                if p.kw("RESERVE_WAL"):
                    reserve = True
                elif p.kw("EXPORT_SNAPSHOT") or p.kw("NOEXPORT_SNAPSHOT") or p.kw("USE_SNAPSHOT") \
                        or p.kw("TWO_PHASE"):  # fmt: skip
                    continue
                else:
                    raise _syntax_error()
        p.end()
        return CreateSlot(name, temporary, logical, reserve)
    if word == "DROP_REPLICATION_SLOT":
        name = p.ident()
        wait = p.kw("WAIT")
        p.end()
        return DropSlot(name, wait)
    if word == "READ_REPLICATION_SLOT":
        name = p.ident()
        p.end()
        return ReadSlot(name)
    if word != "BASE_BACKUP":
        raise _syntax_error()
    if p.at_punct("("):
        opts = p.generic_options()
        p.end()
        return BaseBackup(opts)
    legacy: dict[str, Any] = {}
    while p.peek() is not None:
        if p.kw("LABEL"):
            k, v = p.next()
            if k != "sconst":
                raise _syntax_error()
            legacy["label"] = v
        elif p.kw("MAX_RATE"):
            legacy["max_rate"] = p.number()
        elif p.kw("MANIFEST"):
            k, v = p.next()
            if k != "sconst":
                raise _syntax_error()
            legacy["manifest"] = v
        else:
            kind, w = p.next()
            key = _LEGACY_BACKUP.get(str(w).upper()) if kind == "word" else None
            if key is None:
                raise _syntax_error()
            legacy[key] = {"checkpoint": "fast", "wait": "false", "verify_checksums": "false"}.get(key)
    return BaseBackup(legacy)
