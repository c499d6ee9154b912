"""The task outbox: a plan leaves it only when every message of it is confirmed, and one
refused plan holds back no other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

import asyncpg
import orjson

from tests.fakes import FakePublisher
from worker.amqp import Publisher, Topology
from worker.roles.relay import TaskRelay
from worker.store.dispatch import claim_due_jobs, plan_round, record_dispatch
from worker.store.jobs import NewJob, create_jobs
from worker.store.outbox import OutboxPlan


async def two_plans(pool: asyncpg.Pool, project_id: int) -> list[OutboxPlan]:
    """Two jobs dispatched in one round, one plan each, recorded in the outbox."""
    async with pool.acquire() as connection:
        await connection.execute("DELETE FROM dispatch_queue")  # only this test's jobs are due
        await create_jobs(
            connection,
            [NewJob(f"relay-{project_id}-{i}", project_id, [("userId", f"r{i}")]) for i in range(2)],
            ["p"],
            None,
        )
        async with connection.transaction():
            jobs = await claim_due_jobs(connection, 10, 1000)
            round_ = plan_round(jobs, ["p"], 10_000, 1, 4 * 1024 * 1024)  # one job per plan
            await record_dispatch(connection, round_, 60)
    return [OutboxPlan(plan.plan_id, plan.task_ids) for plan in round_.plans]


async def test_a_refused_plan_stays_and_the_others_leave(
    pool: asyncpg.Pool, make_project: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    project_id, _ = await make_project()
    round_plans = await two_plans(pool, project_id)
    assert len(round_plans) == 2
    publisher = FakePublisher(refuse_containing={str(round_plans[0].task_ids["p"]).encode()})
    sent = await TaskRelay(pool, Topology("t", ("p",))).publish(round_plans, cast(Publisher, publisher))
    assert sent == 2
    left = await pool.fetch("SELECT plan_id FROM task_outbox WHERE plan_id = ANY($1)", [p.plan_id for p in round_plans])
    assert [row["plan_id"] for row in left] == [round_plans[0].plan_id]  # to be tried again after its lease
    assert [orjson.loads(m.body)["taskId"] for m in publisher.published] == [str(round_plans[1].task_ids["p"])]


async def test_plans_not_confirmed_are_kept_to_publish_again_at_once(
    pool: asyncpg.Pool, make_project: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    project_id, _ = await make_project()
    plans = await two_plans(pool, project_id)
    relay = TaskRelay(pool, Topology("t", ("p",)))
    refusing = FakePublisher(refuse_containing={str(plans[0].task_ids["p"]).encode()})
    await relay.publish(plans, cast(Publisher, refusing))
    unsent = relay.take_unsent()
    assert [plan.plan_id for plan in unsent] == [plans[0].plan_id]
    assert relay.take_unsent() == []
    # Published again on a working session: out of the outbox now, not after its lease.
    healthy = FakePublisher()
    await relay.publish(unsent, cast(Publisher, healthy))
    assert await pool.fetchval("SELECT count(*) FROM task_outbox WHERE plan_id = $1", plans[0].plan_id) == 0
    assert relay.unsent == {}
