"""pg_hba.conf: client authentication rules (hba.c, in small).

What it does: parses pg_hba.conf into rules (connection type, databases, users, address,
method) and finds the first rule matching a connection, as PostgreSQL does. Loaded by the
postmaster at start and on SIGHUP; backends use the copy they inherited at fork.

What it deliberately does not do: password methods. pgbed has no role catalog yet, so only
`trust` and `reject` are accepted; any other method is a load error naming the line (the
postmaster refuses to start on it, and a reload keeps the old rules, as PostgreSQL does with
an invalid pg_hba.conf). Nor host names or `samehost`/`samenet` addresses (no interface list):
those are load errors too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

CONN_TYPES = {"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"}
METHODS = {"trust", "reject", "scram-sha-256", "md5", "password"}


class HbaError(Exception):
    pass


class QuotedToken(str):
    """A token written in double quotes: it never matches a keyword (hba.c: token_is_keyword
    checks `!t->quoted`), so `"all"` names a database called all."""

    __slots__ = ()


def _tokenize(line: str) -> list[list[str]] | None:
    """Split one line into fields, each a list of comma-separated tokens (hba.c: next_token,
    next_field_expand). `#` outside quotes starts a comment; `""` inside quotes is a literal
    quote; a token that starts with a quote is a QuotedToken. None: unterminated quote."""
    fields: list[list[str]] = []
    i, n = 0, len(line)
    continuing = False  # the previous token ended with an unquoted comma
    while True:
        while i < n and (line[i] in " \t\r\n" or line[i] == ","):
            i += 1
        if i >= n or line[i] == "#":
            return fields
        buf: list[str] = []
        in_quote = initial_quote = comma = False
        while i < n and (in_quote or line[i] not in " \t\r\n"):
            c = line[i]
            i += 1
            if c == "#" and not in_quote:
                i = n
                break
            if c == "," and not in_quote:
                comma = True
                break
            if c == '"':
                if in_quote and i < n and line[i] == '"':
                    buf.append('"')  # "" inside quotes
                    i += 1
                    continue
                if not buf and not in_quote:
                    initial_quote = True
                in_quote = not in_quote
                continue
            buf.append(c)
        if in_quote:
            return None
        text = "".join(buf)
        tok: str = QuotedToken(text) if initial_quote else text
        if continuing:
            fields[-1].append(tok)
        else:
            fields.append([tok])
        continuing = comma


@dataclass(frozen=True, slots=True)
class HbaRule:
    conn_type: str
    databases: tuple[str, ...]
    users: tuple[str, ...]
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None  # None = all / local
    method: str
    line_number: int
    raw_line: str = ""  # for the server log's "Connection matched pg_hba.conf line N: ..."


def _single(fields: list[list[str]], idx: int, what: str, where: str) -> str:
    if len(fields[idx]) > 1:
        raise HbaError(f"multiple values specified for {what} at {where}")
    return fields[idx][0]


def parse_hba(path: str | Path) -> list[HbaRule]:
    rules: list[HbaRule] = []
    text = Path(path).read_text()
    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f'line {lineno} of configuration file "{path}"'
        fields = _tokenize(raw)
        if fields is None:
            raise HbaError(f"unterminated quoted string at {where}")
        if not fields:
            continue
        ctype = str(_single(fields, 0, "connection type", where))
        if ctype not in CONN_TYPES:
            raise HbaError(f'invalid connection type "{ctype}"' + f" at {where}")
        need = 4 if ctype == "local" else 5
        if len(fields) < need:
            raise HbaError(f"end-of-line before authentication method at {where}")
        dbs = tuple(fields[1])
        users = tuple(fields[2])
        net = None
        if ctype == "local":
            method = _single(fields, 3, "authentication type", where)
        else:
            addr = _single(fields, 3, "host address", where)
            rest = 4
            if addr in ("samehost", "samenet") and not isinstance(addr, QuotedToken):
                raise HbaError(f'address "{addr}" is not supported by pgbed at {where}')
            if addr != "all" or isinstance(addr, QuotedToken):
                try:
                    if "/" in addr:
                        net = ipaddress.ip_network(addr, strict=False)
                    else:
                        mask = _single(fields, 4, "netmask", where)
                        rest = 5
                        net = ipaddress.ip_network(f"{addr}/{mask}", strict=False)
                except (ValueError, IndexError):
                    raise HbaError(f'invalid IP address "{addr}" at {where}') from None
            if len(fields) <= rest:
                raise HbaError(f"end-of-line before authentication method at {where}")
            method = _single(fields, rest, "authentication type", where)
        if method not in METHODS:
            raise HbaError(
                f'authentication method "{method}" is not supported by pgbed '
                f"(trust, reject, scram-sha-256, md5, password) at {where}"
            )
        rules.append(HbaRule(ctype, dbs, users, net, str(method), lineno, raw.strip()))
    return rules


def _match_list(
    items: tuple[str, ...], value: str, *, replication: bool, is_db: bool, user: str = ""
) -> bool:
    for item in items:
        keyword = not isinstance(item, QuotedToken)
        if is_db:
            if keyword and item == "replication":
                if replication:
                    return True
                continue
            if replication:
                continue  # physical replication matches only the `replication` keyword
            if keyword and item == "all":
                return True
            if keyword and item in ("sameuser", "samerole", "samegroup"):
                # samerole: user is a member of the role named like the database; with no
                # role catalog a role is only a member of itself (is_member_of_role_nosuper).
                if value == user:
                    return True
                continue
            if item == value:
                return True
        elif (keyword and item == "all") or item == value:
            return True
    return False


def find_rule(
    rules: list[HbaRule], *, local: bool, address: str | None, user: str, database: str, replication: bool
) -> HbaRule | None:
    ip = None
    if not local and address:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            ip = None
    for r in rules:
        if local != (r.conn_type == "local"):
            continue
        if r.conn_type in ("hostssl", "hostgssenc"):
            continue  # we never negotiate SSL or GSS encryption
        if not local:
            if r.network is not None:
                if ip is None or ip.version != r.network.version or ip not in r.network:
                    continue
        if not _match_list(r.databases, database, replication=replication, is_db=True, user=user):
            continue
        if not _match_list(r.users, user, replication=replication, is_db=False):
            continue
        return r
    return None
