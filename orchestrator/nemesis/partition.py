"""Network partitions as data: grudges, and the iptables commands that apply and heal them.

What it does: pure functions build a *grudge*, which maps each node to the nodes whose packets
it drops (inbound). They are `complete`, `one_way`, `isolate`, `bisect`, `majorities_ring` and
`union`, and `describe` says what a grudge does in one line. `iptables_rules(grudge, addr)`
turns a grudge into, for each node, the commands to run inside that node's network namespace
(from a sidecar container that shares it). `heal_rules(nodes)` gives the commands that undo any
partition. As in Jepsen, the fault is data, and the effectful nemesis only runs the commands and
records what it ran.

What it deliberately does not do: run anything, talk to Docker, or choose targets and timing
(the nemesis and the campaign do). It does not do IPv6, which would need ip6tables: container
networks here are IPv4. It does not touch a standby's replication connection when that goes
through the userspace proxy (nemesis/proxy.py), and a partition between two nodes does not
include it.

One-way semantics. `one_way(src, dst)` makes dst drop packets from src, and that is the only
rule: DROP in dst's INPUT chain. We add no matching DROP in src's OUTPUT, for two reasons.
Dropping at dst is enough to lose every src→dst packet. And a locally generated packet dropped
in OUTPUT makes the sender's send()/connect() fail at once with EPERM, which is not what a lost
packet looks like. The drop stays silent on the receiving side, as a partition is. As a result,
a node's rules depend on its own grudge entry only. Over TCP a one-way partition still stalls
every connection between the two nodes, whoever opened it, because TCP needs packets both ways
(ACKs, SYN-ACKs). What differs from a two-way partition is what each side sees. src still
receives dst's segments, and its application reads them. dst hears nothing from src: no data,
no ACKs, no FIN. UDP is cut in one direction only.

Chain. Every rule of ours lives in a dedicated chain, PGBED-PARTITION, which INPUT jumps to
first. Healing then flushes our rules only: Docker's rules, and anyone else's, stay. Applying is
absolute and idempotent. For every node in `addr`, the chain is made sure to exist, then flushed,
then the node's DROP rules are appended (if it has any). The result is exactly the grudge, however
often it is applied and whatever was applied before. Some commands may fail harmlessly:
`-N` when the chain exists, and `-D` of a jump that is not there. They carry `ok_to_fail=True`.
Every other command must succeed, so a real failure (no iptables, no CAP_NET_ADMIN) shows up
instead of being ignored. A healed node keeps the empty chain and the jump, which cost nothing
and are reused by the next partition.

Ownership: none. Everything here is a pure function of its arguments. Grudges hold frozensets,
and every call returns fresh dicts and lists.
"""

from __future__ import annotations

import ipaddress
import random
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Grudge = dict[str, frozenset[str]]  # node -> nodes whose packets it drops; nodes dropping nothing are left out

CHAIN = "PGBED-PARTITION"
IPTABLES = ("iptables", "-w")  # -w: wait for the xtables lock rather than fail when Docker holds it


@dataclass(frozen=True)
class Cmd:
    """One command to run in a node's network namespace. A failure of a command marked
    `ok_to_fail` is expected in some states and is ignored; any other failure is an error."""

    argv: list[str]
    ok_to_fail: bool = False

    def __str__(self) -> str:
        return shlex.join(self.argv) + ("  # may fail" if self.ok_to_fail else "")


# -- building grudges ----------------------------------------------------------------------------


def complete(nodes: Iterable[str], a: Iterable[str], b: Iterable[str]) -> Grudge:
    """Two-way partition between groups `a` and `b`: every node of a drops every node of b, and
    vice versa. Nodes in neither group keep talking to everyone."""
    known = _node_set(nodes, "nodes")
    side_a, side_b = _names(a, "a"), _names(b, "b")
    _check_known(side_a | side_b, known)
    _check_disjoint(side_a, side_b)
    return {**{n: side_b for n in side_a}, **{n: side_a for n in side_b}}


def one_way(src: str | Iterable[str], dst: str | Iterable[str]) -> Grudge:
    """dst drops packets from src; packets from dst still reach src. Either side may be one node
    or a group."""
    sources, dests = _names(src, "src"), _names(dst, "dst")
    _check_disjoint(sources, dests)
    return {n: sources for n in dests}


def isolate(node: str, nodes: Iterable[str]) -> Grudge:
    """`node` cut off from every other node, both ways."""
    known = _node_set(nodes, "nodes")
    _check_known({node}, known)
    return complete(known, {node}, known - {node})


def halves(nodes: Iterable[str], rng: random.Random) -> tuple[frozenset[str], frozenset[str]]:
    """Random halves, the first the smaller when the count is odd (Jepsen's bisect). The result
    depends only on the set of nodes and the rng's state, not on the order the nodes come in."""
    ordered = sorted(_node_set(nodes, "nodes"))
    if len(ordered) < 2:
        raise ValueError(f"need at least 2 nodes to cut in halves, got {ordered}")
    rng.shuffle(ordered)
    k = len(ordered) // 2
    return frozenset(ordered[:k]), frozenset(ordered[k:])


def bisect(nodes: Iterable[str], rng: random.Random) -> Grudge:
    """Two-way partition between random halves (see `halves`)."""
    known = _node_set(nodes, "nodes")
    return complete(known, *halves(known, rng))


def majorities_ring(nodes: Sequence[str], rng: random.Random | None = None) -> Grudge:
    """Every node sees a majority, itself included, but no two nodes see the same majority.
    Jepsen's perfect ring: place the nodes on a ring, and let each node see the window of
    majority size centred on it and drop the rest.

    The ring follows the order given, or a shuffle of it with `rng`. With an odd majority size
    (n = 4, 5, 8, 9, …) the windows are symmetric and so is the grudge. Otherwise (n = 3, 6, 7, …)
    some drops are one-way, as in Jepsen."""
    ring = list(nodes)
    _node_set(ring, "nodes")
    if len(set(ring)) != len(ring):
        dup = sorted({n for n in ring if ring.count(n) > 1})
        raise ValueError(f"node(s) listed twice in the ring: {', '.join(dup)}")
    n = len(ring)
    if n < 3:
        raise ValueError(f"a majorities ring needs at least 3 nodes, got {ring}")
    if rng is not None:
        rng.shuffle(ring)
    m = n // 2 + 1
    everyone = frozenset(ring)
    grudge: Grudge = {}
    for start in range(n):
        window = [ring[(start + j) % n] for j in range(m)]
        grudge[window[m // 2]] = everyone - frozenset(window)
    return grudge


def union(*grudges: Mapping[str, Iterable[str]]) -> Grudge:
    """Every drop of every grudge."""
    out: dict[str, set[str]] = {}
    for g in grudges:
        for node, drops in g.items():
            out.setdefault(node, set()).update(_names(drops, f"drops of {node}", allow_empty=True))
    result = {node: frozenset(drops) for node, drops in out.items() if drops}
    _check_no_self_drop(result)
    return result


def describe(grudge: Mapping[str, Iterable[str]]) -> str:
    """One line: `a <-/-> b` when a and b drop each other, `a -/-> b` when b drops a's packets and
    a still hears b. Nodes that behave alike are shown together: `primary <-/-> {standby1, standby2}`."""
    g = {node: frozenset(drops) for node, drops in grudge.items()}
    nodes = set(g) | {d for drops in g.values() for d in drops}
    two_way = {x: frozenset(y for y in g.get(x, ()) if x in g.get(y, ())) for x in nodes}
    one_way_to = {s: frozenset(d for d in nodes if s in g.get(d, ()) and d not in g.get(s, ())) for s in nodes}
    segments: set[str] = set()
    # Two-way: nodes with the same partners form a group. When each partner's own partners are
    # exactly that group, the group and its partners are cut completely: one segment (complete,
    # isolate, bisect). Anything else, a majorities ring say, is listed pair by pair.
    for group, partners in _group_by(two_way).items():
        if all(two_way[p] == group for p in partners):
            segments.add(" <-/-> ".join(sorted((_fmt(group), _fmt(partners)))))
        else:
            segments.update(" <-/-> ".join(sorted((x, p))) for x in group for p in partners)
    for sources, dests in _group_by(one_way_to).items():
        segments.add(f"{_fmt(sources)} -/-> {_fmt(dests)}")
    return "; ".join(sorted(segments)) if segments else "no partition"


def _group_by(rel: Mapping[str, frozenset[str]]) -> dict[frozenset[str], frozenset[str]]:
    """{nodes: the related set they share}, for the nodes related to anything."""
    by_set: dict[frozenset[str], set[str]] = {}
    for node, related in rel.items():
        if related:
            by_set.setdefault(related, set()).add(node)
    return {frozenset(ns): related for related, ns in by_set.items()}


# -- iptables --------------------------------------------------------------------------------------


def iptables_rules(grudge: Mapping[str, Iterable[str]], addr: Mapping[str, str]) -> dict[str, list[Cmd]]:
    """For every node in `addr`, the commands that leave its inbound filtering exactly as the
    grudge says. Run them in order, in the node's network namespace. A node the grudge does not
    mention is healed, so stale drops from an earlier partition go away."""
    g = {node: _names(drops, f"drops of {node}", allow_empty=True) for node, drops in grudge.items()}
    _check_no_self_drop(g)
    mentioned = set(g) | {d for drops in g.values() for d in drops}
    missing = sorted(mentioned - set(addr))
    if missing:
        raise ValueError(f"no address for node(s) {', '.join(missing)} (addresses known for: "
                         f"{', '.join(sorted(addr)) or 'none'})")  # fmt: skip
    ips = {node: _ipv4(node, a) for node, a in addr.items()}
    out = heal_rules(addr)
    for node in sorted(g):
        drops = sorted(g[node])
        if not drops:
            continue
        same = [d for d in drops if ips[d] == ips[node]]
        if same:
            raise ValueError(f"{node} shares address {ips[node]} with {', '.join(same)}: dropping their packets "
                             f"would drop its own")  # fmt: skip
        out[node] += [
            # exactly one jump, first in INPUT: delete any earlier one, then insert
            Cmd([*IPTABLES, "-D", "INPUT", "-j", CHAIN], ok_to_fail=True),
            Cmd([*IPTABLES, "-I", "INPUT", "1", "-j", CHAIN]),
            *(Cmd([*IPTABLES, "-A", CHAIN, "-s", ips[d], "-j", "DROP"]) for d in drops),
        ]
    return out


def heal_rules(nodes: Iterable[str]) -> dict[str, list[Cmd]]:
    """For each node, the commands that empty our chain. Running them twice, or on a node that
    was never partitioned, is harmless: `-N` may fail because the chain exists, and the
    flush that follows must succeed."""
    return {node: [Cmd([*IPTABLES, "-N", CHAIN], ok_to_fail=True), Cmd([*IPTABLES, "-F", CHAIN])]
            for node in sorted(_node_set(nodes, "nodes"))}  # fmt: skip


# -- validation ------------------------------------------------------------------------------------


def _names(x: str | Iterable[str], what: str, *, allow_empty: bool = False) -> frozenset[str]:
    # A bare string is one node, not its characters.
    names = frozenset([x]) if isinstance(x, str) else frozenset(x)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise ValueError(f"{what}: node names must be non-empty strings, got {bad!r}")
    if not names and not allow_empty:
        raise ValueError(f"{what}: no nodes: a partition needs a node on each side")
    return names


def _node_set(nodes: Iterable[str], what: str) -> frozenset[str]:
    return _names(nodes, what, allow_empty=True)


def _check_known(names: frozenset[str], known: frozenset[str]) -> None:
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(f"unknown node(s) {', '.join(unknown)}; nodes are {', '.join(sorted(known)) or 'none'}")


def _check_disjoint(a: frozenset[str], b: frozenset[str]) -> None:
    both = sorted(a & b)
    if both:
        raise ValueError(f"node(s) {', '.join(both)} on both sides: a node never drops itself")


def _check_no_self_drop(grudge: Mapping[str, frozenset[str]]) -> None:
    selfish = sorted(n for n, drops in grudge.items() if n in drops)
    if selfish:
        raise ValueError(f"node(s) {', '.join(selfish)} would drop their own packets: a node never drops itself")


def _ipv4(node: str, address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"address of {node} is not an IP address: {address!r} (resolve names before "
                         f"partitioning: iptables would resolve them once, at insert time)") from None  # fmt: skip
    if ip.version != 4:
        raise ValueError(f"address of {node} is IPv6 ({address}): only IPv4 (iptables) is supported")
    return str(ip)


def _fmt(group: frozenset[str]) -> str:
    names = sorted(group)
    return names[0] if len(names) == 1 else "{" + ", ".join(names) + "}"
