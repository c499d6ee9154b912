"""The overview's counts, from one pass over the organization's jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from tests.console.conftest import Member, insert_job, sign_in
from worker.store.overview import overview

MakeMember = Callable[..., Awaitable[Member]]


async def test_counts_by_status_due_date_day_and_product(make_member: MakeMember, pool: asyncpg.Pool) -> None:
    member = await make_member("org-console-overview")
    other = await make_member("org-console-elsewhere")
    now = datetime.now(UTC)
    overdue = await insert_job(pool, member, [("userId", "a")], due_at=now - timedelta(hours=1))
    await insert_job(pool, member, [("userId", "b")], due_at=now + timedelta(days=1))
    await insert_job(pool, member, [("userId", "c")], due_at=now + timedelta(days=20))
    done = await insert_job(pool, member, [("userId", "d")])
    failed = await insert_job(pool, member, [("userId", "e")])
    old = await insert_job(pool, member, [("userId", "f")])
    await insert_job(pool, other, [("userId", "g")], due_at=now - timedelta(hours=1))
    await pool.execute("UPDATE jobs SET status = 'completed', finished_at = now() WHERE id = $1", done)
    await pool.execute("UPDATE jobs SET status = 'failed', finished_at = now() WHERE id = $1", failed)
    await pool.execute("UPDATE product_status SET status = 'success' WHERE job_id = $1", done)
    await pool.execute("UPDATE product_status SET status = 'failed' WHERE job_id = $1 AND product = 'sessions'", failed)
    await pool.execute("UPDATE jobs SET created_at = now() - interval '40 days', status = 'running' WHERE id = $1", old)
    await pool.execute("UPDATE jobs SET status = 'running' WHERE id = $1", overdue)

    async with pool.acquire() as connection:
        summary = await overview(connection, [member.project_id])

    assert summary.by_status == {"scheduled": 2, "running": 2, "completed": 1, "failed": 1, "cancelled": 0}
    assert (summary.overdue, summary.at_risk) == (1, 1)
    today = summary.per_day[-1]
    assert today == (now.date().isoformat(), 5, 1)  # the 40-day-old job is not in the chart
    assert len(summary.per_day) == 14
    assert sum(received for _, received, _ in summary.per_day) == 5
    assert summary.products == [("profiles", 0, 1), ("sessions", 1, 2)]


async def test_the_page_says_when_it_was_counted(
    make_client: Callable[..., httpx.AsyncClient], make_member: MakeMember
) -> None:
    member = await make_member("org-console-overview")
    async with make_client() as client:
        await sign_in(client, member.key)
        page = await client.get("/console")
        assert "Counts as of" in page.text
        assert page.headers["server-timing"].startswith("app;dur=")
