"""node.hba: pg_hba.conf parsing and first-match rule lookup (PostgreSQL hba.c semantics)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from node import datadir, hba
from node.hba import HbaError, HbaRule


def load(tmp_path: Path, text: str) -> list[HbaRule]:
    p = tmp_path / "pg_hba.conf"
    p.write_text(text)
    return hba.parse_hba(p)


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(HbaError) as ei:
        load(tmp_path, text)
    return str(ei.value)


def find(
    rules: list[HbaRule],
    *,
    address: str | None = "127.0.0.1",
    user: str = "alice",
    database: str = "postgres",
    replication: bool = False,
) -> int | None:
    """Line number of the matching rule for a TCP connection (None: no match)."""
    r = hba.find_rule(rules, local=address is None, address=address, user=user, database=database,
                      replication=replication)  # fmt: skip
    return None if r is None else r.line_number


# ---- parsing --------------------------------------------------------------------------------


def test_parse_local_and_host_forms(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        "# comment line\n"
        "\n"
        "local   all   all                 trust   # trailing comment\n"
        "host    db1,db2  u1,u2  10.0.0.0/8   reject\n"
        "host    all   all   192.168.1.7   255.255.255.0   trust\n"
        "host    all   all   ::1/128       trust\n"
        "hostnossl all all   all           trust\n",
    )
    assert [r.line_number for r in rules] == [3, 4, 5, 6, 7]
    local, cidr, mask, v6, anyaddr = rules
    assert (local.conn_type, local.databases, local.users, local.network, local.method) == (
        "local", ("all",), ("all",), None, "trust",
    )  # fmt: skip
    assert cidr.databases == ("db1", "db2") and cidr.users == ("u1", "u2") and cidr.method == "reject"
    assert cidr.network == ipaddress.ip_network("10.0.0.0/8")
    assert mask.network == ipaddress.ip_network("192.168.1.0/24")  # addr+mask form, host bits masked
    assert v6.network == ipaddress.ip_network("::1/128")
    assert anyaddr.conn_type == "hostnossl" and anyaddr.network is None


def test_default_hba_parses(tmp_path: Path) -> None:
    """initdb's pg_hba.conf loads: three normal and three replication rules."""
    rules = load(tmp_path, datadir.DEFAULT_HBA.format(auth="trust"))
    assert [r.databases for r in rules] == [("all",)] * 3 + [("replication",)] * 3
    assert {r.method for r in rules} == {"trust"}


def test_quoted_tokens(tmp_path: Path) -> None:
    """Double quotes group a token; `""` is a literal quote; `#` and `,` inside quotes are text."""
    rules = load(
        tmp_path,
        'local "my db" "o""brien" trust\n'
        'local "a#b","c,d" all trust # real comment\n'
        "local o'neil all trust\n",
    )
    assert rules[0].databases == ("my db",) and rules[0].users == ('o"brien',)
    assert rules[1].databases == ("a#b", "c,d")
    assert rules[2].databases == ("o'neil",)  # single quotes are not special in pg_hba.conf


def test_quoted_keyword_is_a_name(tmp_path: Path) -> None:
    """hba.c token_is_keyword: `"all"` matches only a database literally named all."""
    rules = load(tmp_path, 'local "all" all trust\nlocal all "all" reject\n')
    assert find(rules, address=None, database="postgres", user="alice") is None
    assert find(rules, address=None, database="all", user="alice") == 1
    assert find(rules, address=None, database="x", user="all") == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hosts all all 127.0.0.1/32 trust\n", 'invalid connection type "hosts"'),
        ("local all all peer\n", 'authentication method "peer" is not supported by pgbed'),
        ("local all all\n", "end-of-line before authentication method"),
        ("host all all 127.0.0.1/32\n", "end-of-line before authentication method"),
        ("host all all 300.0.0.1/32 trust\n", 'invalid IP address "300.0.0.1/32"'),
        ("host all all 10.0.0.1 255.0.0.300 trust\n", 'invalid IP address "10.0.0.1"'),
        ("host all all 10.0.0.1/33 trust\n", 'invalid IP address "10.0.0.1/33"'),
        ("host all all samehost trust\n", 'address "samehost" is not supported'),
        ("local all all trust,reject\n", "multiple values specified for authentication type"),
        ('local "all all trust\n', "unterminated quoted string"),
    ],
)
def test_parse_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    """Load errors name the line and file, as hba.c's `line N of configuration file "..."`."""
    err = load_error(tmp_path, "# header\n\n" + text)
    assert message in err
    assert f'line 3 of configuration file "{tmp_path / "pg_hba.conf"}"' in err


def test_empty_file(tmp_path: Path) -> None:
    assert load(tmp_path, "# nothing\n   \n") == []


# ---- matching -------------------------------------------------------------------------------


def test_first_match_wins(tmp_path: Path) -> None:
    """hba.c check_hba: rules are tried in order and the first match decides, even `reject`."""
    rules = load(
        tmp_path,
        "host all bob 127.0.0.1/32 reject\nhost all all 127.0.0.0/8 trust\nhost all all 0.0.0.0/0 reject\n",
    )
    assert find(rules, user="bob") == 1
    assert rules[0].method == "reject"
    assert find(rules, user="alice") == 2
    assert find(rules, user="bob", address="127.0.0.2") == 2
    assert find(rules, address="10.1.2.3") == 3


def test_local_and_host_do_not_cross(tmp_path: Path) -> None:
    rules = load(tmp_path, "local all all trust\nhost all all 0.0.0.0/0 reject\n")
    assert find(rules, address=None) == 1
    assert find(rules, address="127.0.0.1") == 2
    assert find(load(tmp_path, "local all all trust\n"), address="127.0.0.1") is None
    assert find(load(tmp_path, "host all all all trust\n"), address=None) is None


def test_no_match_is_none(tmp_path: Path) -> None:
    rules = load(tmp_path, "host db1 u1 10.0.0.0/8 trust\n")
    assert find(rules, address="10.0.0.1", user="u1", database="db1") == 1
    assert find(rules, address="11.0.0.1", user="u1", database="db1") is None
    assert find(rules, address="10.0.0.1", user="u2", database="db1") is None
    assert find(rules, address="10.0.0.1", user="u1", database="db2") is None
    assert find([], address="10.0.0.1") is None


def test_ipv6(tmp_path: Path) -> None:
    """An IPv4 rule never matches an IPv6 client (hba.c check_ip compares families)."""
    rules = load(
        tmp_path, "host all all 0.0.0.0/0 reject\nhost all all fe80::/10 trust\nhost all all ::/0 reject\n"
    )
    assert find(rules, address="fe80::1%eth0") == 2  # zone id ignored
    assert find(rules, address="::1") == 3
    assert find(rules, address="::ffff:127.0.0.1") == 3
    assert find(rules, address="127.0.0.1") == 1


def test_all_address_and_all_keywords(tmp_path: Path) -> None:
    rules = load(tmp_path, "host all all all trust\n")
    assert find(rules, address="8.8.8.8", user="x", database="y") == 1
    assert find(rules, address="2001:db8::1") == 1


def test_replication_keyword(tmp_path: Path) -> None:
    """`replication` matches only replication connections, and `all` does not match them."""
    rules = load(tmp_path, "host replication all 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 trust\n")
    assert find(rules, replication=False, database="replication") == 2
    assert find(rules, replication=True) == 1
    only_all = load(tmp_path, "host all all 127.0.0.1/32 trust\n")
    assert find(only_all, replication=True) is None
    named = load(tmp_path, 'host "replication" all 127.0.0.1/32 trust\n')
    assert find(named, replication=True) is None
    assert find(named, database="replication") == 1


def test_sameuser(tmp_path: Path) -> None:
    """`sameuser`/`samerole` match only when the database is named like the user."""
    rules = load(tmp_path, "host sameuser all 127.0.0.1/32 trust\nhost samerole all 127.0.0.1/32 reject\n")
    assert find(rules, user="alice", database="alice") == 1
    assert find(rules, user="alice", database="postgres") is None


def test_ssl_only_rules_never_match(tmp_path: Path) -> None:
    """pgbed never negotiates SSL/GSS, so hostssl/hostgssenc rules are skipped."""
    rules = load(
        tmp_path, "hostssl all all all trust\nhostgssenc all all all trust\nhostnogssenc all all all reject\n"
    )
    assert find(rules) == 3
