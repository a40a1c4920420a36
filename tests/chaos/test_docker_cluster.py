"""The Docker backend of the Cluster API (orchestrator/dockercluster.py, dockernode.py) and the
container nemesis (orchestrator/nemesis/container.py).

- a 3-node DockerCluster comes up with both standbys streaming under `ANY 1 (standby1,
  standby2)`, a write on the primary is replayed on both, everything it made carries the run's
  labels, and teardown leaves no container and no network behind (checked by label);
- every container fault kind (kill, stop, restart, pause) is injected and healed while the
  acknowledged-writes workload runs: afterwards every node answers (wait_all_ready) and no
  acknowledged insert is lost (checker/data.py acked_writes), and the standbys hold exactly the
  primary's rows;
- a two-way partition between the primary and standby1 (iptables from a sidecar) makes the
  primary's walsender for standby1 time out within wal_sender_timeout and standby1 miss new
  commits; heal brings standby1 back to streaming; a one-way partition (standby1 drops the
  primary's packets) stops standby1's replay and is healed the same way; a second heal is a
  no-op that leaves no sidecar behind;
- ProcessNemesis works unchanged on a DockerCluster (SIGNAL by role, KILL9 of a whole node);
- failover: promote the most advanced standby, repoint the other across the timeline switch,
  re-clone the old primary in a new container, nothing acknowledged lost;
- the postgres flavour (real PostgreSQL 15, images/postgres/): bring-up, replication, pids by
  role and failover through the same verbs (built only when this test is selected).

Timeouts are shortened through settings (wal_sender_timeout / wal_receiver_timeout 3 s, status
every 1 s, reconnect after 0.5 s) so that partitions show within seconds. Every wait has a
deadline and reports what it saw last. Marked `docker`: skipped only where no engine answers.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orchestrator import faults as F
from orchestrator.checker.data import acked_writes
from orchestrator.cluster import wait_all_ready
from orchestrator.dockercluster import DockerCluster
from orchestrator.dockernode import LABEL_CLUSTER
from orchestrator.history import OK, History
from orchestrator.nemesis import partition as P
from orchestrator.nemesis.container import LABEL_SIDECAR, ContainerNemesis
from orchestrator.nemesis.process import ProcessNemesis
from orchestrator.workload import AckedWrites

pytestmark = [pytest.mark.docker, pytest.mark.chaos]

WAL_SENDER_TIMEOUT_S = 3.0
SETTINGS = {
    "wal_sender_timeout": f"'{int(WAL_SENDER_TIMEOUT_S)}s'",
    "wal_receiver_timeout": f"'{int(WAL_SENDER_TIMEOUT_S)}s'",
    "wal_receiver_status_interval": "'1s'",
    "wal_retrieve_retry_interval": "'500ms'",
}
DEADLINE_S = 30.0


def wait_for(fn: Callable[[], Any], what: str, timeout: float = DEADLINE_S, every: float = 0.1) -> Any:
    """Poll `fn` until it returns something truthy; fail with the last value (or error) seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:
            last = e
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s; last seen: {last!r}", pytrace=False)
        time.sleep(every)


def streaming(cluster: DockerCluster) -> set[str]:
    return {r[0] for r in cluster.primary.sql("SELECT application_name, state FROM pg_stat_replication")
            if r[1] == "streaming"}  # fmt: skip


def has_key(node: Any, table: str, k: int) -> bool:
    return node.sql(f"SELECT count(*) FROM {table} WHERE k = %s", (k,)) == [(1,)]


@pytest.fixture(scope="module")
def cluster(docker_client: Any, node_image: str, pgbed_labels: dict[str, str]) -> Iterator[DockerCluster]:
    with DockerCluster(docker_client, node_image, pgbed_labels, standbys=2, settings=SETTINGS) as c:
        c.primary.safe_sql("CREATE TABLE marks (k bigint PRIMARY KEY)")
        yield c


@pytest.fixture
def healthy(cluster: DockerCluster) -> Iterator[DockerCluster]:
    """The shared cluster, settled before and after each test: nothing paused, partitioned or
    down, every node answering, both standbys streaming."""

    def settle() -> None:
        ContainerNemesis(cluster).heal(everywhere=True)
        cluster.ensure_running()
        wait_all_ready(cluster, timeout=DEADLINE_S)
        cluster.wait_streaming(timeout=DEADLINE_S)

    settle()
    yield cluster
    settle()


# -- (a) bring-up, replication, teardown -----------------------------------------------------------


def test_cluster_up_streaming_replicates_and_tears_down(docker_client: Any, node_image: str,
                                                        pgbed_labels: dict[str, str]) -> None:  # fmt: skip
    t0 = time.monotonic()
    c = DockerCluster(docker_client, node_image, pgbed_labels, standbys=2, settings=SETTINGS)
    try:
        ready_s = time.monotonic() - t0
        print(f"\n[pgbed] 3-node DockerCluster ready (both standbys streaming) in {ready_s:.1f} s")
        rows = c.primary.sql("SELECT application_name, state, sync_state FROM pg_stat_replication")
        assert sorted((r[0], r[1], r[2]) for r in rows) == [("standby1", "streaming", "quorum"),
                                                            ("standby2", "streaming", "quorum")], rows  # fmt: skip
        assert c.primary.sql("SHOW synchronous_standby_names") == [("ANY 1 (standby1, standby2)",)]
        assert [s.sql("SELECT pg_is_in_recovery()") for s in c.standbys] == [[(True,)], [(True,)]]

        c.primary.safe_sql("CREATE TABLE t (k bigint PRIMARY KEY, v text)")
        c.primary.safe_sql("INSERT INTO t VALUES (1, 'one')")
        for s in c.standbys:
            wait_for(lambda s=s: s.sql("SELECT v FROM t WHERE k = 1") == [("one",)], f"the row replayed on {s.name}")

        # every container and the network carry the run's labels; host ports are Docker's choice
        made = c.containers()
        assert len(made) == 3, made
        for ct in made:
            for k, v in pgbed_labels.items():
                assert ct.labels.get(k) == v, (ct.name, ct.labels)
        assert {k: c.network.attrs["Labels"].get(k) for k in pgbed_labels} == pgbed_labels
        assert len({n.port for n in c.nodes.values()}) == 3
    finally:
        c.teardown()
    by_label = {"label": f"{LABEL_CLUSTER}={c.cluster_id}"}
    assert docker_client.containers.list(all=True, filters=by_label) == []
    assert docker_client.networks.list(filters=by_label) == []


# -- (b) container faults under the acknowledged-writes workload ------------------------------------


@pytest.mark.parametrize(("kind", "target"), [
    (F.CONTAINER_KILL, "primary"),
    (F.CONTAINER_STOP, "primary"),
    (F.CONTAINER_RESTART, "primary"),
    (F.CONTAINER_PAUSE, "primary"),
    (F.CONTAINER_KILL, "standby1"),
    (F.CONTAINER_PAUSE, "standby2"),
])  # fmt: skip
def test_container_fault_heals_without_losing_acked_writes(healthy: DockerCluster, kind: str, target: str) -> None:
    cluster = healthy
    nemesis = ContainerNemesis(cluster)
    workload = AckedWrites(clients=2, pace_s=0.005)
    workload.table = f"acked_{kind.replace('-', '_')}_{target}"
    workload.setup(cluster)
    history = History()
    stop = threading.Event()
    clients = workload.clients(cluster, history, random.Random(7), stop)

    def oks() -> int:
        return sum(1 for op in history if op.type == OK)

    for c in clients:
        c.start()
    try:
        wait_for(lambda: oks() >= 20, "20 acknowledged inserts before the fault")
        fault = nemesis.invoke(kind, random.Random(1), node=target)
        assert fault.kind == kind and fault.node == target, fault
        if kind in (F.CONTAINER_KILL, F.CONTAINER_STOP):
            assert not cluster.node(target).is_running(), f"{target} still running after {fault.describe()}"
            assert isinstance(fault.detail["exit_code"], int), fault.detail
        if kind == F.CONTAINER_PAUSE:
            assert cluster.node(target).is_paused(), fault.describe()
        time.sleep(1.0)  # clients keep trying while the fault holds
        healed = nemesis.heal()
        assert [f.kind for f in healed] == [kind] and healed[0].healed_at is not None, healed
        wait_all_ready(cluster, timeout=DEADLINE_S)
        after = oks()
        wait_for(lambda: oks() >= after + 20, "20 more acknowledged inserts after heal")
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=DEADLINE_S)
    assert not any(c.is_alive() for c in clients), "a client thread did not stop"

    cluster.wait_streaming(timeout=DEADLINE_S)
    cluster.catch_up(timeout=DEADLINE_S)
    final = workload.final_read(cluster)
    result = acked_writes(history, final, min_ok=40)
    assert result.valid, f"{fault.describe()}\n{result.summary()}"
    for s in cluster.standbys:
        got = sorted(int(r[0]) for r in s.safe_sql(f"SELECT k FROM {workload.table}"))
        assert got == sorted(final), f"{s.name} differs from the primary after {fault.describe()}"


# -- (c) partitions ---------------------------------------------------------------------------------


def test_partitions_cut_streaming_and_heal(healthy: DockerCluster, docker_client: Any) -> None:
    cluster = healthy
    primary, s1 = cluster.primary, cluster.node("standby1")
    nemesis = ContainerNemesis(cluster)

    # two-way: the primary's walsender for standby1 hears nothing and times out
    t0 = time.monotonic()
    fault = nemesis.partition(P.complete(cluster.nodes, {"primary"}, {"standby1"}))
    assert fault.detail["describe"] == "primary <-/-> standby1", fault.detail
    assert set(fault.detail["commands"]) == set(cluster.nodes), fault.detail
    wait_for(lambda: "standby1" not in streaming(cluster), "standby1 gone from the primary's pg_stat_replication",
             timeout=WAL_SENDER_TIMEOUT_S + 10)  # fmt: skip
    lost_after = time.monotonic() - t0
    assert lost_after >= WAL_SENDER_TIMEOUT_S - 1, f"standby1 lost after {lost_after:.1f} s, before any timeout"
    assert "standby2" in streaming(cluster)
    primary.safe_sql("INSERT INTO marks VALUES (1)")  # commits: standby2 is the ANY 1
    wait_for(lambda: has_key(cluster.node("standby2"), "marks", 1), "mark 1 on standby2")
    time.sleep(1.0)
    assert not has_key(s1, "marks", 1), "standby1 replayed a commit made while it was partitioned"

    nemesis.heal()
    cluster.wait_streaming(["standby1"], timeout=DEADLINE_S)
    wait_for(lambda: has_key(s1, "marks", 1), "mark 1 on standby1 after heal")

    # one-way: standby1 drops the primary's packets, so it receives nothing (its own still arrive)
    fault = nemesis.partition(P.one_way("primary", "standby1"), kind=F.PARTITION_ONE_WAY)
    assert fault.detail["describe"] == "primary -/-> standby1", fault.detail
    assert fault.detail["grudge"] == {"standby1": ["primary"]}, fault.detail
    primary.safe_sql("INSERT INTO marks VALUES (2)")
    wait_for(lambda: has_key(cluster.node("standby2"), "marks", 2), "mark 2 on standby2")
    time.sleep(WAL_SENDER_TIMEOUT_S)
    assert not has_key(s1, "marks", 2), "standby1 replayed a commit while dropping every packet from the primary"
    wait_for(lambda: s1.sql("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'") == [(0,)],
             "standby1's walreceiver timing out", timeout=WAL_SENDER_TIMEOUT_S + 10)  # fmt: skip

    healed = nemesis.heal()
    assert [f.kind for f in healed] == [F.PARTITION_ONE_WAY], healed
    assert healed[0].heal_detail["partitions_healed"] == ["standby1"], healed[0].heal_detail
    cluster.wait_streaming(["standby1"], timeout=DEADLINE_S)
    wait_for(lambda: has_key(s1, "marks", 2), "mark 2 on standby1 after heal")

    # a partition with a target drawn by the rng: that node is cut off from both others
    fault = nemesis.invoke(F.PARTITION, random.Random(2))
    others = sorted(set(cluster.nodes) - {fault.node or ""})
    assert fault.detail["grudge"][fault.node] == others, fault.detail
    assert all(fault.detail["grudge"][o] == [fault.node] for o in others), fault.detail
    nemesis.heal()
    cluster.wait_streaming(timeout=DEADLINE_S)

    # a second heal has nothing to do and leaves no sidecar
    assert nemesis.heal() == []
    sidecars = docker_client.containers.list(all=True, filters={"label": [f"{LABEL_CLUSTER}={cluster.cluster_id}",
                                                                          LABEL_SIDECAR]})  # fmt: skip
    assert sidecars == []
    wait_all_ready(cluster, timeout=DEADLINE_S)


# -- (d) the process nemesis, unchanged -------------------------------------------------------------


def test_process_nemesis_works_on_docker_cluster(healthy: DockerCluster) -> None:
    cluster = healthy
    before = {n.name: n.pids(F.WALSENDER) for n in cluster.nodes.values()}
    assert len(before["primary"]) == 2, before

    # SIGNAL by role: a walsender found by its process title inside the container, SIGTERMed
    nemesis = ProcessNemesis(cluster, roles=(F.WALSENDER,), signals={F.WALSENDER: ("SIGTERM",)})
    fault = nemesis.invoke(F.SIGNAL, random.Random(3))
    assert fault.node == "primary" and fault.detail["pid"] in before["primary"], fault
    wait_for(lambda: fault.detail["pid"] not in cluster.primary.pids(F.WALSENDER), "the SIGTERMed walsender gone")
    nemesis.heal()
    cluster.wait_streaming(timeout=DEADLINE_S)

    # KILL9: the whole node at once; heal starts it again (a new container start)
    nemesis = ProcessNemesis(cluster)
    fault = nemesis.invoke(F.KILL9, random.Random(5))
    killed = cluster.node(fault.node or "")
    assert fault.detail["pids"] and not killed.is_running(), fault
    healed = nemesis.heal()
    assert healed[0].heal_detail["started"] == [killed.name], healed[0].heal_detail
    wait_all_ready(cluster, timeout=DEADLINE_S)
    cluster.wait_streaming(timeout=DEADLINE_S)
    assert killed.pidfile_status() in ("ready", "standby")


# -- (e) failover on the Docker backend -------------------------------------------------------------


def test_failover_promotes_repoints_and_reclones(docker_client: Any, node_image: str,
                                                 pgbed_labels: dict[str, str]) -> None:  # fmt: skip
    """Cluster.failover on containers (REC-, WALRCV- timeline following): the old primary's
    container is halted and kept, the most advanced standby is promoted, the other standby
    follows it across the timeline switch (primary_conninfo repointed at the new primary's
    network alias), and the old primary's node name comes back as a fresh clone in a new
    container, streaming from the new primary. No synchronously acknowledged row is lost, and
    the retired container stays readable (its log) but off the network."""
    with DockerCluster(docker_client, node_image, pgbed_labels, standbys=2, settings=SETTINGS) as c:
        c.primary.safe_sql("CREATE TABLE fo (k bigint PRIMARY KEY)")
        for k in range(1, 51):  # each one acknowledged under ANY 1 (standby1, standby2)
            c.primary.safe_sql("INSERT INTO fo VALUES (%s)", (k,))
        old = c.primary
        old_container = old.container
        new = c.failover(timeout=DEADLINE_S)

        assert new.name in ("standby1", "standby2") and c.primary_name == new.name and c.timeline_switches == 1
        assert new.sql("SELECT pg_is_in_recovery()") == [(False,)]
        assert c.retired == [old] and not old.is_running() and old.log_content()
        old_container.reload()
        assert c.network_name not in (old_container.attrs["NetworkSettings"].get("Networks") or {})
        reborn = c.node("primary")
        assert reborn is not old and reborn.container.id != old_container.id
        assert reborn.sql("SELECT pg_is_in_recovery()") == [(True,)]
        other = next(s for s in c.standbys if s.name not in (new.name, "primary"))
        assert other.wait_for_log("new target timeline is 2", timeout=DEADLINE_S)
        c.wait_streaming(["primary", other.name], timeout=DEADLINE_S)
        assert new.sql("SHOW synchronous_standby_names") == [(f"ANY 1 (primary, {other.name})",)]

        new.safe_sql("INSERT INTO fo VALUES (51)")
        c.catch_up(timeout=DEADLINE_S)
        want = [(k,) for k in range(1, 52)]
        for n in c.nodes.values():
            assert n.sql("SELECT k FROM fo ORDER BY k") == want, n.name


# -- (f) the postgres flavour: real PostgreSQL 15 behind the same verbs -----------------------------


def test_postgres_flavour_streams_fails_over_and_reclones(docker_client: Any, postgres_image: str,
                                                          pgbed_labels: dict[str, str]) -> None:  # fmt: skip
    """DockerCluster(flavor="postgres") on the pgbed-postgres image (images/postgres/): the verbs
    the scenarios use, on Debian's PostgreSQL 15, so the chaos suite's expectations can be held
    against the reference itself.

    Checks: both standbys reach `streaming` in pg_stat_replication (WALSND-3) under `ANY 1`;
    hot standby is open on both and replays every synchronously acknowledged row (REC-1, REC-3,
    WALRCV-7); `pids()` finds PostgreSQL's checkpointer, two walsenders on the primary, and a
    startup process and a streaming walreceiver on each standby (pg_stat_wal_receiver agrees,
    WALRCV-2, WALRCV-8); failover() promotes the most advanced standby (REC-5: out of recovery,
    timeline 2), the other standby, repointed by reload (WALRCV-4: a conninfo change restarts the
    walreceiver), follows it (`new target timeline is 2`), and the old primary's name comes back
    as a fresh pg_basebackup clone; every acknowledged row is on every node. The log carries
    pgbed's prefix (`%m [%p] %b`, UTC) and there are no jsonlog events on this flavour."""
    t0 = time.monotonic()
    with DockerCluster(docker_client, postgres_image, pgbed_labels, standbys=2,
                       settings={**SETTINGS, "pgbed__metrics_port": 0}, flavor="postgres") as c:  # fmt: skip
        print(f"\n[pgbed] 3-node postgres-flavour DockerCluster streaming in {time.monotonic() - t0:.1f} s")
        assert c.primary.sql("SELECT current_setting('server_version_num')::int / 10000") == [(15,)]
        # PostgreSQL shows a streaming walsender as `async` until the standby's first reply with a
        # valid flush position (pg_stat_get_wal_senders), so quorum is waited for, not asserted
        want_repl = [("standby1", "streaming", "quorum"), ("standby2", "streaming", "quorum")]
        wait_for(lambda: sorted(c.primary.sql("SELECT application_name, state, sync_state FROM pg_stat_replication"))
                 == want_repl, "both standbys streaming as quorum standbys", timeout=10)  # fmt: skip
        assert c.primary.sql("SHOW synchronous_standby_names") == [("ANY 1 (standby1, standby2)",)]
        # a pgbed-only setting asked for is left out of PostgreSQL's configuration
        assert c.primary.sql("SELECT current_setting('pgbed.metrics_port', true)") == [(None,)]
        c.primary.safe_sql("CREATE TABLE fo (k bigint PRIMARY KEY)")
        for k in range(1, 51):  # each one acknowledged under ANY 1 (standby1, standby2)
            c.primary.safe_sql("INSERT INTO fo VALUES (%s)", (k,))
        c.catch_up(timeout=DEADLINE_S)
        want = [(k,) for k in range(1, 51)]
        for s in c.standbys:
            assert s.sql("SELECT pg_is_in_recovery()") == [(True,)], s.name
            assert s.sql("SELECT k FROM fo ORDER BY k") == want, s.name

        assert len(c.primary.pids(F.CHECKPOINTER)) == 1 and len(c.primary.pids(F.WALSENDER)) == 2
        for s in c.standbys:
            assert len(s.pids(F.STARTUP)) == 1 and len(s.pids(F.CHECKPOINTER)) == 1, s.children()
            [walreceiver] = s.pids(F.WALRECEIVER)
            assert s.sql("SELECT pid, status FROM pg_stat_wal_receiver") == [(walreceiver, "streaming")], s.name
        assert all(n.events() == [] for n in c.nodes.values())
        assert re.search(r"UTC \[\d+\] postmaster LOG:  database system is ready to accept connections",
                         c.primary.log_content()), c.primary.log_content()[-2000:]  # fmt: skip

        old = c.primary
        new = c.failover(timeout=DEADLINE_S)
        assert c.primary_name == new.name != "primary" and c.timeline_switches == 1 and c.retired == [old]
        # the WAL being written is on timeline 2 (the checkpoint after promotion may still be running)
        assert new.sql("SELECT pg_is_in_recovery(), substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)") == [
            (False, "00000002")]  # fmt: skip
        other = next(s for s in c.standbys if s.name not in (new.name, "primary"))
        assert other.wait_for_log("new target timeline is 2", timeout=DEADLINE_S)
        reborn = c.node("primary")
        assert reborn is not old and reborn.container.id != old.container.id
        assert reborn.sql("SELECT pg_is_in_recovery()") == [(True,)]
        c.wait_streaming(["primary", other.name], timeout=DEADLINE_S)

        new.safe_sql("INSERT INTO fo VALUES (51)")
        c.catch_up(timeout=DEADLINE_S)
        for n in c.nodes.values():
            assert n.sql("SELECT k FROM fo ORDER BY k") == [*want, (51,)], n.name
    print(f"[pgbed] postgres-flavour scenario done in {time.monotonic() - t0:.1f} s")
