"""orchestrator.nemesis.partition: grudges are pure data; the iptables commands are exact."""

from __future__ import annotations

import itertools
import random

import pytest

from orchestrator.nemesis.partition import (
    CHAIN,
    Cmd,
    Grudge,
    bisect,
    complete,
    describe,
    halves,
    heal_rules,
    iptables_rules,
    isolate,
    majorities_ring,
    one_way,
    union,
)

P, S1, S2 = "primary", "standby1", "standby2"
NODES = (P, S1, S2)
ADDR = {P: "172.18.0.2", S1: "172.18.0.3", S2: "172.18.0.4"}
F = frozenset


def ipt(*args: str) -> list[str]:
    return ["iptables", "-w", *args]


def heal_cmds() -> list[Cmd]:
    return [Cmd(ipt("-N", CHAIN), ok_to_fail=True), Cmd(ipt("-F", CHAIN))]


def jump_cmds() -> list[Cmd]:
    return [Cmd(ipt("-D", "INPUT", "-j", CHAIN), ok_to_fail=True), Cmd(ipt("-I", "INPUT", "1", "-j", CHAIN))]


def drop_cmd(ip: str) -> Cmd:
    return Cmd(ipt("-A", CHAIN, "-s", ip, "-j", "DROP"))


def reaches(grudge: Grudge, src: str, dst: str) -> bool:
    """Do src's packets reach dst?"""
    return src not in grudge.get(dst, frozenset())


# -- complete ------------------------------------------------------------------------------------


def test_complete_every_split_of_three_nodes() -> None:
    for k in (1, 2):
        for a in itertools.combinations(NODES, k):
            b = set(NODES) - set(a)
            g = complete(NODES, a, b)
            assert g == {**{n: F(b) for n in a}, **{n: F(a) for n in b}}
            for x, y in itertools.permutations(NODES, 2):
                assert reaches(g, x, y) == ((x in a) == (y in a)), (a, x, y)


def test_complete_leaves_bystanders_alone() -> None:
    g = complete(NODES, [P], [S1])
    assert g == {P: F({S1}), S1: F({P})}
    assert S2 not in g
    assert reaches(g, S2, P) and reaches(g, P, S2) and reaches(g, S1, S2)


def test_complete_validation() -> None:
    with pytest.raises(ValueError, match=r"unknown node.*ghost"):
        complete(NODES, [P], ["ghost"])
    with pytest.raises(ValueError, match=f"{P} on both sides"):
        complete(NODES, [P, S1], [P, S2])
    with pytest.raises(ValueError, match="no nodes"):
        complete(NODES, [P], [])
    with pytest.raises(ValueError, match="non-empty"):
        complete(NODES, [P], [""])


def test_a_string_is_one_node_not_its_letters() -> None:
    assert complete(NODES, P, S1) == complete(NODES, [P], [S1])
    assert one_way(P, S1) == one_way([P], [S1])


# -- one way -------------------------------------------------------------------------------------


def test_one_way_every_ordered_pair() -> None:
    for src, dst in itertools.permutations(NODES, 2):
        g = one_way(src, dst)
        assert g == {dst: F({src})}
        assert not reaches(g, src, dst)
        assert reaches(g, dst, src)
        for x, y in itertools.permutations(NODES, 2):
            if (x, y) != (src, dst):
                assert reaches(g, x, y)


def test_one_way_groups_and_validation() -> None:
    assert one_way([S1, S2], P) == {P: F({S1, S2})}
    assert one_way(P, [S1, S2]) == {S1: F({P}), S2: F({P})}
    with pytest.raises(ValueError, match="never drops itself"):
        one_way(P, P)
    with pytest.raises(ValueError, match="no nodes"):
        one_way([], P)


# -- isolate -------------------------------------------------------------------------------------


def test_isolate_each_node() -> None:
    for node in NODES:
        others = F(NODES) - {node}
        g = isolate(node, NODES)
        assert g == {node: others, **{o: F({node}) for o in others}}
        for o in others:
            assert not reaches(g, node, o) and not reaches(g, o, node)
        a, b = sorted(others)
        assert reaches(g, a, b) and reaches(g, b, a)


def test_isolate_validation() -> None:
    with pytest.raises(ValueError, match=r"unknown node.*ghost"):
        isolate("ghost", NODES)
    with pytest.raises(ValueError, match="no nodes"):
        isolate(P, [P])


# -- bisect --------------------------------------------------------------------------------------


def test_bisect_is_deterministic_for_a_seed_and_ignores_input_order() -> None:
    nodes5 = [f"n{i}" for i in range(5)]
    for seed in range(20):
        first = bisect(nodes5, random.Random(seed))
        assert bisect(nodes5, random.Random(seed)) == first
        assert bisect(list(reversed(nodes5)), random.Random(seed)) == first
        assert bisect(set(nodes5), random.Random(seed)) == first
    seen = {tuple(sorted(halves(nodes5, random.Random(seed))[0])) for seed in range(50)}
    assert len(seen) > 3  # it is random across seeds


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_bisect_halves_cover_all_nodes(n: int) -> None:
    nodes = [f"n{i}" for i in range(n)]
    for seed in range(10):
        a, b = halves(nodes, random.Random(seed))
        assert a | b == set(nodes) and not a & b
        assert len(a) == n // 2 and len(b) == n - n // 2  # the smaller half first
        g = bisect(nodes, random.Random(seed))
        assert set(g) == set(nodes)
        assert all(g[x] == b for x in a) and all(g[y] == a for y in b)


def test_bisect_three_nodes() -> None:
    g = bisect(NODES, random.Random(1))
    alone = [n for n in NODES if len(g[n]) == 2]
    assert len(alone) == 1
    assert g == isolate(alone[0], NODES)
    with pytest.raises(ValueError, match="at least 2"):
        bisect([P], random.Random(0))


# -- majorities ring -----------------------------------------------------------------------------


def test_majorities_ring_five_nodes() -> None:
    ring = ["a", "b", "c", "d", "e"]
    g = majorities_ring(ring)
    # each node sees itself and its two ring neighbours, and drops the two opposite
    assert g == {"a": F("cd"), "b": F("de"), "c": F("ea"), "d": F("ab"), "e": F("bc")}
    seen = {node: F(ring) - drops for node, drops in g.items()}
    assert all(len(s) == 3 and node in s for node, s in seen.items())  # a majority, itself included
    assert len(set(seen.values())) == 5  # no two nodes see the same majority
    for x, y in itertools.permutations(ring, 2):  # symmetric for 5
        assert reaches(g, x, y) == reaches(g, y, x)
    assert describe(g) == "a <-/-> c; a <-/-> d; b <-/-> d; b <-/-> e; c <-/-> e"


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8, 9])
def test_majorities_ring_properties(n: int) -> None:
    ring = [f"n{i}" for i in range(n)]
    g = majorities_ring(ring)
    m = n // 2 + 1
    assert set(g) == set(ring)
    seen = {node: F(ring) - drops for node, drops in g.items()}
    assert all(len(s) == m and node in s for node, s in seen.items())
    assert len(set(seen.values())) == n
    symmetric = all(reaches(g, x, y) == reaches(g, y, x) for x, y in itertools.permutations(ring, 2))
    assert symmetric == (m % 2 == 1)


def test_majorities_ring_three_nodes_is_one_way_cycle() -> None:
    g = majorities_ring(list(NODES))
    assert g == {P: F({S1}), S1: F({S2}), S2: F({P})}


def test_majorities_ring_shuffle_and_validation() -> None:
    ring = [f"n{i}" for i in range(5)]
    assert majorities_ring(ring, random.Random(7)) == majorities_ring(ring, random.Random(7))
    assert ring == [f"n{i}" for i in range(5)]  # the caller's list is not shuffled
    with pytest.raises(ValueError, match="at least 3"):
        majorities_ring([P, S1])
    with pytest.raises(ValueError, match=r"twice.*primary"):
        majorities_ring([P, S1, P])


# -- union, describe -----------------------------------------------------------------------------


def test_union() -> None:
    assert union() == {}
    assert union(one_way(P, S1), one_way(P, S2)) == one_way(P, [S1, S2])
    assert union(one_way(P, S1), one_way(S1, P)) == complete(NODES, [P], [S1])
    assert union(isolate(P, NODES), complete(NODES, [S1], [S2])) == {
        P: F({S1, S2}), S1: F({P, S2}), S2: F({P, S1})}  # fmt: skip
    g = complete(NODES, [P], [S1])
    assert union(g, g) == g
    assert union({P: []}, {S1: F()}) == {}  # nodes dropping nothing are left out
    with pytest.raises(ValueError, match="never drops itself"):
        union({P: [P]})


def test_describe() -> None:
    assert describe({}) == "no partition"
    assert describe(one_way(P, S1)) == "primary -/-> standby1"
    assert describe(one_way([S1, S2], P)) == "{standby1, standby2} -/-> primary"
    assert describe(complete(NODES, [P], [S1])) == "primary <-/-> standby1"
    assert describe(isolate(P, NODES)) == "primary <-/-> {standby1, standby2}"
    assert describe(isolate(S2, NODES)) == "standby2 <-/-> {primary, standby1}"
    assert describe(union(one_way(P, S1), one_way(S2, P))) == "primary -/-> standby1; standby2 -/-> primary"
    assert describe(majorities_ring(list(NODES))) == (
        "primary -/-> standby2; standby1 -/-> primary; standby2 -/-> standby1"
    )
    assert describe(one_way(P, [S1, S2])) == "primary -/-> {standby1, standby2}"
    assert describe(union(isolate(P, NODES), one_way(S1, S2))) == (
        "primary <-/-> {standby1, standby2}; standby1 -/-> standby2"
    )
    assert describe(bisect([f"n{i}" for i in range(4)], random.Random(3))).count("<-/->") == 1


# -- iptables ------------------------------------------------------------------------------------


def test_iptables_one_way() -> None:
    # dst drops src: one DROP rule, on standby1 only; the others are merely healed
    rules = iptables_rules(one_way(P, S1), ADDR)
    assert rules == {
        P: heal_cmds(),
        S1: heal_cmds() + jump_cmds() + [drop_cmd("172.18.0.2")],
        S2: heal_cmds(),
    }
    assert rules[S1] == [
        Cmd(["iptables", "-w", "-N", "PGBED-PARTITION"], ok_to_fail=True),
        Cmd(["iptables", "-w", "-F", "PGBED-PARTITION"]),
        Cmd(["iptables", "-w", "-D", "INPUT", "-j", "PGBED-PARTITION"], ok_to_fail=True),
        Cmd(["iptables", "-w", "-I", "INPUT", "1", "-j", "PGBED-PARTITION"]),
        Cmd(["iptables", "-w", "-A", "PGBED-PARTITION", "-s", "172.18.0.2", "-j", "DROP"]),
    ]
    assert list(rules) == sorted(rules)


def test_iptables_two_way() -> None:
    rules = iptables_rules(isolate(P, NODES), ADDR)
    assert rules == {
        P: heal_cmds() + jump_cmds() + [drop_cmd("172.18.0.3"), drop_cmd("172.18.0.4")],
        S1: heal_cmds() + jump_cmds() + [drop_cmd("172.18.0.2")],
        S2: heal_cmds() + jump_cmds() + [drop_cmd("172.18.0.2")],
    }
    assert all(c.argv[:2] == ["iptables", "-w"] for cmds in rules.values() for c in cmds)
    # no OUTPUT rules: a drop in OUTPUT would fail the sender's send() with EPERM
    assert not any("OUTPUT" in c.argv for cmds in rules.values() for c in cmds)


def test_iptables_only_chain_creation_and_jump_removal_may_fail() -> None:
    rules = iptables_rules(complete(NODES, [P, S1], [S2]), ADDR)
    for cmds in rules.values():
        tolerated = [c.argv[2] for c in cmds if c.ok_to_fail]
        assert set(tolerated) <= {"-N", "-D"}
        assert all(c.argv[2] in ("-F", "-I", "-A") for c in cmds if not c.ok_to_fail)


def test_iptables_empty_grudge_heals_everyone() -> None:
    assert iptables_rules({}, ADDR) == heal_rules(NODES)


def test_iptables_validation() -> None:
    with pytest.raises(ValueError, match=r"no address for node.*standby2"):
        iptables_rules(one_way(P, S2), {P: ADDR[P], S1: ADDR[S1]})
    with pytest.raises(ValueError, match=r"no address for node.*ghost"):
        iptables_rules(one_way("ghost", P), ADDR)
    with pytest.raises(ValueError, match="never drops itself"):
        iptables_rules({P: F({P})}, ADDR)
    with pytest.raises(ValueError, match="standby1 is not an IP address"):
        iptables_rules(one_way(P, S2), {**ADDR, S1: "standby1.pgbed"})
    with pytest.raises(ValueError, match="IPv6"):
        iptables_rules({}, {**ADDR, S1: "fd00::3"})
    with pytest.raises(ValueError, match=r"standby1 shares address 127\.0\.0\.1 with primary"):
        iptables_rules(one_way(P, S1), {P: "127.0.0.1", S1: "127.0.0.1", S2: "127.0.0.2"})


def test_heal_rules_idempotent_representation() -> None:
    rules = heal_rules([S2, P, S1])
    assert list(rules) == [P, S1, S2]
    for cmds in rules.values():
        # creating the chain tolerates "exists" (run twice, or after a partition); the flush must
        # succeed, so a missing iptables or capability is reported rather than ignored
        assert cmds == [
            Cmd(["iptables", "-w", "-N", "PGBED-PARTITION"], ok_to_fail=True),
            Cmd(["iptables", "-w", "-F", "PGBED-PARTITION"], ok_to_fail=False),
        ]
    assert heal_rules(NODES) == heal_rules(NODES)  # same commands every time: heal is idempotent
    assert heal_rules([]) == {}
    assert str(rules[P][0]) == "iptables -w -N PGBED-PARTITION  # may fail"
    assert str(rules[P][1]) == "iptables -w -F PGBED-PARTITION"


def test_heal_after_apply_leaves_only_an_empty_chain() -> None:
    """Simulate the commands on a model of one node's tables: apply, apply again, heal, heal."""
    chains: dict[str, list[str]] = {"INPUT": ["ACCEPT-docker"]}

    def run(cmds: list[Cmd]) -> None:
        for c in cmds:
            op, chain, rest = c.argv[2], c.argv[3], c.argv[4:]
            ok = True
            if op == "-N":
                ok = chain not in chains
                chains.setdefault(chain, [])
            elif op == "-F":
                ok = chain in chains
                chains[chain] = []
            elif op == "-D":
                rule = " ".join(rest)
                ok = rule in chains[chain]
                if ok:
                    chains[chain].remove(rule)
            elif op == "-I":
                chains[chain].insert(int(rest[0]) - 1, " ".join(rest[1:]))
            elif op == "-A":
                chains[chain].append(" ".join(rest))
            assert ok or c.ok_to_fail, c

    grudge = isolate(P, NODES)
    run(iptables_rules(grudge, ADDR)[P])
    run(iptables_rules(grudge, ADDR)[P])  # applying twice does not stack rules
    assert chains == {"INPUT": [f"-j {CHAIN}", "ACCEPT-docker"],
                      CHAIN: ["-s 172.18.0.3 -j DROP", "-s 172.18.0.4 -j DROP"]}  # fmt: skip
    run(heal_rules([P])[P])
    run(heal_rules([P])[P])
    assert chains == {"INPUT": [f"-j {CHAIN}", "ACCEPT-docker"], CHAIN: []}
    fresh: dict[str, list[str]] = {"INPUT": []}
    chains = fresh
    run(heal_rules([S2])[S2])  # never partitioned: harmless
    assert chains == {"INPUT": [], CHAIN: []}
