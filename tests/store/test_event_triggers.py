"""The lifecycle-event triggers (migrations/0008) on the hot path: what they cost the
statements that fire them.

Found by `deletion-worker bench`: with events, the pipeline fell from ~1,000 to ~300
requests/s and Postgres used four times the CPU. The trigger statements read transition
tables, whose joins the planner overestimates by orders of magnitude (836 rows planned as
13 million), so every dispatch round and acknowledgement batch paid 1-2 s of JIT
compilation for a few milliseconds of work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from worker.db import create_pool
from worker.settings import Settings
from worker.store.jobs import NewJob, create_jobs

MakeProject = Callable[..., Awaitable[tuple[int, str]]]

# The most eager JIT a server can be configured with, and every nested plan shown to the
# client as a notice.
EAGER_JIT_AND_PLANS = """
SET jit = on;
SET jit_above_cost = 0;
SET jit_inline_above_cost = 0;
SET jit_optimize_above_cost = 0;
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET auto_explain.log_timing = off;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
"""


async def test_event_triggers_are_never_jit_compiled(database_url: str, make_project: MakeProject) -> None:
    connection = await asyncpg.connect(database_url)
    if not await connection.fetchval("SELECT pg_jit_available()"):
        await connection.close()
        pytest.skip("this Postgres has no JIT")
    plans: list[str] = []
    connection.add_log_listener(lambda _c, message: plans.append(str(message.message)))
    try:
        project_id, _ = await make_project()
        await connection.execute(EAGER_JIT_AND_PLANS)
        created = await create_jobs(
            connection, [NewJob(f"jit-{i}", project_id, [("userId", f"u{i}")]) for i in range(20)], ["p1"], None
        )
        job_ids = list(created.values())
        await connection.execute("UPDATE jobs SET status = 'running' WHERE id = ANY($1::bigint[])", job_ids)
        await connection.execute(
            "UPDATE product_status SET status = 'success' WHERE job_id = ANY($1::bigint[])", job_ids
        )
    finally:
        await connection.close()
    trigger_plans = [plan for plan in plans if "INSERT INTO event_outbox" in plan]
    assert len(trigger_plans) == 3  # job inserted, job updated, products updated
    assert not [plan for plan in trigger_plans if "JIT:" in plan]
    # The statements themselves are planned as the session says (here: compiled).
    assert any("JIT:" in plan for plan in plans if "UPDATE jobs SET status" in plan)


async def test_worker_connections_run_without_jit(make_settings: Callable[..., Settings]) -> None:
    """The roles' own statements are short and batch-shaped (unnest of a few thousand
    values); the planner's estimates for them are as far off as for the triggers."""
    pool = await create_pool(make_settings(), min_size=1, max_size=1)
    try:
        assert await pool.fetchval("SHOW jit") == "off"
    finally:
        await pool.close()


async def test_every_trigger_on_the_hot_tables_runs_without_jit(pool: asyncpg.Pool) -> None:
    """The audit trail's triggers (migrations/0011, 0012) read transition tables too."""
    rows = await pool.fetch(
        "SELECT t.tgname, coalesce(p.proconfig, '{}') AS config FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
        " WHERE NOT t.tgisinternal AND (t.tgtype & 1) = 0"  # statement-level
        " AND t.tgrelid IN ('jobs'::regclass, 'product_status'::regclass, 'receipts'::regclass)"
    )
    assert len(rows) >= 7
    assert [row["tgname"] for row in rows if "jit=off" not in row["config"]] == []


async def test_trigger_joins_are_planned_for_the_rows_at_hand(database_url: str, make_project: MakeProject) -> None:
    """PL/pgSQL keeps a statement's first plan for the session: planned for a one-row
    update, the triggers joined the next 25,000-row update's transition tables by nested
    loop (218 s, seen in the test suite). Each statement that joins them is planned anew."""
    connection = await asyncpg.connect(database_url)
    plans: list[str] = []
    connection.add_log_listener(lambda _c, message: plans.append(str(message.message)))
    try:
        project_id, _ = await make_project()
        created = await create_jobs(
            connection, [NewJob(f"plan-{i}", project_id, [("userId", f"u{i}")]) for i in range(3000)], ["p1"], None
        )
        job_ids = sorted(created.values())
        await connection.execute(EAGER_JIT_AND_PLANS)
        await connection.execute("UPDATE jobs SET status = 'running' WHERE id = $1", job_ids[0])  # first plans
        plans.clear()
        await connection.execute("UPDATE jobs SET status = 'running' WHERE id = ANY($1::bigint[])", job_ids[1:])
        await connection.execute(
            "UPDATE product_status SET status = 'success' WHERE job_id = ANY($1::bigint[])", job_ids
        )
    finally:
        await connection.close()
    scans = [line for plan in plans for line in plan.splitlines() if "Named Tuplestore Scan" in line]
    assert scans
    # A scan's cost counts the tuples it was planned for, whatever its filter keeps:
    # 0.02 for one row, ~60 for 3,000.
    costs = [float(line.split("cost=")[1].split("..")[1].split()[0]) for line in scans]
    assert min(costs) > 10, scans  # every trigger statement was planned for the rows it had
