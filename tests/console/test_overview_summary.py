"""The overview from the summary of settled jobs equals a direct count of the jobs, through
inserts, status changes, cancels, a retried job and deletions, before and after passes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.console.conftest import Member, insert_job
from worker.store.jobs import cancel_job, delete_jobs
from worker.store.overview import AT_RISK, CHART_DAYS, JOB_STATUSES, RATES_DAYS, Overview, overview
from worker.store.overview_summary import settle, unsettle

MakeMember = Callable[..., Awaitable[Member]]


async def direct_count(connection: asyncpg.Connection, project_ids: list[int]) -> Overview:
    """The overview counted straight from `jobs` and `product_status`."""
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=back) for back in range(CHART_DAYS - 1, -1, -1)]
    jobs = await connection.fetch(
        "SELECT id, status, created_at, finished_at, due_at, now() AS now FROM jobs WHERE project_id = ANY($1)",
        project_ids,
    )
    by_status = dict.fromkeys(JOB_STATUSES, 0)
    overdue = at_risk = 0
    for job in jobs:
        by_status[job["status"]] += 1
        if job["status"] in ("scheduled", "running") and job["due_at"] is not None:
            overdue += job["due_at"] < job["now"]
            at_risk += job["now"] <= job["due_at"] < job["now"] + AT_RISK
    received = [sum(1 for j in jobs if j["created_at"].astimezone(UTC).date() == day) for day in days]
    completed = [
        sum(1 for j in jobs if j["status"] == "completed" and j["finished_at"].astimezone(UTC).date() == day)
        for day in days
    ]
    rates_from = datetime.combine(today - timedelta(days=RATES_DAYS), datetime.min.time(), UTC)
    products = await connection.fetch(
        "SELECT ps.product, count(*) FILTER (WHERE ps.status = 'failed') AS failed,"
        " count(*) FILTER (WHERE ps.status IN ('success', 'failed')) AS finished"
        " FROM product_status ps JOIN jobs j ON j.id = ps.job_id"
        " WHERE j.project_id = ANY($1) AND j.created_at >= $2 GROUP BY ps.product ORDER BY ps.product",
        project_ids,
        rates_from,
    )
    return Overview(
        by_status=by_status,
        overdue=overdue,
        at_risk=at_risk,
        per_day=[(day.isoformat(), r, c) for day, r, c in zip(days, received, completed, strict=True)],
        products=[(row["product"], row["failed"], row["finished"]) for row in products],
    )


async def end(pool: asyncpg.Pool, job_id: int, status: str, days_ago: int, products: tuple[str, str]) -> None:
    """End a job `days_ago` days after it was received today, its products as given."""
    await pool.execute(
        "UPDATE jobs SET status = $2, created_at = now() - make_interval(days => $3),"
        " finished_at = now() - make_interval(days => $3) + interval '1 hour' WHERE id = $1",
        job_id,
        status,
        days_ago,
    )
    for product, product_status in zip(("profiles", "sessions"), products, strict=True):
        await pool.execute(
            "UPDATE product_status SET status = $3 WHERE job_id = $1 AND product = $2", job_id, product, product_status
        )


async def catch_up(pool: asyncpg.Pool) -> int:
    """Passes until the watermark is past every job of the database (earlier tests' jobs
    share it), so what a pass settles next is this test's; returns the jobs pending then.
    Without it the test counted its own jobs only while the earlier tests had made fewer
    than a page of them (1,000): two more tests' jobs and it saw 32 settled, not 5."""
    async with pool.acquire() as connection:
        last: int = await connection.fetchval("SELECT coalesce(max(id), 0) FROM jobs")
        for _ in range(1_000):
            if await connection.fetchval("SELECT job_id FROM overview_watermark") >= last:
                break
            await settle(connection, 10_000, margin=timedelta(0))
        else:
            raise AssertionError("the overview pass did not catch up")
        pending: int = await connection.fetchval("SELECT count(*) FROM overview_pending")
    return pending


async def test_summary_and_live_counts_equal_a_direct_count(make_member: MakeMember, pool: asyncpg.Pool) -> None:
    pending_before = await catch_up(pool)
    member = await make_member("org-overview-summary")
    other = await make_member("org-overview-summary-other")
    now = datetime.now(UTC)
    ids = [await insert_job(pool, member, [("userId", f"u{n}")]) for n in range(12)]
    await insert_job(pool, other, [("userId", "elsewhere")])
    await end(pool, ids[0], "completed", 0, ("success", "success"))
    await end(pool, ids[1], "completed", 3, ("success", "skipped"))
    await end(pool, ids[2], "failed", 5, ("failed", "success"))
    await end(pool, ids[3], "failed", 40, ("failed", "failed"))  # older than the rates and the chart
    await end(pool, ids[4], "cancelled", 1, ("cancelled", "success"))
    await end(pool, ids[5], "completed", 2, ("success", "running"))  # ended, a product still running: pending
    await pool.execute(
        "UPDATE jobs SET status = 'running', due_at = $2 WHERE id = $1", ids[6], now - timedelta(hours=2)
    )
    await pool.execute("UPDATE jobs SET due_at = $2 WHERE id = $1", ids[7], now + timedelta(days=1))
    projects = [member.project_id]

    async def assert_equal() -> None:
        async with pool.acquire() as connection:
            assert await overview(connection, projects) == await direct_count(connection, projects)

    await assert_equal()  # nothing settled yet: all live
    async with pool.acquire() as connection:
        assert await settle(connection, 1000, margin=timedelta(0)) == 5
        pending = await connection.fetchval("SELECT count(*) FROM overview_pending")
        assert pending == pending_before + 8  # 7 here, 1 elsewhere
    await assert_equal()

    # After the pass: pending jobs end, new jobs arrive, a job is cancelled.
    await end(pool, ids[6], "failed", 0, ("failed", "success"))
    await pool.execute("UPDATE product_status SET status = 'success' WHERE job_id = $1", ids[5])
    async with pool.acquire() as connection:
        await cancel_job(connection, ids[8])
    later = [await insert_job(pool, member, [("userId", f"v{n}")]) for n in range(3)]
    await end(pool, later[0], "completed", 0, ("success", "success"))
    await assert_equal()
    async with pool.acquire() as connection:
        assert await settle(connection, 1000, margin=timedelta(0)) == 4  # ids 5, 6 and 8, later[0]
    await assert_equal()

    # A settled failed job retried (running again), settled jobs deleted (one each of
    # the summary, pending and live), then another pass.
    async with pool.acquire() as connection, connection.transaction():
        await unsettle(connection, [ids[2]])
        await connection.execute("UPDATE jobs SET status = 'running', finished_at = NULL WHERE id = $1", ids[2])
        await connection.execute("UPDATE product_status SET status = 'running' WHERE job_id = $1", ids[2])
    await assert_equal()
    extra = await insert_job(pool, member, [("userId", "w")])
    async with pool.acquire() as connection:
        await delete_jobs(connection, [ids[0], ids[9], extra])
    await assert_equal()
    await end(pool, ids[2], "completed", 5, ("success", "success"))
    async with pool.acquire() as connection:
        await settle(connection, 1000, margin=timedelta(0))
        settled = await connection.fetchval("SELECT sum(n) FROM overview_days WHERE project_id = $1", member.project_id)
        assert settled == 8  # 9 settled, one retried (and settled again), one deleted
    await assert_equal()


async def test_the_pass_keeps_back_jobs_within_the_margin(make_member: MakeMember, pool: asyncpg.Pool) -> None:
    member = await make_member("org-overview-margin")
    job = await insert_job(pool, member, [("userId", "a")])
    await end(pool, job, "completed", 0, ("success", "success"))
    await pool.execute("UPDATE jobs SET created_at = now() WHERE id = $1", job)
    async with pool.acquire() as connection:
        assert await settle(connection, 1000) == 0  # created just now: its id may not be the last one taken
        assert await connection.fetchval("SELECT job_id FROM overview_watermark") < job
        assert (await overview(connection, [member.project_id])).by_status["completed"] == 1
