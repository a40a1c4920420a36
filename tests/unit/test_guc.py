"""node.guc: the settings table, value parsing, SHOW, SET/RESET, reload semantics (PostgreSQL 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node import guc
from node.conffile import ConfigItem, parse_config_file, parse_config_text
from node.guc import GucContext, GucError, GucFlag, GucSource, GucState, GucType, LogLine

CONF = "/data/postgresql.conf"
SOME_APPLIED = f'configuration file "{CONF}" contains errors; unaffected changes were applied'


def items(*pairs: tuple[str, str]) -> list[ConfigItem]:
    return [ConfigItem(n, v, CONF, i + 1) for i, (n, v) in enumerate(pairs)]


def messages(lines: list[LogLine]) -> list[str]:
    return [line.message for line in lines]


def set_error(state: GucState, name: str, value: str | None) -> GucError:
    with pytest.raises(GucError) as ei:
        state.set(name, value)
    return ei.value


# ---- the table -----------------------------------------------------------------------------


def test_table_shape() -> None:
    for name, s in guc.SETTINGS.items():
        assert name == s.name
        assert s.short_desc
        if s.type in (GucType.INT, GucType.REAL):
            assert s.min is not None and s.max is not None and s.min <= s.default <= s.max, name
        if s.type is GucType.ENUM:
            assert s.default in [n for n, _, hidden in s.enum_values if not hidden], name
    assert guc.lookup("datestyle") is guc.SETTINGS["DateStyle"]
    assert guc.lookup("TIMEZONE") is guc.SETTINGS["TimeZone"]
    reported = {n for n, s in guc.SETTINGS.items() if s.flags & GucFlag.REPORT}
    assert reported == set(guc.REPORTED_ORDER)
    assert len(guc.REPORTED_ORDER) == 13


@pytest.mark.parametrize(
    ("name", "context"),
    [
        ("port", GucContext.POSTMASTER),
        ("shared_buffers", GucContext.POSTMASTER),
        ("checkpoint_timeout", GucContext.SIGHUP),
        ("log_connections", GucContext.SU_BACKEND),
        ("log_min_messages", GucContext.SUSET),
        ("work_mem", GucContext.USERSET),
        ("server_version", GucContext.INTERNAL),
        ("injection_points", GucContext.SIGHUP),
        ("pgbed.metrics_port", GucContext.POSTMASTER),
    ],
)
def test_contexts(name: str, context: GucContext) -> None:
    assert guc.SETTINGS[name].context is context


def test_context_labels() -> None:
    assert [c.label for c in GucContext] == [
        "internal", "postmaster", "sighup", "superuser-backend", "backend", "superuser", "user",
    ]


# ---- SHOW formatting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("shared_buffers", "128MB"),
        ("max_wal_size", "1GB"),
        ("min_wal_size", "80MB"),
        ("wal_segment_size", "16MB"),
        ("work_mem", "4MB"),
        ("maintenance_work_mem", "64MB"),
        ("checkpoint_timeout", "5min"),
        ("authentication_timeout", "1min"),
        ("wal_sender_timeout", "1min"),
        ("wal_retrieve_retry_interval", "5s"),
        ("wal_receiver_status_interval", "10s"),
        ("statement_timeout", "0"),
        ("checkpoint_completion_target", "0.9"),
        ("fsync", "on"),
        ("hot_standby_feedback", "off"),
        ("unix_socket_permissions", "0777"),
        ("data_directory_mode", "0700"),
        ("server_version_num", "150018"),
        ("server_version", "15.18"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "Etc/UTC"),
        ("search_path", '"$user", public'),
        ("log_line_prefix", "%m [%p] %b "),
        ("wal_level", "replica"),
        ("pgbed.metrics_port", "9187"),
    ],
)
def test_default_show(name: str, shown: str) -> None:
    assert GucState().show(name) == shown


@pytest.mark.parametrize(
    ("name", "value", "base", "shown"),
    [
        ("checkpoint_timeout", "5min", 300, "5min"),
        ("checkpoint_timeout", "90", 90, "90s"),
        ("checkpoint_timeout", "3600000ms", 3600, "1h"),
        ("checkpoint_timeout", "1d", 86400, "1d"),
        ("statement_timeout", "1.5s", 1500, "1500ms"),
        ("statement_timeout", "2s", 2000, "2s"),
        ("statement_timeout", "0x10", 16, "16ms"),
        ("statement_timeout", "100us", 0, "0"),
        ("statement_timeout", "600us", 1, "1ms"),
        ("work_mem", "1GB", 1048576, "1GB"),
        ("work_mem", "1.5GB", 1572864, "1536MB"),
        ("work_mem", "65kB", 65, "65kB"),
        ("work_mem", "2048", 2048, "2MB"),
        ("work_mem", "1048576B", 1024, "1MB"),
        ("work_mem", "  512 kB ", 512, "512kB"),
        ("max_wal_size", "2GB", 2048, "2GB"),
        ("max_wal_size", "1TB", 1048576, "1TB"),
        ("lock_timeout", "1 min", 60000, "1min"),
    ],
)
def test_units_in_and_out(name: str, value: str, base: int, shown: str) -> None:
    st = GucState()
    st.set_internal(name, value)  # checkpoint_timeout and max_wal_size cannot be SET
    assert st.get(name) == base
    assert st.show(name) == shown


def test_block_units_and_startup_only_settings() -> None:
    st = GucState()
    st.apply_startup([], [("shared_buffers", "1GB"), ("unix_socket_permissions", "0700")])
    assert st.get("shared_buffers") == 131072
    assert st.show("shared_buffers") == "1GB"
    assert st.get("unix_socket_permissions") == 0o700
    assert st.show("unix_socket_permissions") == "0700"
    st.apply_startup([], [("shared_buffers", "1012kB")])
    assert st.get("shared_buffers") == 126  # 126.5 blocks, rounded half to even (rint)
    assert st.show("shared_buffers") == "1008kB"
    st.apply_startup([], [("shared_buffers", "1004kB")])
    assert st.get("shared_buffers") == 126  # 125.5 blocks


# ---- value errors --------------------------------------------------------------------------


def test_int_range_error_names_the_base_unit() -> None:
    st = GucState()
    e = set_error(st, "statement_timeout", "-5")
    assert e.message == '-5 ms is outside the valid range for parameter "statement_timeout" (0 .. 2147483647)'
    assert e.sqlstate == "22023"
    st2 = GucState()
    with pytest.raises(GucError) as ei:
        st2.apply_startup([], [("port", "70000")])
    assert ei.value.message == '70000 is outside the valid range for parameter "port" (1 .. 65535)'
    with pytest.raises(GucError) as ei:
        st2.apply_startup(items(("checkpoint_timeout", "10")), [])
    assert ei.value.log_lines[0].message == (
        '10 s is outside the valid range for parameter "checkpoint_timeout" (30 .. 86400)'
    )
    with pytest.raises(GucError) as ei:
        st2.apply_startup([], [("shared_buffers", "8")])
    assert ei.value.message == (
        '8 8kB is outside the valid range for parameter "shared_buffers" (16 .. 1073741823)'
    )


def test_invalid_unit_hints() -> None:
    st = GucState()
    e = set_error(st, "work_mem", "10mb")
    assert e.message == 'invalid value for parameter "work_mem": "10mb"'
    assert e.hint == 'Valid units for this parameter are "B", "kB", "MB", "GB", and "TB".'
    e = set_error(st, "lock_timeout", "5 minutes")
    assert e.hint == 'Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".'
    e = set_error(st, "max_parallel_workers", "5s")  # no unit accepted at all: no hint
    assert e.message == 'invalid value for parameter "max_parallel_workers": "5s"'
    assert e.hint is None
    e = set_error(st, "work_mem", "abc")
    assert (e.message, e.hint) == ('invalid value for parameter "work_mem": "abc"', None)
    e = set_error(st, "statement_timeout", "3000000000")
    assert e.hint == "Value exceeds integer range."


def test_real_range_error() -> None:
    st = GucState()
    with pytest.raises(GucError) as ei:
        st.apply_startup(items(("checkpoint_completion_target", "1.5")), [])
    assert ei.value.log_lines[0].message == (
        '1.5 is outside the valid range for parameter "checkpoint_completion_target" (0 .. 1)'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("on", True), ("OFF", False), ("true", True), ("t", True), ("tr", True), ("FALSE", False),
        ("f", False), ("yes", True), ("y", True), ("no", False), ("n", False), ("1", True),
        ("0", False), ("of", False), ("On", True),
    ],
)
def test_bool_values(value: str, expected: bool) -> None:
    st = GucState()
    st.set("standard_conforming_strings", value)
    assert st.get("standard_conforming_strings") is expected


@pytest.mark.parametrize("value", ["o", "", "2", "truex", "onn", "yess", " on"])
def test_bool_errors(value: str) -> None:
    e = set_error(GucState(), "default_transaction_read_only", value)
    assert e.message == 'parameter "default_transaction_read_only" requires a Boolean value'
    assert e.sqlstate == "22023"


def test_enum_values_and_errors() -> None:
    st = GucState()
    st.set("IntervalStyle", "ISO_8601")
    assert st.show("IntervalStyle") == "iso_8601"
    st.set("synchronous_commit", "true")  # hidden alias, shown by its canonical name
    assert st.show("synchronous_commit") == "on"
    st.set("client_min_messages", "debug")
    assert st.show("client_min_messages") == "debug2"
    e = set_error(st, "IntervalStyle", "german")
    assert e.message == 'invalid value for parameter "IntervalStyle": "german"'
    assert e.hint == "Available values: postgres, postgres_verbose, sql_standard, iso_8601."
    e = set_error(st, "log_min_messages", "loud")
    assert e.hint == (
        "Available values: debug5, debug4, debug3, debug2, debug1, info, notice, warning, error, log, "
        "fatal, panic."
    )
    e = set_error(st, "client_min_messages", "panic")
    assert e.hint == (
        "Available values: debug5, debug4, debug3, debug2, debug1, log, notice, warning, error."
    )


def test_check_hooks() -> None:
    st = GucState()
    st.set("datestyle", "german")
    assert st.show("DateStyle") == "German, DMY"
    st.set("DateStyle", "sql")
    assert st.show("DateStyle") == "SQL, DMY"  # the order is kept from the current value
    st.set("DateStyle", "postgres, ymd")
    assert st.show("DateStyle") == "Postgres, YMD"
    e = set_error(st, "datestyle", "iso, sql")
    assert e.message == 'invalid value for parameter "DateStyle": "iso, sql"'
    assert e.detail == 'Conflicting "datestyle" specifications.'
    e = set_error(st, "DateStyle", "klingon")
    assert e.detail == 'Unrecognized key word: "klingon".'
    st.set("client_encoding", "unicode")
    assert st.show("client_encoding") == "UTF8"
    e = set_error(st, "client_encoding", "nonesuch")
    assert e.message == 'invalid value for parameter "client_encoding": "nonesuch"'
    e = set_error(st, "search_path", 'a, "b')
    assert e.detail == "List syntax is invalid."
    st.set("application_name", "caf\u00e9\n")
    assert st.show("application_name") == "caf???"


def test_timezone() -> None:
    st = GucState()
    st.set("timezone", "Europe/Berlin")
    assert st.show("TimeZone") == "Europe/Berlin"
    e = set_error(st, "TimeZone", "Mars/Olympus_Mons")
    assert e.message == 'invalid value for parameter "TimeZone": "Mars/Olympus_Mons"'


def test_log_destination() -> None:
    st = GucState()
    with pytest.raises(GucError) as ei:
        st.apply_startup(items(("log_destination", "stderr, carrier_pigeon")), [])
    line = ei.value.log_lines[0]
    assert line.message == 'invalid value for parameter "log_destination": "stderr, carrier_pigeon"'
    assert line.detail == 'Unrecognized key word: "carrier_pigeon".'
    st.apply_startup(items(("log_destination", "stderr,csvlog,jsonlog")), [])
    assert st.show("log_destination") == "stderr,csvlog,jsonlog"


def test_injection_points_syntax_and_validator_hook() -> None:
    st = GucState()
    st.apply_startup(items(("injection_points", "walsender-loop:sleep:5, ckpt-start:error")), [])
    assert st.get("injection_points") == "walsender-loop:sleep:5, ckpt-start:error"
    with pytest.raises(GucError) as ei:
        GucState().apply_startup(items(("injection_points", "justaname")), [])
    assert ei.value.log_lines[0].detail == 'Invalid injection point specification: "justaname".'

    def actions(value: str) -> str | None:
        for item in value.split(","):
            action = item.strip().split(":")[1]
            if action not in ("sleep", "error", "panic"):
                return f'Unknown injection point action "{action}".'
        return None

    st2 = GucState()
    st2.validators["injection_points"] = actions
    lines = st2.reload(items(("injection_points", "x:explode")), CONF)
    assert lines[0] == LogLine(
        "LOG", 'invalid value for parameter "injection_points": "x:explode"', "22023",
        'Unknown injection point action "explode".',
    )
    assert st2.get("injection_points") == ""
    st2.reload(items(("injection_points", "x:panic")), CONF)
    assert st2.get("injection_points") == "x:panic"


# ---- names -----------------------------------------------------------------------------------


def test_unknown_names_and_placeholders() -> None:
    st = GucState()
    e = set_error(st, "no_such_setting", "1")
    assert (e.sqlstate, e.message) == ("42704", 'unrecognized configuration parameter "no_such_setting"')
    with pytest.raises(GucError) as ei:
        st.show("myext.knob")
    assert ei.value.message == 'unrecognized configuration parameter "myext.knob"'
    st.set("myext.knob", "42")
    assert st.show("MyExt.Knob") == "42"
    assert st.get("myext.knob") == "42"
    assert "myext.knob" not in [r[0] for r in st.show_all()]
    e = set_error(st, "pgbed.nonesuch", "1")
    assert e.sqlstate == "42602"
    assert e.message == 'invalid configuration parameter name "pgbed.nonesuch"'
    assert e.detail == '"pgbed" is a reserved prefix.'
    e = set_error(st, "a..b", "1")
    assert e.message == 'invalid configuration parameter name "a..b"'
    assert e.detail == "Custom parameter names must be two or more simple identifiers separated by dots."
    assert st.show("pgbed.historic_bugs") == ""  # real pgbed.* settings are not placeholders


# ---- SET context errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("port", 'parameter "port" cannot be changed without restarting the server'),
        ("shared_buffers", 'parameter "shared_buffers" cannot be changed without restarting the server'),
        ("checkpoint_timeout", 'parameter "checkpoint_timeout" cannot be changed now'),
        ("server_version", 'parameter "server_version" cannot be changed'),
        ("in_hot_standby", 'parameter "in_hot_standby" cannot be changed'),
        ("log_connections", 'parameter "log_connections" cannot be set after connection start'),
    ],
)
def test_set_context_errors(name: str, message: str) -> None:
    st = GucState()
    before = st.show(name)
    e = set_error(st, name, "1")
    assert (e.sqlstate, e.message) == ("55P02", message)
    assert st.show(name) == before


def test_set_reset_and_reset_all() -> None:
    st = GucState()
    st.apply_startup(items(("work_mem", "8MB")), [])
    st.set("work_mem", "16MB")
    st.set("lock_timeout", "5s")
    st.set("log_min_messages", "debug1")  # superuser context: allowed, every session is superuser
    assert st.source("work_mem") is GucSource.SESSION
    st.reset("work_mem")
    assert st.show("work_mem") == "8MB"  # reset goes to the file value, not the built-in default
    assert st.source("work_mem") is GucSource.FILE
    st.set("work_mem", "32MB")
    st.set("transaction_read_only", "on")
    st.reset_all()
    shown = (st.show("work_mem"), st.show("lock_timeout"), st.show("log_min_messages"))
    assert shown == ("8MB", "0", "warning")
    assert st.show("transaction_read_only") == "on"  # GUC_NO_RESET_ALL
    st.set("work_mem", "32MB")
    st.set("work_mem", None)  # SET ... TO DEFAULT
    assert st.show("work_mem") == "8MB"


def test_startup_packet_values_become_reset_values() -> None:
    st = GucState()
    st.set_startup_option("application_name", "psql")
    st.set_startup_option("log_connections", "on")  # backend context: allowed from the client
    st.set("application_name", "other")
    st.reset_all()
    assert st.show("application_name") == "psql"
    assert st.get("log_connections") is True
    with pytest.raises(GucError) as ei:
        st.set_startup_option("fsync", "off")
    assert ei.value.message == 'parameter "fsync" cannot be changed now'


def test_set_internal() -> None:
    st = GucState()
    st.set_internal("in_hot_standby", "on")
    assert st.show("in_hot_standby") == "on"
    st.set_internal("data_directory", "/data")
    assert st.get("data_directory") == "/data"
    assert st.reload(items(("data_directory", "/elsewhere")), CONF)[0].message == (
        'parameter "data_directory" cannot be changed without restarting the server'
    )


# ---- transactions ----------------------------------------------------------------------------


def test_set_in_rolled_back_transaction_reverts() -> None:
    st = GucState()
    st.begin_transaction()
    st.set("work_mem", "64MB")
    assert st.show("work_mem") == "64MB"
    st.end_transaction(commit=False)
    assert st.show("work_mem") == "4MB"
    st.begin_transaction()
    st.set("work_mem", "64MB")
    st.end_transaction(commit=True)
    assert st.show("work_mem") == "64MB"


def test_set_local_reverts_either_way() -> None:
    st = GucState()
    for commit in (True, False):
        st.begin_transaction()
        st.set("lock_timeout", "1s", local=True)
        assert st.show("lock_timeout") == "1s"
        st.end_transaction(commit=commit)
        assert st.show("lock_timeout") == "0"


def test_set_then_set_local_keeps_the_set_value_at_commit() -> None:
    st = GucState()
    st.begin_transaction()
    st.set("lock_timeout", "2s")
    st.set("lock_timeout", "1s", local=True)
    assert st.show("lock_timeout") == "1s"
    st.end_transaction(commit=True)
    assert st.show("lock_timeout") == "2s"


def test_set_local_then_set_keeps_the_set_value() -> None:
    st = GucState()
    st.begin_transaction()
    st.set("lock_timeout", "1s", local=True)
    st.set("lock_timeout", "3s")
    st.end_transaction(commit=True)
    assert st.show("lock_timeout") == "3s"


def test_set_local_outside_transaction_has_no_effect() -> None:
    st = GucState()
    st.set("lock_timeout", "1s", local=True)
    assert st.show("lock_timeout") == "0"


def test_reset_all_rolls_back() -> None:
    st = GucState()
    st.set("work_mem", "64MB")
    st.begin_transaction()
    st.reset_all()
    assert st.show("work_mem") == "4MB"
    st.end_transaction(commit=False)
    assert st.show("work_mem") == "64MB"


def test_placeholder_set_in_rolled_back_transaction_reverts_to_empty() -> None:
    st = GucState()
    st.begin_transaction()
    st.set("app.x", "1")
    st.end_transaction(commit=False)
    assert st.show("app.x") == ""


# ---- ParameterStatus -------------------------------------------------------------------------


def test_reported_order_and_changes() -> None:
    st = GucState()
    rep = st.reported()
    assert list(rep) == [
        "application_name", "client_encoding", "DateStyle", "default_transaction_read_only", "in_hot_standby",
        "integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding", "server_version",
        "session_authorization", "standard_conforming_strings", "TimeZone",
    ]
    assert rep["server_version"] == "15.18"
    assert rep["is_superuser"] == "on"
    assert st.take_report_changes() == {}
    st.set("application_name", "app")
    st.set("work_mem", "1MB")  # not reported
    st.set("DateStyle", "iso, mdy")  # same shown value: not a change
    st.set_internal("in_hot_standby", "on")
    assert st.take_report_changes() == {"application_name": "app", "in_hot_standby": "on"}
    assert st.take_report_changes() == {}


def test_show_all() -> None:
    rows = GucState().show_all()
    names = [r[0] for r in rows]
    assert names == sorted(names, key=str.lower)
    assert ("shared_buffers", "128MB", "Sets the number of shared memory buffers used by the server.") in rows
    assert "DateStyle" in names
    assert "is_superuser" not in names and "session_authorization" not in names  # GUC_NO_SHOW_ALL


# ---- startup -------------------------------------------------------------------------------


def test_startup_file_then_argv_priority() -> None:
    st = GucState()
    st.apply_startup(items(("port", "5433"), ("max_connections", "50"), ("port", "5434")), [("port", "6000")])
    assert st.get("port") == 6000
    assert st.source("port") is GucSource.ARGV
    assert st.get("max_connections") == 50


def test_startup_errors() -> None:
    with pytest.raises(GucError) as ei:
        GucState().apply_startup(items(("port", "x"), ("bogus", "1")), [])
    assert ei.value.message == f'configuration file "{CONF}" contains errors'
    assert messages(ei.value.log_lines) == [
        f'unrecognized configuration parameter "bogus" in file "{CONF}" line 2'
    ]
    with pytest.raises(GucError) as ei:
        GucState().apply_startup(items(("port", "x")), [])
    assert messages(ei.value.log_lines) == ['invalid value for parameter "port": "x"']
    with pytest.raises(GucError) as ei:
        GucState().apply_startup([], [("bogus", "1")])
    assert ei.value.message == 'unrecognized configuration parameter "bogus"'
    with pytest.raises(GucError) as ei:
        GucState().apply_startup(items(("server_version", "99")), [])
    assert messages(ei.value.log_lines) == ['parameter "server_version" cannot be changed']


# ---- reload --------------------------------------------------------------------------------


def started(*pairs: tuple[str, str], argv: list[tuple[str, str]] | None = None) -> GucState:
    st = GucState()
    st.apply_startup(items(*pairs), argv or [])
    return st


def test_reload_applies_sighup_and_user_settings() -> None:
    st = started(("checkpoint_timeout", "5min"))
    lines = st.reload(items(("checkpoint_timeout", "10min"), ("work_mem", "8MB"), ("fsync", "on")), CONF)
    assert lines == [
        LogLine("LOG", 'parameter "checkpoint_timeout" changed to "10min"', None, None),
        LogLine("LOG", 'parameter "work_mem" changed to "8MB"', None, None),
    ]
    assert st.show("checkpoint_timeout") == "10min"


def test_reload_refuses_postmaster_change_and_keeps_old_value() -> None:
    st = started(("port", "5433"), ("max_connections", "20"))
    lines = st.reload(items(("port", "6000"), ("max_connections", "20"), ("work_mem", "8MB")), CONF)
    assert lines == [
        LogLine("LOG", 'parameter "port" cannot be changed without restarting the server', "55P02", None),
        LogLine("LOG", 'parameter "work_mem" changed to "8MB"', None, None),
        LogLine("LOG", SOME_APPLIED, "F0000", None),
    ]
    assert st.get("port") == 5433
    assert st.get("work_mem") == 8192


def test_reload_same_postmaster_value_in_another_spelling_is_fine() -> None:
    st = started(("shared_buffers", "128MB"))
    assert st.reload(items(("shared_buffers", "16384")), CONF) == []


def test_reload_invalid_value_logged_and_old_kept() -> None:
    st = started(("checkpoint_timeout", "5min"))
    lines = st.reload(items(("checkpoint_timeout", "5 fortnights"), ("lock_timeout", "1s")), CONF)
    assert lines[0] == LogLine(
        "LOG", 'invalid value for parameter "checkpoint_timeout": "5 fortnights"', "22023", None,
        'Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".',
    )
    assert lines[1].message == 'parameter "lock_timeout" changed to "1s"'
    assert lines[-1].message == SOME_APPLIED
    assert st.show("checkpoint_timeout") == "5min"
    assert st.show("lock_timeout") == "1s"


def test_reload_unknown_name_applies_nothing() -> None:
    st = started()
    lines = st.reload(items(("work_mem", "8MB"), ("wrok_mem", "8MB")), CONF)
    assert messages(lines) == [
        f'unrecognized configuration parameter "wrok_mem" in file "{CONF}" line 2',
        f'configuration file "{CONF}" contains errors; no changes were applied',
    ]
    assert st.show("work_mem") == "4MB"


def test_reload_removed_line_reverts_to_default() -> None:
    st = started(("checkpoint_timeout", "10min"), ("work_mem", "8MB"))
    lines = st.reload(items(("work_mem", "8MB")), CONF)
    assert messages(lines) == [
        'parameter "checkpoint_timeout" removed from configuration file, reset to default'
    ]
    assert st.show("checkpoint_timeout") == "5min"
    assert st.source("checkpoint_timeout") is GucSource.DEFAULT


def test_reload_removed_postmaster_line_is_refused() -> None:
    st = started(("max_connections", "20"))
    lines = st.reload([], CONF)
    assert messages(lines) == [
        'parameter "max_connections" cannot be changed without restarting the server',
        SOME_APPLIED,
    ]
    assert st.get("max_connections") == 20


def test_reload_does_not_override_command_line() -> None:
    st = started(argv=[("checkpoint_timeout", "20min")])
    assert st.reload(items(("checkpoint_timeout", "10min")), CONF) == []
    assert st.show("checkpoint_timeout") == "20min"
    # the file's value is still validated
    assert st.reload(items(("checkpoint_timeout", "1")), CONF)[0].message == (
        '1 s is outside the valid range for parameter "checkpoint_timeout" (30 .. 86400)'
    )


def test_reload_does_not_override_session_set_but_reset_sees_it() -> None:
    st = started()
    st.set("work_mem", "64MB")
    assert st.reload(items(("work_mem", "8MB")), CONF) == []
    assert st.show("work_mem") == "64MB"
    st.reset("work_mem")
    assert st.show("work_mem") == "8MB"


def test_reload_rollback_restores_the_reloaded_value() -> None:
    st = started()
    st.begin_transaction()
    st.set("work_mem", "64MB")
    st.reload(items(("work_mem", "8MB")), CONF, in_postmaster=False)
    st.end_transaction(commit=False)
    assert st.show("work_mem") == "8MB"


def test_reload_in_child_is_quiet_and_leaves_backend_settings() -> None:
    st = started()
    lines = st.reload(items(("log_connections", "on"), ("lock_timeout", "2s"), ("port", "1")), CONF,
                      in_postmaster=False)
    assert st.get("log_connections") is False
    assert st.show("lock_timeout") == "2s"
    assert {line.level for line in lines} == {"DEBUG2"}
    pm = started()
    pm.reload(items(("log_connections", "on")), CONF)
    assert pm.get("log_connections") is True  # the postmaster takes it; new sessions inherit it


def test_reload_placeholders_and_reserved_prefix() -> None:
    st = started()
    lines = st.reload(
        items(("myext.mode", "fast"), ("pgbed.nope", "1"), ("pgbed.historic_bugs", "b1,b2")), CONF
    )
    assert lines == [
        LogLine("LOG", 'parameter "myext.mode" changed to "fast"', None, None),
        LogLine("LOG", 'invalid configuration parameter name "pgbed.nope"', "42602",
                '"pgbed" is a reserved prefix.'),
        LogLine("LOG", 'parameter "pgbed.historic_bugs" changed to "b1,b2"', None, None),
        LogLine("LOG", SOME_APPLIED, "F0000", None),
    ]
    assert st.show("myext.mode") == "fast"


def test_reload_from_file(tmp_path: Path) -> None:
    conf = tmp_path / "postgresql.conf"
    conf.write_text("checkpoint_timeout = 10min\nwork_mem = 8MB\n")
    st = GucState()
    lines = st.startup_from_file(conf, [])
    assert messages(lines) == [f'skipping missing configuration file "{tmp_path / "postgresql.auto.conf"}"']
    assert st.show("checkpoint_timeout") == "10min"

    (tmp_path / "postgresql.auto.conf").write_text("work_mem = '16MB'\n")
    conf.write_text("checkpoint_timeout = 15min\nwork_mem = 8MB\n")
    lines = st.reload_from_file(conf)
    assert messages(lines) == [
        'parameter "checkpoint_timeout" changed to "15min"',
        'parameter "work_mem" changed to "16MB"',  # ALTER SYSTEM's file is read last and wins
    ]

    conf.write_text("checkpoint_timeout = 20min\nwork_mem = = 8MB\n")
    lines = st.reload_from_file(conf)
    assert messages(lines) == [
        f'syntax error in file "{conf}" line 2, near token "="',
        f'configuration file "{conf}" contains errors; no changes were applied',
    ]
    assert st.show("checkpoint_timeout") == "15min"

    (tmp_path / "postgresql.auto.conf").write_text("work_mem 'x' 'y'\n")
    conf.write_text("checkpoint_timeout = 20min\n")
    lines = st.reload_from_file(conf)
    assert lines[-1].message == (
        'configuration file "postgresql.auto.conf" contains errors; no changes were applied'
    )


def test_startup_from_file_syntax_error(tmp_path: Path) -> None:
    conf = tmp_path / "postgresql.conf"
    conf.write_text("port = 5432 x\n")
    with pytest.raises(GucError) as ei:
        GucState().startup_from_file(conf, [])
    assert ei.value.message == f'configuration file "{conf}" contains errors'
    assert ei.value.log_lines[0].message == f'syntax error in file "{conf}" line 1, near token "x"'


# ---- initdb's postgresql.conf ----------------------------------------------------------------


def test_write_default_conf_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "postgresql.conf"
    guc.write_default_conf(path, {"port": "5433", "log_line_prefix": "%m [%p] it's ", "myext.x": "1"})
    text = path.read_text()
    parsed = parse_config_file(path)
    assert [(i.name, i.value) for i in parsed] == [
        ("port", "5433"), ("log_line_prefix", "%m [%p] it's "), ("myext.x", "1"),
    ]
    for s in guc.SETTINGS.values():
        if s.context is GucContext.INTERNAL or s.flags & GucFlag.NOT_IN_SAMPLE:
            continue
        if s.name in ("port", "log_line_prefix"):
            assert f"\n{s.name} = " in text
            continue
        assert f"\n#{s.name.lower()} = " in text, s.name
    assert "#shared_buffers = 128MB" in text
    assert "#checkpoint_timeout = 5min" in text
    assert "#search_path = '\"$user\", public'" in text
    assert "#max_connections = 100\t\t\t# (change requires restart)" in text
    assert "server_version" not in text
    # the commented defaults, uncommented, are valid values equal to the defaults
    st = GucState()
    defaults = [line[1:] for line in text.splitlines() if line[:1] == "#" and line[1:2].isalpha()]
    st.apply_startup(parse_config_text("\n".join(defaults) + "\n", str(path)), [])
    for s in guc.SETTINGS.values():
        assert st.get(s.name) == s.default, s.name


def test_write_default_conf_rejects_bad_overrides(tmp_path: Path) -> None:
    with pytest.raises(GucError) as ei:
        guc.write_default_conf(tmp_path / "a.conf", {"port": "nope"})
    assert ei.value.message == 'invalid value for parameter "port": "nope"'
    with pytest.raises(GucError):
        guc.write_default_conf(tmp_path / "a.conf", {"prot": "1"})
