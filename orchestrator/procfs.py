"""Reading the process table from /proc (Linux): parents and command lines.

What it does: the one place the orchestrator and the benchmarks look up processes — a
pid → ppid map and the children of a process with their titles (pgbed's children set their
titles with setproctitle, so /proc/PID/cmdline shows their role).

What it deliberately does not do: signal anything, or work off Linux.
"""

from __future__ import annotations

from pathlib import Path


def proc_table() -> dict[int, int]:
    """pid → ppid of every process visible now."""
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            out[int(p.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def children(ppid: int) -> dict[int, str]:
    """pid → command line (process title) of the direct children of `ppid`."""
    return {pid: cmdline(pid) for pid, parent in proc_table().items() if parent == ppid}


def state(pid: int) -> str:
    """The process state letter from /proc/PID/stat (R, S, T for stopped, Z, ...), or `?` when
    the process is gone."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"
