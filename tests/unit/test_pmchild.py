"""node.pmchild: per-kind slot pools and the child table (PM: pmchild.c; STYLE 8)."""

from __future__ import annotations

from node.pmchild import AUX_POOL_SIZE, ChildTable, PMChild
from node.states import BackendKind


def test_pools_are_disjoint_and_sized_from_settings() -> None:
    t = ChildTable.for_settings(max_connections=3, max_worker_processes=2, max_wal_senders=1)
    assert t.pool_sizes == {"backend": 8, "bgworker": 2, "aux": AUX_POOL_SIZE}
    assert t.n_slots == 8 + 2 + AUX_POOL_SIZE
    slots = [t.assign(BackendKind.BACKEND) for _ in range(8)]
    slots += [t.assign(BackendKind.BGWORKER) for _ in range(2)]
    slots += [t.assign(BackendKind.CHECKPOINTER) for _ in range(AUX_POOL_SIZE)]
    assert sorted(slots) == list(range(t.n_slots))  # type: ignore[type-var]


def test_connection_flood_cannot_starve_aux_processes() -> None:
    """A full backend pool still leaves slots for the startup process and the checkpointer."""
    t = ChildTable.for_settings(max_connections=1, max_worker_processes=1, max_wal_senders=0)
    while t.assign(BackendKind.BACKEND) is not None:
        pass
    assert t.used("backend") == 2
    assert t.assign(BackendKind.STARTUP) is not None
    assert t.assign(BackendKind.CHECKPOINTER) is not None
    assert t.assign(BackendKind.BGWORKER) is not None


def test_exhaustion_and_release() -> None:
    t = ChildTable.for_settings(max_connections=1, max_worker_processes=1, max_wal_senders=0)
    a, b = t.assign(BackendKind.BACKEND), t.assign(BackendKind.BACKEND)
    assert t.assign(BackendKind.BACKEND) is None
    assert a is not None and b is not None
    t.release(BackendKind.BACKEND, a)
    assert t.assign(BackendKind.BACKEND) == a


def test_walsenders_share_the_backend_pool_dead_end_takes_none() -> None:
    t = ChildTable.for_settings(max_connections=1, max_worker_processes=1, max_wal_senders=0)
    t.assign(BackendKind.WALSENDER)
    assert t.used("backend") == 1
    assert t.assign(BackendKind.DEAD_END) == -1
    assert t.used("backend") == 1


def test_table_queries() -> None:
    t = ChildTable.for_settings(max_connections=2, max_worker_processes=1, max_wal_senders=0)
    t.add(PMChild(10, BackendKind.CHECKPOINTER, 0))
    t.add(PMChild(11, BackendKind.BACKEND, 1, cancel_key=77))
    t.add(PMChild(12, BackendKind.DEAD_END, -1))
    assert len(t) == 3 and 11 in t
    assert t.kinds() == {BackendKind.CHECKPOINTER, BackendKind.BACKEND, BackendKind.DEAD_END}
    assert t.count({BackendKind.BACKEND, BackendKind.DEAD_END}) == 2
    assert [c.pid for c in t.of_kinds(exclude={BackendKind.DEAD_END})] == [10, 11]
    assert t.cancel_keys() == {11: 77}
    assert t.pop(11) is not None and t.pop(11) is None
