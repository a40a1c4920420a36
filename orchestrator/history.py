"""The operation history: the one contract between workloads, nemeses and checkers.

What it does: an `Op` is one step of one process (a client thread or the nemesis): an
`invoke`, then exactly one completion — `ok` (it happened), `fail` (it certainly did not) or
`info` (unknown: the connection dropped after the request was sent, so it may have happened).
`History` is an append-only, thread-safe list of ops with a monotonically increasing index and
times relative to the history's start, stored as JSON Lines (one op per line) in a run
directory.

What it deliberately does not do: interpret values (checkers do) or know about nodes.

Ownership: every process appends its own ops; nobody edits an op after appending it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
TYPES = (INVOKE, OK, FAIL, INFO)
NEMESIS = "nemesis"  # the process name of fault ops


@dataclass(frozen=True)
class Op:
    process: str  # "c0", "c1", ... for clients; NEMESIS for faults
    type: str  # invoke | ok | fail | info
    f: str  # what: "insert", "transfer", "read", "delta", or a fault kind
    value: Any = None  # the request (invoke) or what was observed/done (completion)
    time: float = 0.0  # seconds since the history started
    index: int = -1
    error: str | None = None  # SQLSTATE or exception text of fail/info
    node: str | None = None  # the node the op went to

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Op:
        d = json.loads(line)
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def append(self, process: str, type_: str, f: str, value: Any = None, *, error: str | None = None,
               node: str | None = None) -> Op:  # fmt: skip
        if type_ not in TYPES:
            raise ValueError(f"op type must be one of {TYPES}, not {type_!r}")
        with self._lock:
            op = Op(process, type_, f, value, round(time.monotonic() - self.t0, 6), len(self.ops), error, node)
            self.ops.append(op)
            return op

    def invoke(self, process: str, f: str, value: Any = None, *, node: str | None = None) -> Op:
        return self.append(process, INVOKE, f, value, node=node)

    def complete(self, inv: Op, type_: str, value: Any = None, *, error: str | None = None) -> Op:
        if inv.type != INVOKE:
            raise ValueError("only an invoke can be completed")
        return self.append(inv.process, type_, inv.f, inv.value if value is None else value, error=error,
                           node=inv.node)  # fmt: skip

    def __iter__(self) -> Iterator[Op]:
        with self._lock:
            return iter(list(self.ops))

    def __len__(self) -> int:
        return len(self.ops)

    def save(self, path: Path) -> None:
        with open(path, "w") as fh:
            for op in self:
                fh.write(op.to_json() + "\n")

    @classmethod
    def load(cls, path: Path) -> History:
        return cls.of(Op.from_json(line) for line in Path(path).read_text().splitlines() if line.strip())

    @classmethod
    def of(cls, ops: Iterable[Op]) -> History:
        h = cls()
        h.ops = list(ops)
        return h


def pairs(ops: Iterable[Op]) -> list[tuple[Op, Op | None]]:
    """(invoke, completion) per process in order; an invoke with no completion pairs with None
    (a client that was still waiting when the run ended: as unknown as `info`)."""
    open_: dict[str, Op] = {}
    out: list[tuple[Op, Op | None]] = []
    for op in ops:
        if op.type == INVOKE:
            if op.process in open_:
                out.append((open_[op.process], None))
            open_[op.process] = op
        else:
            inv = open_.pop(op.process, None)
            if inv is not None:
                out.append((inv, op))
    out.extend((inv, None) for inv in open_.values())
    return out
