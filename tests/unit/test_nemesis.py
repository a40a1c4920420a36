"""The nemesis contract without processes: composition refuses two claims on one kind, an
unknown kind is a NemesisError, targets come from the seeded rng among processes that exist, and
heal() is idempotent (a second heal does nothing, a heal with nothing active is harmless).
Signals go to a recording fake instead of os.kill."""

from __future__ import annotations

import random
import signal
from typing import Any

import pytest

from orchestrator import faults as F
from orchestrator.nemesis import process as P
from orchestrator.nemesis.base import Composed, Fault, NemesisError


class FakeNode:
    def __init__(self, name: str, pids: dict[str, list[int]]) -> None:
        self.name = name
        self._pids = pids
        self.running = True
        self.sql_calls: list[tuple[str, Any]] = []
        self.started = 0
        self.proc = object()
        self.pid = pids.get(F.POSTMASTER, [1])[0]

    def is_running(self) -> bool:
        return self.running

    def pids(self, role: str, name: str | None = None) -> list[int]:
        return list(self._pids.get(role, []))

    def sql(self, q: str, params: Any = None) -> list[tuple[Any, ...]]:
        self.sql_calls.append((q, params))
        return [(None,)]

    def pidfile_status(self) -> str:
        return "ready"

    def wait_exit(self) -> int:
        return 0

    def start(self) -> None:
        self.running = True
        self.started += 1

    def children(self) -> dict[int, str]:
        return {}

    def kill(self, pid: int, sig: int) -> None:
        SENT.append((pid, sig))


class FakeCluster:
    def __init__(self) -> None:
        self.nodes = {"primary": FakeNode("primary", {F.POSTMASTER: [100], F.WALSENDER: [101, 102],
                                                      F.CHECKPOINTER: [103]}),
                      "standby1": FakeNode("standby1", {F.POSTMASTER: [200], F.WALRECEIVER: [201],
                                                        F.STARTUP: [202]})}  # fmt: skip


SENT: list[tuple[int, int]] = []


@pytest.fixture
def kills() -> list[tuple[int, int]]:
    SENT.clear()
    return SENT


class Dummy:
    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.kinds = kinds
        self.healed = 0

    def setup(self) -> None:
        self.heal()

    def invoke(self, kind: str, rng: random.Random) -> Fault:
        return Fault(kind)

    def heal(self) -> list[Fault]:
        self.healed += 1
        return []

    def teardown(self) -> None:
        self.heal()


def test_compose_refuses_duplicate_claims_and_routes() -> None:
    with pytest.raises(ValueError, match="claimed by both"):
        Composed(Dummy((F.SIGNAL,)), Dummy((F.SIGNAL, F.PAUSE)))
    a, b = Dummy((F.SIGNAL,)), Dummy((F.PAUSE,))
    c = Composed(a, b)
    assert c.invoke(F.PAUSE, random.Random(1)).kind == F.PAUSE
    with pytest.raises(NemesisError, match="no nemesis handles"):
        c.invoke(F.PARTITION, random.Random(1))
    c.setup()
    c.teardown()
    assert (a.healed, b.healed) == (2, 2)


def test_signal_targets_are_seeded_and_recorded(kills: list[tuple[int, int]]) -> None:
    picks = []
    for _ in range(2):
        kills.clear()
        n = P.ProcessNemesis(FakeCluster(), roles=(F.WALSENDER, F.WALRECEIVER))  # type: ignore[arg-type]
        f = n.invoke(F.SIGNAL, random.Random(5))
        picks.append((f.node, f.role, f.detail["pid"], f.detail["signal"]))
        assert kills == [(f.detail["pid"], getattr(signal, f.detail["signal"]))]
    assert picks[0] == picks[1]
    assert picks[0][2] in (101, 102, 201)


def test_no_target_is_a_nemesis_error(kills: list[tuple[int, int]]) -> None:
    n = P.ProcessNemesis(FakeCluster(), roles=(F.BGWORKER,))  # type: ignore[arg-type]
    with pytest.raises(NemesisError, match="no process of roles"):
        n.invoke(F.SIGNAL, random.Random(1))
    assert kills == []


def test_heal_is_idempotent(kills: list[tuple[int, int]]) -> None:
    cluster = FakeCluster()
    n = P.ProcessNemesis(cluster, roles=(F.WALRECEIVER,))  # type: ignore[arg-type]
    assert n.heal() == []  # nothing active: harmless
    f = n.invoke(F.PAUSE, random.Random(3))
    assert kills == [(201, signal.SIGSTOP)]
    hook = n.invoke(F.FAULT_HOOK, random.Random(3))
    healed = n.heal()
    assert {x.kind for x in healed} == {F.PAUSE, F.FAULT_HOOK} and all(x.healed_at for x in healed)
    assert (201, signal.SIGCONT) in kills
    node = cluster.nodes[hook.node]
    assert ("SELECT pgbed_injection_detach(%s)", (hook.detail["point"],)) in node.sql_calls
    before = (list(kills), [list(x.sql_calls) for x in cluster.nodes.values()])
    assert n.heal() == []  # second heal: no signal, no SQL
    assert (list(kills), [list(x.sql_calls) for x in cluster.nodes.values()]) == before
    assert f.heal_detail["resumed"] == [201]


def test_heal_starts_nodes_that_are_down(kills: list[tuple[int, int]]) -> None:
    cluster = FakeCluster()
    n = P.ProcessNemesis(cluster)  # type: ignore[arg-type]
    cluster.nodes["standby1"].running = False
    n.heal()
    n.heal()
    assert cluster.nodes["standby1"].started == 1


def test_parse_faults() -> None:
    assert F.parse_faults("signal, pause,kill9") == (F.SIGNAL, F.PAUSE, F.KILL9)
    with pytest.raises(ValueError, match="unknown fault kind"):
        F.parse_faults("signal,nuke")
