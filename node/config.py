"""Glue between the settings table (node/guc.py) and the processes.

What it does: loads postgresql.conf (+ postgresql.auto.conf) and `-c` settings at postmaster
start, re-reads them on SIGHUP in the postmaster (logging what changed at LOG) and in children
(at DEBUG2, as PostgreSQL's children do), and re-applies the logging settings afterwards.

What it deliberately does not do: own setting semantics (node/guc.py does) or signal anyone
(the postmaster forwards SIGHUP to its children itself).
"""

from __future__ import annotations

from pathlib import Path

from node import elog, guc, injection
from node.proc import me


def conf_path(datadir: str | Path) -> str:
    return str(Path(datadir) / "postgresql.conf")


def new_state() -> guc.GucState:
    g = guc.GucState()
    g.validators["injection_points"] = injection.guc_check
    return g


def load_startup(datadir: str | Path, argv: list[tuple[str, str]]) -> guc.GucState:
    """postgresql.conf + postgresql.auto.conf, then `-c`. Raises GucError (the caller logs its
    `log_lines` and the FATAL) when the files or values are invalid."""
    g = new_state()
    for ln in g.startup_from_file(conf_path(datadir), argv):
        elog.log(ln.level, ln.message, sqlstate=ln.sqlstate, detail=ln.detail, hint=ln.hint)
    return g


def apply_logging(g: guc.GucState, datadir: str) -> None:
    elog.configure(
        log_min_messages=str(g.get("log_min_messages")),
        log_destination=str(g.get("log_destination")),
        log_line_prefix=str(g.get("log_line_prefix")),
        datadir=datadir,
    )


def reload(*, in_postmaster: bool) -> None:
    lines = me.guc.reload_from_file(conf_path(me.datadir), in_postmaster=in_postmaster)
    for ln in lines:
        elog.log(ln.level, ln.message, sqlstate=ln.sqlstate, detail=ln.detail, hint=ln.hint)
    apply_logging(me.guc, me.datadir)


def reload_in_child() -> None:
    reload(in_postmaster=False)
