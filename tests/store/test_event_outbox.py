"""The event outbox read back (worker.store.events.claim): a round takes the oldest free
rows up to a number of events, whatever else holds the outbox, in one statement."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from worker.store.events import claim
from worker.store.jobs import NewJob, create_jobs

MakeProject = Callable[..., Awaitable[tuple[int, str]]]


async def _rows_of(connection: asyncpg.Connection, project_id: int, jobs_per_statement: list[int]) -> list[int]:
    """One outbox row per statement, holding one job.scheduled event per job it created."""
    for count in jobs_per_statement:
        jobs = [NewJob(f"outbox-{uuid.uuid4()}", project_id, [("userId", "x")]) for _ in range(count)]
        await create_jobs(connection, jobs, [], None)
    rows = await connection.fetch("SELECT id, event_count FROM event_outbox ORDER BY id")
    assert [row["event_count"] for row in rows] == jobs_per_statement
    return [row["id"] for row in rows]


async def test_a_round_keeps_to_its_number_of_events_but_always_takes_one_row(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        await connection.execute("DELETE FROM event_outbox")  # only this test's rows
        first, second, third = await _rows_of(connection, project_id, [3, 1, 2])

        taken = await claim(connection, max_rows=10, max_events=4, lease_seconds=60)
        assert [(batch.outbox_id, len(batch.events)) for batch in taken] == [(first, 3), (second, 1)]
        # Leased: the next round finds only the third row, whose two events are over a
        # budget of one, and takes it all the same (a row's events are never split).
        taken = await claim(connection, max_rows=10, max_events=1, lease_seconds=60)
        assert [(batch.outbox_id, len(batch.events)) for batch in taken] == [(third, 2)]
        assert await claim(connection, max_rows=10, max_events=100, lease_seconds=60) == []
        assert await connection.fetchval("SELECT min(attempts) FROM event_outbox") == 1


async def test_rows_another_relay_is_taking_are_passed_over_not_waited_for(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection, pool.acquire() as other:
        await connection.execute("DELETE FROM event_outbox")
        first, second = await _rows_of(connection, project_id, [1, 1])
        async with other.transaction():
            await other.execute("SELECT 1 FROM event_outbox WHERE id = $1 FOR UPDATE", first)
            taken = await claim(connection, max_rows=10, max_events=100, lease_seconds=60)
            assert [batch.outbox_id for batch in taken] == [second]
        # Once the leases run out, the oldest row comes first again.
        await connection.execute("UPDATE event_outbox SET claimed_until = '-infinity'")
        taken = await claim(connection, max_rows=1, max_events=100, lease_seconds=60)
        assert [batch.outbox_id for batch in taken] == [first]
