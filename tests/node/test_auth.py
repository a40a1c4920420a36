"""Password authentication and roles (issue 3 point 5): SCRAM-SHA-256 and md5 through
pg_hba.conf, CREATE ROLE … LOGIN PASSWORD with password_encryption, role existence, roles WAL-logged.
Messages and SQLSTATEs as PostgreSQL 15's (28P01, 28000)."""

from __future__ import annotations

import psycopg
import pytest

from orchestrator.localnode import LocalNode

HBA = """\
host all postgres 127.0.0.1/32 trust
host all bob 127.0.0.1/32 md5
host all carol 127.0.0.1/32 password
host all all 127.0.0.1/32 scram-sha-256
"""


@pytest.fixture
def secured(node_factory) -> LocalNode:
    n = node_factory(start=False)
    (n.datadir / "pg_hba.conf").write_text(HBA)
    n.start()
    with n.connect() as c:
        c.execute("CREATE ROLE alice LOGIN PASSWORD 'wonderland'")
        c.execute("SET password_encryption = 'md5'")
        c.execute("CREATE USER bob PASSWORD 'builder'")
        c.execute("RESET password_encryption")
        c.execute("CREATE USER carol PASSWORD 'singer'")
        c.execute("CREATE ROLE nologin PASSWORD 'x'")
    return n


def test_scram_right_and_wrong_password(secured: LocalNode) -> None:
    with secured.connect(user="alice", password="wonderland") as c:
        assert c.execute("SELECT current_user").fetchone() == ("alice",)
        assert c.info.parameter_status("is_superuser") == "off"
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "alice"'):
        secured.connect(user="alice", password="nope")
    assert secured.log_contains('Connection matched pg_hba.conf line 4: "host all all 127.0.0.1/32 scram-sha-256"')


def test_unknown_role_gets_the_same_answer(secured: LocalNode) -> None:
    """A mock exchange: whether the role exists is not revealed to the client; the log says why."""
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "mallory"'):
        secured.connect(user="mallory", password="x")
    assert secured.log_contains('Role "mallory" does not exist.')


def test_md5_and_password_methods(secured: LocalNode) -> None:
    with secured.connect(user="bob", password="builder") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "bob"'):
        secured.connect(user="bob", password="wrong")
    with secured.connect(user="carol", password="singer") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_role_without_login_and_trust_needs_existing_role(secured: LocalNode) -> None:
    with pytest.raises(psycopg.OperationalError, match='role "nologin" is not permitted to log in'):
        secured.connect(user="nologin", password="x")
    (secured.datadir / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
    secured.reload()
    secured.wait_for_log("received SIGHUP")
    with pytest.raises(psycopg.OperationalError, match='role "ghost" does not exist'):
        secured.connect(user="ghost")


def test_roles_survive_a_crash(secured: LocalNode) -> None:
    """pgbed_authid changes are ordinary WAL-logged changes: replayed after kill -9."""
    secured.kill9()
    secured.poll_until(lambda: not secured.orphans(), what="old children gone")
    secured.start()
    with secured.connect(user="alice", password="wonderland") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_role_statement_errors(secured: LocalNode) -> None:
    with secured.connect() as c:
        with pytest.raises(psycopg.errors.DuplicateObject, match='role "alice" already exists'):
            c.execute("CREATE ROLE alice")
        with pytest.raises(psycopg.errors.UndefinedObject):
            c.execute("DROP ROLE nobody")
        c.execute("DROP ROLE IF EXISTS nobody")
    with secured.connect(user="alice", password="wonderland") as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("CREATE ROLE eve")
