"""pg_hba.conf: client authentication rules (hba.c, in small).

What it does: parses pg_hba.conf into rules (connection type, databases, users, address,
method) and finds the first rule matching a connection, as PostgreSQL does. Loaded by the
postmaster at start and on SIGHUP; backends use the copy they inherited at fork.

What it deliberately does not do: password methods. pgbed has no role catalog yet, so only
`trust` and `reject` are accepted; any other method is a load error naming the line (the
postmaster refuses to start on it, and a reload keeps the old rules, as PostgreSQL does with
an invalid pg_hba.conf).
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from pathlib import Path

CONN_TYPES = {"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"}
METHODS = {"trust", "reject"}


class HbaError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class HbaRule:
    conn_type: str
    databases: tuple[str, ...]
    users: tuple[str, ...]
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None  # None = all / local
    method: str
    line_number: int


def parse_hba(path: str | Path) -> list[HbaRule]:
    rules: list[HbaRule] = []
    text = Path(path).read_text()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            tok = shlex.split(line, posix=True)
        except ValueError as e:
            raise HbaError(f'invalid line {lineno} of configuration file "{path}": {e}') from None
        where = f'line {lineno} of configuration file "{path}"'
        ctype = tok[0]
        if ctype not in CONN_TYPES:
            raise HbaError(f'invalid connection type "{ctype}"' + f" at {where}")
        need = 4 if ctype == "local" else 5
        if len(tok) < need:
            raise HbaError(f"end-of-line before authentication method at {where}")
        dbs = tuple(tok[1].split(","))
        users = tuple(tok[2].split(","))
        net = None
        if ctype == "local":
            method = tok[3]
        else:
            addr = tok[3]
            rest = 4
            if addr not in ("all", "samehost", "samenet"):
                try:
                    if "/" in addr:
                        net = ipaddress.ip_network(addr, strict=False)
                    else:
                        mask = tok[4]
                        rest = 5
                        net = ipaddress.ip_network(f"{addr}/{mask}", strict=False)
                except (ValueError, IndexError):
                    raise HbaError(f'invalid IP address "{addr}" at {where}') from None
            if len(tok) <= rest:
                raise HbaError(f"end-of-line before authentication method at {where}")
            method = tok[rest]
        if method not in METHODS:
            raise HbaError(
                f'authentication method "{method}" is not supported by pgbed (only trust and reject) at {where}'
            )
        rules.append(HbaRule(ctype, dbs, users, net, method, lineno))
    return rules


def _match_list(items: tuple[str, ...], value: str, *, replication: bool, is_db: bool) -> bool:
    for item in items:
        if is_db:
            if item == "replication":
                if replication:
                    return True
                continue
            if replication:
                continue  # physical replication matches only the `replication` keyword
            if item in ("all", "sameuser", "samerole") or item == value:
                return True
        elif item == "all" or item == value:
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
        if not _match_list(r.databases, database, replication=replication, is_db=True):
            continue
        if not _match_list(r.users, user, replication=replication, is_db=False):
            continue
        return r
    return None
