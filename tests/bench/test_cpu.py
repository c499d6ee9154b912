"""CPU time per process from /proc: the numbers of the bench's CPU-per-request line."""

from __future__ import annotations

import os
import socket
import time

import asyncpg

from worker.bench import cpu


def test_cpu_seconds_grow_with_work_and_a_gone_process_reads_as_none() -> None:
    # /proc counts in clock ticks (10 ms here) and the difference of two float readings can
    # fall a hair short of a whole tick (0.0399... for 67.55 - 67.51, seen in CI): the work
    # is many ticks long and the bound allows two ticks of rounding.
    before = cpu.cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    after = cpu.cpu_seconds(os.getpid())

    assert before is not None
    assert after is not None
    assert after - before >= 0.18
    assert cpu.cpu_seconds(2**22 + 1) is None  # above the kernel's pid_max default


def test_the_process_listening_on_a_port_is_found() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert cpu.listening_pid(port) == os.getpid()
    assert cpu.listening_pid(port) is None


def test_per_request_counts_new_processes_from_zero_and_sums_groups() -> None:
    before = {("worker", 10): 1.0, ("postgres", 20): 5.0}
    after = {("worker", 10): 1.3, ("postgres", 20): 5.1, ("postgres", 21): 0.1}

    per_request = cpu.per_request_ms(before, after, requests=1000)

    assert per_request == {"worker": 0.3, "postgres": 0.2, "total": 0.5}


def test_the_bench_s_own_postgres_backend_is_reported_but_not_in_the_total() -> None:
    before = {("worker", 10): 1.0, (cpu.BENCH_BACKEND, 30): 2.0}
    after = {("worker", 10): 1.3, (cpu.BENCH_BACKEND, 30): 2.1}

    per_request = cpu.per_request_ms(before, after, requests=1000)

    assert per_request == {"worker": 0.3, cpu.BENCH_BACKEND: 0.1, "total": 0.3}


async def test_the_asking_connection_is_the_bench_s_own_backend(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection, pool.acquire() as other:
        database = await connection.fetchval("SELECT current_database()")
        own = await connection.fetchval("SELECT pg_backend_pid()")
        other_pid = await other.fetchval("SELECT pg_backend_pid()")

        groups = await cpu.postgres_groups(connection, database)

    assert groups[cpu.BENCH_BACKEND] == [own]
    assert other_pid in groups["postgres (bench database)"]
    assert own not in groups["postgres (bench database)"]
    assert own not in groups["postgres (rest of server, shared)"]
