"""The nemesis contract (Jepsen's): `setup()` heals, `invoke(kind, rng)` injects one fault and
returns a `Fault` saying what was actually done, `heal()` undoes every active fault and is
idempotent, `teardown()` heals. `Composed` routes fault kinds to the nemesis that claims them
and refuses two nemeses claiming the same kind.

What it deliberately does not do: choose when to inject (the campaign's schedule does) or judge
outcomes (checkers do, from the `Fault` records and the nodes' events).

Ownership: a nemesis instance is driven by one thread (the campaign's); `faults` is appended
by it only.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class NemesisError(RuntimeError):
    """A fault could not be injected (no target of the role, node down …): the campaign logs it
    and goes on; it is not a checker failure."""


@dataclass
class Fault:
    kind: str
    node: str | None = None
    role: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # what was actually done: pids, signals, …
    t: float = field(default_factory=time.time)  # epoch seconds, comparable with jsonlog `ts`
    healed_at: float | None = None
    heal_detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        where = "/".join(x for x in (self.node, self.role) if x)
        return f"{self.kind} {where} {self.detail}".strip()


class Nemesis(Protocol):
    kinds: tuple[str, ...]

    def setup(self) -> None: ...
    def invoke(self, kind: str, rng: random.Random) -> Fault: ...
    def heal(self) -> list[Fault]: ...
    def teardown(self) -> None: ...


class Composed:
    """Several nemeses behind one: each kind goes to the one nemesis that claims it."""

    def __init__(self, *parts: Nemesis) -> None:
        self.parts = parts
        self.route: dict[str, Nemesis] = {}
        for p in parts:
            for k in p.kinds:
                if k in self.route:
                    raise ValueError(f"fault kind {k!r} claimed by both {type(self.route[k]).__name__} and "
                                     f"{type(p).__name__}")  # fmt: skip
                self.route[k] = p
        self.kinds = tuple(self.route)

    def setup(self) -> None:
        for p in self.parts:
            p.setup()

    def invoke(self, kind: str, rng: random.Random) -> Fault:
        try:
            target = self.route[kind]
        except KeyError:
            raise NemesisError(f"no nemesis handles {kind!r} here (available: {', '.join(self.kinds)})") from None
        return target.invoke(kind, rng)

    def heal(self) -> list[Fault]:
        out: list[Fault] = []
        for p in self.parts:
            out.extend(p.heal())
        return out

    def teardown(self) -> None:
        for p in self.parts:
            p.teardown()
