"""Settings: postgresql.conf, -c, SIGHUP reload, SHOW/SET/RESET, current_setting, pg_reload_conf.

Rules: SHUT-8 (reload honoured while Shutdown <= Smart; children get SIGHUP), PM-0 (reload
handled in the loop, not the handler), reference figures §"Behaviour seen" 10.
"""

from __future__ import annotations

import psycopg
import pytest

from orchestrator.localnode import LocalNode


def _set_in_file(node: LocalNode, **kv: str) -> None:
    node.append_conf(**kv)


def test_sighup_good_value_applies(node: LocalNode) -> None:
    """A sighup-context change is applied at reload, logged, and seen by new and old sessions."""
    old = node.connect()
    assert old.execute("SHOW checkpoint_timeout").fetchone() == ("1h",)
    _set_in_file(node, checkpoint_timeout="'10min'")
    off = node.log_offset()
    assert old.execute("SELECT pg_reload_conf()").fetchone() == (True,)
    node.wait_for_log('parameter "checkpoint_timeout" changed to "10min"', off)
    assert node.log_contains("received SIGHUP, reloading configuration files", off)
    assert node.sql("SHOW checkpoint_timeout") == [("10min",)]
    node.poll_until(lambda: old.execute("SHOW checkpoint_timeout").fetchone() == ("10min",),
                    what="existing session sees the reloaded value")
    old.close()


def test_sighup_bad_value_keeps_old_and_server(node: LocalNode) -> None:
    """An invalid value is logged and the old value kept; the server never dies of it."""
    _set_in_file(node, checkpoint_timeout="'banana'")
    off = node.log_offset()
    node.reload()
    node.wait_for_log(r'invalid value for parameter "checkpoint_timeout": "banana"', off)
    node.wait_for_log("contains errors; unaffected changes were applied", off)
    assert node.is_running()
    assert node.sql("SHOW checkpoint_timeout") == [("1h",)]


def test_sighup_postmaster_context_change_refused(node: LocalNode) -> None:
    """A changed postmaster-context setting is refused with PostgreSQL's message."""
    _set_in_file(node, max_connections="50")
    off = node.log_offset()
    node.reload()
    node.wait_for_log('parameter "max_connections" cannot be changed without restarting the server', off)
    assert node.sql("SHOW max_connections") == [("100",)]


def test_command_line_overrides_file(node_factory) -> None:
    """-c on the command line beats postgresql.conf and survives a reload."""
    n = node_factory(start=False, checkpoint_timeout="'2min'")
    n.start(extra=["-c", "checkpoint_timeout=7min"])
    assert n.sql("SHOW checkpoint_timeout") == [("7min",)]
    n.reload()
    n.wait_for_log("received SIGHUP")
    assert n.sql("SHOW checkpoint_timeout") == [("7min",)]


def test_invalid_startup_config_refuses_to_start(node_factory) -> None:
    """An invalid value at start is FATAL (PostgreSQL: the configuration file contains errors)."""
    n = node_factory(start=False, max_connections="-5")
    n.start(expect_fail=True)
    assert n.exit_code == 1
    assert n.log_contains(r'-5 is outside the valid range for parameter "max_connections" \(1 \.\. 262143\)')
    assert n.log_contains("contains errors")


def test_show_set_reset_current_setting(node: LocalNode) -> None:
    with node.connect() as c:
        # The test nodes are initialised with 1 MB segments: SHOW reports pg_control's size.
        assert c.execute("SHOW wal_segment_size").fetchone() == ("1MB",)
        assert c.execute("SHOW port").fetchone() == (str(node.port),)
        c.execute("SET application_name TO 'probe'")
        assert c.info.parameter_status("application_name") == "probe"  # ParameterStatus resent
        assert c.execute("SELECT current_setting('application_name')").fetchone() == ("probe",)
        assert c.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
                         ).fetchone() == ("probe",)
        c.execute("RESET application_name")
        assert c.execute("SHOW application_name").fetchone() == ("",)
        assert c.execute("SELECT current_setting('no.such', true)").fetchone() == (None,)
        with pytest.raises(psycopg.errors.UndefinedObject, match='unrecognized configuration parameter "nosuch"'):
            c.execute("SHOW nosuch")
        with pytest.raises(psycopg.errors.CantChangeRuntimeParam,
                           match='parameter "port" cannot be changed without restarting the server'):
            c.execute("SET port = 1")
        with pytest.raises(psycopg.errors.CantChangeRuntimeParam, match='parameter "checkpoint_timeout" cannot be '
                           "changed now"):
            c.execute("SET checkpoint_timeout = '1min'")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute("SET statement_timeout = 'soon'")


def test_set_in_rolled_back_transaction_reverts(node: LocalNode) -> None:
    with node.connect() as c:
        c.execute("BEGIN")
        c.execute("SET statement_timeout = '5s'")
        assert c.execute("SHOW statement_timeout").fetchone() == ("5s",)
        c.execute("ROLLBACK")
        assert c.execute("SHOW statement_timeout").fetchone() == ("0",)


def test_statement_timeout_cancels(node: LocalNode) -> None:
    with node.connect() as c:
        c.execute("SET statement_timeout = '200ms'")
        with pytest.raises(psycopg.errors.QueryCanceled, match="canceling statement due to statement timeout"):
            c.execute("SELECT pg_sleep(5)")
