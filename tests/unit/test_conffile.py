"""node.conffile: postgresql.conf lexing and include handling, after PostgreSQL 15's guc-file.l."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.conffile import ConfigFileError, ConfigItem, parse_config_file, parse_config_text


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _pairs(items: list[ConfigItem]) -> list[tuple[str, str]]:
    return [(i.name, i.value) for i in items]


def test_basic_forms_and_comments(tmp_path: Path) -> None:
    conf = _write(tmp_path / "postgresql.conf", (
        "# a comment line\n"
        "\n"
        "port = 5433\n"
        "shared_buffers 256MB   # trailing comment\n"
        "checkpoint_completion_target=.5\n"
        "statement_timeout = -1\n"
        "listen_addresses = '*'\n"
        "log_directory = pg_log/sub:dir\n"
        "foo.bar = baz\n"
        "wal_level = replica"  # no final newline
    ))
    items = parse_config_file(conf)
    assert _pairs(items) == [
        ("port", "5433"),
        ("shared_buffers", "256MB"),
        ("checkpoint_completion_target", ".5"),
        ("statement_timeout", "-1"),
        ("listen_addresses", "*"),
        ("log_directory", "pg_log/sub:dir"),
        ("foo.bar", "baz"),
        ("wal_level", "replica"),
    ]
    assert [i.lineno for i in items] == [3, 4, 5, 6, 7, 8, 9, 10]
    assert all(i.filename == str(conf) for i in items)


def test_names_keep_their_spelling_and_duplicates_stay_in_order(tmp_path: Path) -> None:
    conf = _write(tmp_path / "p.conf", "DateStyle = 'iso, dmy'\nport = 1\nPORT = 2\n")
    assert _pairs(parse_config_file(conf)) == [("DateStyle", "iso, dmy"), ("port", "1"), ("PORT", "2")]


def test_quoted_string_escapes(tmp_path: Path) -> None:
    conf = _write(
        tmp_path / "p.conf",
        "a = 'it''s'\n"
        "b = 'tab\\there\\nnl'\n"
        "c = 'back\\\\slash \\' quote'\n"
        "d = '\\101\\1010'\n"
        "e = '\\q'\n"
        "f = ''\n"
        "g = 'caf\u00e9'\n",
    )
    values = dict(_pairs(parse_config_file(conf)))
    assert values == {
        "a": "it's",
        "b": "tab\there\nnl",
        "c": "back\\slash ' quote",
        "d": "AA0",
        "e": "q",
        "f": "",
        "g": "caf\u00e9",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 5432 5433\n", 'line 1, near token "5433"'),
        ("port =\n", "line 1, near end of line"),
        ("\n\nport\n", "line 3, near end of line"),
        ("max_wal_size = 1.5GB\n", 'line 1, near token "GB"'),
        ("= 5\n", 'line 1, near token "="'),
        ("dir = /tmp\n", 'line 1, near token "/"'),
        ("a.b.c = 1\n", 'line 1, near token "a.b.c"'),
        ("x = 'unterminated\n", "line 1, near token \"'\""),
        ("x = 1e5\n", 'line 1, near token "5"'),
    ],
)
def test_syntax_errors_have_postgres_text(tmp_path: Path, text: str, message: str) -> None:
    conf = _write(tmp_path / "p.conf", text)
    with pytest.raises(ConfigFileError) as ei:
        parse_config_file(conf)
    assert ei.value.message == f'syntax error in file "{conf}" {message}'
    assert ei.value.sqlstate == "42601"
    assert ei.value.filename == str(conf)


def test_parsing_continues_after_a_syntax_error(tmp_path: Path) -> None:
    conf = _write(tmp_path / "p.conf", "a = = 1\nport = 1\nb = 'x' junk\n")
    with pytest.raises(ConfigFileError) as ei:
        parse_config_file(conf)
    assert [p.lineno for p in ei.value.problems] == [1, 3]
    assert ei.value.problems[1].message == f'syntax error in file "{conf}" line 3, near token "junk"'


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigFileError) as ei:
        parse_config_file(missing)
    assert ei.value.message == f'could not open configuration file "{missing}": No such file or directory'
    assert ei.value.sqlstate == "58P01"
    notices: list[str] = []
    assert parse_config_file(missing, strict=False, notices=notices) == []
    assert notices == [f'skipping missing configuration file "{missing}"']


def test_include_relative_to_including_file(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    _write(sub / "inner.conf", "work_mem = 8MB\n")
    _write(sub / "mid.conf", "include 'inner.conf'\nport = 2\n")
    conf = _write(tmp_path / "p.conf", "port = 1\ninclude 'sub/mid.conf'\nlock_timeout = 5\n")
    items = parse_config_file(conf)
    assert _pairs(items) == [("port", "1"), ("work_mem", "8MB"), ("port", "2"), ("lock_timeout", "5")]
    assert items[1].filename == str(sub / "inner.conf")
    assert items[2].lineno == 2
    assert items[3].lineno == 3


def test_include_missing_is_an_error_but_include_if_exists_is_not(tmp_path: Path) -> None:
    conf = _write(tmp_path / "p.conf", "include_if_exists 'gone.conf'\nport = 1\n")
    notices: list[str] = []
    assert _pairs(parse_config_file(conf, notices=notices)) == [("port", "1")]
    assert notices == [f'skipping missing configuration file "{tmp_path / "gone.conf"}"']

    conf2 = _write(tmp_path / "q.conf", "port = 1\ninclude = 'gone.conf'\nport = 2\n")
    with pytest.raises(ConfigFileError) as ei:
        parse_config_file(conf2)
    assert ei.value.message == (
        f'could not open configuration file "{tmp_path / "gone.conf"}": No such file or directory'
    )
    assert (ei.value.filename, ei.value.lineno) == (str(conf2), 2)


def test_include_dir_reads_conf_files_in_name_order(tmp_path: Path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    _write(d / "20-b.conf", "port = 20\n")
    _write(d / "10-a.conf", "port = 10\n")
    _write(d / ".hidden.conf", "port = 99\n")
    _write(d / "notes.txt", "port = 98\n")
    (d / "sub.conf").mkdir()
    conf = _write(tmp_path / "p.conf", "include_dir 'conf.d'\nport = 30\n")
    assert _pairs(parse_config_file(conf)) == [("port", "10"), ("port", "20"), ("port", "30")]


def test_include_dir_missing(tmp_path: Path) -> None:
    conf = _write(tmp_path / "p.conf", "include_dir 'nodir'\n")
    with pytest.raises(ConfigFileError) as ei:
        parse_config_file(conf)
    assert ei.value.message == (
        f'could not open configuration directory "{tmp_path / "nodir"}": No such file or directory'
    )


def test_nesting_depth_limit(tmp_path: Path) -> None:
    # a.conf (depth 0) includes b.conf (1) includes a.conf (2) ...: b.conf at depth 11 is refused
    _write(tmp_path / "a.conf", "include 'b.conf'\n")
    _write(tmp_path / "b.conf", "include 'a.conf'\n")
    with pytest.raises(ConfigFileError) as ei:
        parse_config_file(tmp_path / "a.conf")
    assert ei.value.message == (
        'could not open configuration file "b.conf": maximum nesting depth exceeded'
    )
    assert ei.value.sqlstate == "54000"


def test_ten_levels_of_nesting_are_allowed(tmp_path: Path) -> None:
    for i in range(10):
        _write(tmp_path / f"l{i}.conf", f"include 'l{i + 1}.conf'\n")
    _write(tmp_path / "l10.conf", "port = 7\n")
    assert _pairs(parse_config_file(tmp_path / "l0.conf")) == [("port", "7")]


def test_direct_recursion(tmp_path: Path) -> None:
    conf = _write(tmp_path / "p.conf", "include 'p.conf'\n")
    with pytest.raises(ConfigFileError) as ei:
        parse_config_file(conf)
    assert ei.value.message == f'configuration file recursion in "{conf}"'


def test_parse_config_text() -> None:
    assert _pairs(parse_config_text("a = 1\nb 'two'\n", "/x/y.conf")) == [("a", "1"), ("b", "two")]
