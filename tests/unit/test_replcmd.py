"""node.replcmd: the replication command grammar (wire-protocol.md §3; PostgreSQL 15's repl_gram.y and
repl_scanner.l): which texts are replication commands, what each parses to, and the scanner's and
grammar's errors (PGError, SQLSTATE 42601)."""

from __future__ import annotations

import pytest

from node import replcmd
from node.elog import PGError
from node.replcmd import (
    BaseBackup,
    CreateSlot,
    DropSlot,
    IdentifySystem,
    ReadSlot,
    Show,
    StartReplication,
    TimelineHistory,
)


def parse_error(text: str) -> PGError:
    with pytest.raises(PGError) as ei:
        replcmd.parse(text)
    return ei.value


def assert_syntax_error(text: str) -> None:
    e = parse_error(text)
    assert (e.sqlstate, e.message) == ("42601", "syntax error"), text


# ---- what is a replication command -----------------------------------------------------------


@pytest.mark.parametrize("text", ["SELECT 1", "select", "", "   ", ";", "BEGIN", "VACUUM", "(IDENTIFY_SYSTEM)"])
def test_sql_text_is_not_a_replication_command(text: str) -> None:
    assert replcmd.is_replication_command(text) is False
    assert replcmd.parse(text) is None


@pytest.mark.parametrize(
    "text",
    ["IDENTIFY_SYSTEM", "  SHOW x", "BASE_BACKUP", "START_REPLICATION 0/0", "TIMELINE_HISTORY 1",
     "CREATE_REPLICATION_SLOT s PHYSICAL", "DROP_REPLICATION_SLOT s", "READ_REPLICATION_SLOT s"],
)  # fmt: skip
def test_replication_keywords_are_recognised(text: str) -> None:
    assert replcmd.is_replication_command(text) is True


def test_sql_is_not_tokenised() -> None:
    # Only the first token decides: SQL that the replication scanner could not lex is still just SQL.
    assert replcmd.parse("SELECT 'unterminated") is None
    assert replcmd.parse('SELECT "x') is None


@pytest.mark.parametrize("text", ["SHOW1", "BASE_BACKUP2", "IDENTIFY_SYSTEM$x", "SHOW2 work_mem"])
def test_identifier_starting_with_a_keyword_is_sql(text: str) -> None:
    assert replcmd.parse(text) is None


@pytest.mark.parametrize("text", ["identify_system", "Identify_System;", "show work_mem"])
def test_keywords_are_case_sensitive_like_postgresql(text: str) -> None:
    assert replcmd.parse(text) is None


# ---- IDENTIFY_SYSTEM, SHOW, TIMELINE_HISTORY -------------------------------------------------


@pytest.mark.parametrize(
    "text", ["IDENTIFY_SYSTEM", "IDENTIFY_SYSTEM;", "  IDENTIFY_SYSTEM  ;  ", "\tIDENTIFY_SYSTEM\n"]
)
def test_identify_system(text: str) -> None:
    assert replcmd.parse(text) == IdentifySystem()


def test_identify_system_takes_no_arguments() -> None:
    assert_syntax_error("IDENTIFY_SYSTEM x")
    assert_syntax_error("IDENTIFY_SYSTEM 1")
    assert_syntax_error("IDENTIFY_SYSTEM ; x")


def test_only_one_trailing_semicolon() -> None:
    assert_syntax_error("IDENTIFY_SYSTEM;;")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("SHOW work_mem", "work_mem"),
        ("SHOW Work_Mem", "work_mem"),  # identifiers are downcased
        ("SHOW wal_segment_size;", "wal_segment_size"),
        ("SHOW a.b", "a.b"),
        ("SHOW a . b . c", "a.b.c"),
        ('SHOW "Custom".Opt', "Custom.opt"),  # quoted parts keep their case
    ],
)
def test_show(text: str, name: str) -> None:
    assert replcmd.parse(text) == Show(name)


@pytest.mark.parametrize("text", ["SHOW", "SHOW a.", "SHOW .a", "SHOW a b", "SHOW 'work_mem'", "SHOW 1", "SHOW @"])
def test_show_syntax_errors(text: str) -> None:
    assert_syntax_error(text)


def test_timeline_history() -> None:
    assert replcmd.parse("TIMELINE_HISTORY 3") == TimelineHistory(3)
    assert replcmd.parse("TIMELINE_HISTORY 42;") == TimelineHistory(42)
    e = parse_error("TIMELINE_HISTORY 0")
    assert (e.sqlstate, e.message) == ("42601", "invalid timeline 0")
    assert_syntax_error("TIMELINE_HISTORY")
    assert_syntax_error("TIMELINE_HISTORY x")
    assert_syntax_error("TIMELINE_HISTORY 1 2")


# ---- START_REPLICATION -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("START_REPLICATION 0/0", StartReplication(0, 0, None)),
        ("START_REPLICATION 0/3000000", StartReplication(0x3000000, 0, None)),
        ("START_REPLICATION 1/AbCdEf01", StartReplication((1 << 32) | 0xABCDEF01, 0, None)),
        ("START_REPLICATION FFFFFFFF/FFFFFFFF", StartReplication(0xFFFFFFFF_FFFFFFFF, 0, None)),
        ("START_REPLICATION PHYSICAL 0/1000", StartReplication(0x1000, 0, None)),
        ("START_REPLICATION 0/1000 TIMELINE 2", StartReplication(0x1000, 2, None)),
        ("START_REPLICATION SLOT s1 0/1000", StartReplication(0x1000, 0, "s1")),
        ("START_REPLICATION SLOT s1 PHYSICAL 0/1000 TIMELINE 7;", StartReplication(0x1000, 7, "s1")),
        ("START_REPLICATION SLOT MySlot PHYSICAL 0/0", StartReplication(0, 0, "myslot")),
        ('START_REPLICATION SLOT "Slot" PHYSICAL 0/0', StartReplication(0, 0, "Slot")),
        ('START_REPLICATION SLOT "a""b" 0/0', StartReplication(0, 0, 'a"b')),
    ],
)
def test_start_replication_physical(text: str, expected: StartReplication) -> None:
    cmd = replcmd.parse(text)
    assert cmd == expected
    assert isinstance(cmd, StartReplication) and cmd.logical is False


def test_start_replication_logical_is_parsed_so_it_can_be_refused() -> None:
    assert replcmd.parse("START_REPLICATION SLOT Sub LOGICAL 0/16B3748") == StartReplication(
        0x16B3748, 0, "sub", logical=True
    )
    assert replcmd.parse("START_REPLICATION SLOT s LOGICAL 1/0 (proto_version '1', publication_names 'p')") == (
        StartReplication(1 << 32, 0, "s", logical=True)
    )


@pytest.mark.parametrize(
    "text",
    [
        "START_REPLICATION SLOT s LOGICAL 0/0 junk",
        "START_REPLICATION LOGICAL 0/0",
        "START_REPLICATION SLOT s LOGICAL 0/0 (a",
    ],
)
def test_start_replication_logical_syntax_errors(text: str) -> None:
    assert_syntax_error(text)


@pytest.mark.parametrize("lsn", ["123456789/0", "0/123456789", "000000000/0"])
def test_start_replication_lsn_with_more_than_eight_hex_digits(lsn: str) -> None:
    e = parse_error(f"START_REPLICATION {lsn}")
    assert (e.sqlstate, e.message) == ("42601", "invalid streaming start location")


def test_start_replication_timeline_zero() -> None:
    e = parse_error("START_REPLICATION 0/0 TIMELINE 0")
    assert (e.sqlstate, e.message) == ("42601", "invalid timeline 0")


@pytest.mark.parametrize(
    "text",
    [
        "START_REPLICATION",
        "START_REPLICATION 0",
        "START_REPLICATION 0/",
        "START_REPLICATION '0/0'",
        "START_REPLICATION SLOT 0/0",
        "START_REPLICATION SLOT s",
        "START_REPLICATION 0/0 PHYSICAL",
        "START_REPLICATION 0/0 TIMELINE",
        "START_REPLICATION 0/0 TIMELINE x",
        "START_REPLICATION 0/0 junk",
        "START_REPLICATION PHYSICAL SLOT s 0/0",
    ],
)
def test_start_replication_syntax_errors(text: str) -> None:
    assert_syntax_error(text)


# ---- slots -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CREATE_REPLICATION_SLOT s PHYSICAL", CreateSlot("s")),
        ("CREATE_REPLICATION_SLOT S1 PHYSICAL;", CreateSlot("s1")),
        ('CREATE_REPLICATION_SLOT "S1" PHYSICAL', CreateSlot("S1")),
        ("CREATE_REPLICATION_SLOT s TEMPORARY PHYSICAL", CreateSlot("s", temporary=True)),
        ("CREATE_REPLICATION_SLOT s PHYSICAL RESERVE_WAL", CreateSlot("s", reserve_wal=True)),
        ("CREATE_REPLICATION_SLOT s TEMPORARY PHYSICAL RESERVE_WAL", CreateSlot("s", True, False, True)),
        ("CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL)", CreateSlot("s", reserve_wal=True)),
        ("CREATE_REPLICATION_SLOT s PHYSICAL ( reserve_wal )", CreateSlot("s", reserve_wal=True)),
        ("CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL true)", CreateSlot("s", reserve_wal=True)),
        ("CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL false)", CreateSlot("s", reserve_wal=False)),
        ("CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL 0)", CreateSlot("s", reserve_wal=False)),
        ("CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL 'off')", CreateSlot("s", reserve_wal=False)),
        ("CREATE_REPLICATION_SLOT s LOGICAL pgoutput", CreateSlot("s", logical=True)),
        ("CREATE_REPLICATION_SLOT s TEMPORARY LOGICAL test_decoding (SNAPSHOT 'nothing')", CreateSlot("s", True, True)),
    ],
)
def test_create_replication_slot(text: str, expected: CreateSlot) -> None:
    assert replcmd.parse(text) == expected


def test_create_replication_slot_reserve_wal_is_a_defgetboolean() -> None:
    assert replcmd.parse("CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL 'FALSE')") == CreateSlot("s")
    for value in ("'maybe'", "2"):
        e = parse_error(f"CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL {value})")
        assert (e.sqlstate, e.message) == ("42601", "reserve_wal requires a Boolean value")


def test_create_replication_slot_unknown_option_in_list() -> None:
    e = parse_error("CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL, foo)")
    assert "foo" in e.message and "unrecognized option" in e.message
    assert e.message != "syntax error"


def test_create_replication_slot_unknown_option_wording() -> None:
    e = parse_error("CREATE_REPLICATION_SLOT s PHYSICAL (foo)")
    assert (e.sqlstate, e.message) == ("XX000", "unrecognized option: foo")


@pytest.mark.parametrize(
    "text",
    [
        "CREATE_REPLICATION_SLOT",
        "CREATE_REPLICATION_SLOT s",
        "CREATE_REPLICATION_SLOT s TEMPORARY",
        "CREATE_REPLICATION_SLOT PHYSICAL",
        "CREATE_REPLICATION_SLOT s PHYSICAL TEMPORARY",
        "CREATE_REPLICATION_SLOT s PHYSICAL BOGUS",
        "CREATE_REPLICATION_SLOT s PHYSICAL ()",
        "CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL",
        "CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL,)",
        "CREATE_REPLICATION_SLOT 's' PHYSICAL",
    ],
)
def test_create_replication_slot_syntax_errors(text: str) -> None:
    assert_syntax_error(text)


def test_drop_and_read_replication_slot() -> None:
    assert replcmd.parse("DROP_REPLICATION_SLOT s") == DropSlot("s", wait=False)
    assert replcmd.parse("DROP_REPLICATION_SLOT S WAIT") == DropSlot("s", wait=True)
    assert replcmd.parse('DROP_REPLICATION_SLOT "S" WAIT;') == DropSlot("S", wait=True)
    assert replcmd.parse("READ_REPLICATION_SLOT Phys") == ReadSlot("phys")
    assert replcmd.parse('READ_REPLICATION_SLOT "Phys";') == ReadSlot("Phys")
    for text in ["DROP_REPLICATION_SLOT", "DROP_REPLICATION_SLOT s NOWAIT", "DROP_REPLICATION_SLOT s WAIT x",
                 "READ_REPLICATION_SLOT", "READ_REPLICATION_SLOT a b", "READ_REPLICATION_SLOT 'a'"]:  # fmt: skip
        assert_syntax_error(text)


# ---- BASE_BACKUP -----------------------------------------------------------------------------


def test_base_backup_pg15_option_list() -> None:
    cmd = replcmd.parse(
        "BASE_BACKUP ( LABEL 'x', PROGRESS, CHECKPOINT 'fast', WAIT 0, MANIFEST 'yes', TARGET 'client')"
    )
    assert isinstance(cmd, BaseBackup)
    assert cmd.options == {
        "label": "x", "progress": None, "checkpoint": "fast", "wait": 0, "manifest": "yes", "target": "client",
    }  # fmt: skip
    assert list(cmd.options) == ["label", "progress", "checkpoint", "wait", "manifest", "target"]


def test_base_backup_option_values() -> None:
    cmd = replcmd.parse("BASE_BACKUP (Label 'My Backup', MAX_RATE 32768, WAL, Compression Gzip, CHECKPOINT fast);")
    assert cmd == BaseBackup({"label": "My Backup", "max_rate": 32768, "wal": None, "compression": "gzip",
                              "checkpoint": "fast"})  # fmt: skip
    assert replcmd.parse("BASE_BACKUP") == BaseBackup({})
    assert replcmd.parse("BASE_BACKUP;") == BaseBackup({})


def test_base_backup_legacy_keywords() -> None:
    cmd = replcmd.parse("BASE_BACKUP LABEL 'x' FAST WAL NOWAIT")
    assert cmd == BaseBackup({"label": "x", "checkpoint": "fast", "wal": None, "wait": "false"})
    cmd = replcmd.parse("BASE_BACKUP LABEL 'b' PROGRESS MAX_RATE 100 TABLESPACE_MAP NOVERIFY_CHECKSUMS MANIFEST 'yes'")
    assert cmd == BaseBackup({"label": "b", "progress": None, "max_rate": 100, "tablespace_map": None,
                              "verify_checksums": "false", "manifest": "yes"})  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "BASE_BACKUP ()",
        "BASE_BACKUP (LABEL 'x',)",
        "BASE_BACKUP (LABEL 'x' PROGRESS)",
        "BASE_BACKUP (LABEL 'x'",
        "BASE_BACKUP ('x')",
        "BASE_BACKUP (LABEL 'x') PROGRESS",
        "BASE_BACKUP LABEL",
        "BASE_BACKUP LABEL x",
        "BASE_BACKUP MAX_RATE fast",
        "BASE_BACKUP BOGUS",
    ],
)
def test_base_backup_syntax_errors(text: str) -> None:
    assert_syntax_error(text)


# ---- strings and identifiers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [("'it''s'", "it's"), ("''''", "'"), ("''", ""), ("'a''''b'", "a''b"), ("'x;y, (z)'", "x;y, (z)"),
     ("'\"q\"'", '"q"'), ("'back\\slash'", "back\\slash")],
)  # fmt: skip
def test_string_constants_and_quote_escapes(literal: str, value: str) -> None:
    assert replcmd.parse(f"BASE_BACKUP (LABEL {literal})") == BaseBackup({"label": value})
    assert replcmd.parse(f"BASE_BACKUP LABEL {literal}") == BaseBackup({"label": value})


@pytest.mark.parametrize("text", ["BASE_BACKUP LABEL 'abc", "BASE_BACKUP LABEL 'abc''", "BASE_BACKUP (LABEL ')"])
def test_unterminated_string(text: str) -> None:
    e = parse_error(text)
    assert (e.sqlstate, e.message) == ("42601", "unterminated quoted string")


def test_quoted_identifier_errors() -> None:
    e = parse_error('START_REPLICATION SLOT "abc 0/0')
    assert e.sqlstate == "42601" and e.message.startswith("unterminated quoted")
    e = parse_error('START_REPLICATION SLOT "" 0/0')
    assert (e.sqlstate, e.message) == ("42601", "zero-length delimited identifier")


def test_tokenize() -> None:
    assert replcmd.tokenize("START_REPLICATION SLOT \"X\" 1/2 TIMELINE 3;") == [
        ("word", "START_REPLICATION"), ("word", "SLOT"), ("ident", "X"), ("recptr", (1 << 32) | 2),
        ("word", "TIMELINE"), ("num", 3), ("punct", ";"),
    ]  # fmt: skip
    assert replcmd.tokenize("(a 'b''c', 12)") == [
        ("punct", "("), ("word", "a"), ("sconst", "b'c"), ("punct", ","), ("num", 12), ("punct", ")"),
    ]  # fmt: skip
    assert replcmd.tokenize("  ") == []
    with pytest.raises(PGError) as ei:
        replcmd.tokenize("SHOW @")
    assert (ei.value.sqlstate, ei.value.message) == ("42601", "syntax error")
