"""CPU time per request of every process the pipeline runs on, read from /proc.

Each process's user + system time is read before and after a step; the difference over
the requests the step completed is its CPU per request. Wall-clock throughput on a shared
2-core host moves with whatever else runs; CPU seconds per process do not, so these are
the numbers to compare between two versions of the code.

Processes: the bench's worker processes (by role), the Postgres backends of the bench's
own database, the rest of the Postgres server (WAL writer, checkpointer... and other
users' backends: shared, so noisy), RabbitMQ (the process listening on the AMQP port)
and the bench process itself (the producer, plus the bench's polling). Postgres and
RabbitMQ are only found when they run on this host; otherwise they are left out."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import asyncpg

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")
LISTEN = "0A"  # TCP state in /proc/net/tcp


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # the process ended
        return None
    # The command name (field 2) may hold spaces; every field after its ")" is numeric.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    fields = _stat_fields(pid)
    # After the name: state, ppid, ..., utime is field 14 and stime 15 of the whole line.
    return None if fields is None else (int(fields[11]) + int(fields[12])) / TICKS


def parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def _pids() -> Iterable[int]:
    return (int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit())


def children(of: int) -> list[int]:
    return [pid for pid in _pids() if parent(pid) == of]


def listening_pid(port: int) -> int | None:
    """The process with a TCP socket listening on `port`, or None."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for pid in _pids():
        try:
            for fd in (PROC / str(pid) / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return pid
        except OSError:  # ended, or not ours to read
            continue
    return None


Groups = Mapping[str, Iterable[int]]


def snapshot(groups: Groups) -> dict[tuple[str, int], float]:
    taken: dict[tuple[str, int], float] = {}
    for group, pids in groups.items():
        for pid in pids:
            seconds = cpu_seconds(pid)
            if seconds is not None:
                taken[(group, pid)] = seconds
    return taken


# The bench's own Postgres backend (its polling and bookkeeping): reported, never in the
# total, which is what the service spends per request.
BENCH_BACKEND = "postgres (the bench's own queries, not in total)"


def per_request_ms(
    before: Mapping[tuple[str, int], float], after: Mapping[tuple[str, int], float], requests: int
) -> dict[str, float]:
    """CPU ms per request of each group, and the total of all but BENCH_BACKEND. A process
    that started during the step counts from zero; one that ended during it is lost
    (short-lived Postgres backends: the bench's pools keep theirs open)."""
    totals: dict[str, float] = {}
    for (group, pid), seconds in after.items():
        totals[group] = totals.get(group, 0.0) + seconds - before.get((group, pid), 0.0)
    per_request = {group: round(seconds * 1000 / max(requests, 1), 3) for group, seconds in totals.items()}
    per_request["total"] = round(sum(ms for group, ms in per_request.items() if group != BENCH_BACKEND), 3)
    return per_request


async def postgres_groups(connection: asyncpg.Connection, database: str) -> dict[str, list[int]]:
    """The backends of `database` but `connection`'s own, that one (BENCH_BACKEND), and
    every other process of the same server."""
    backend: int = await connection.fetchval("SELECT pg_backend_pid()")
    postmaster = parent(backend)
    if postmaster is None:  # not on this host
        return {}
    rows = await connection.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    ours = {int(row["pid"]) for row in rows} - {backend}
    rest = [pid for pid in children(postmaster) if pid not in ours and pid != backend]
    return {
        "postgres (bench database)": sorted(ours),
        BENCH_BACKEND: [backend],
        "postgres (rest of server, shared)": rest,
    }
