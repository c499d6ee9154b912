"""Garbage next to good requests: every bad message is dead-lettered with a reason, every
good one becomes exactly one job, and the worker stays up."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable

import asyncpg

from tests.support import WorkerHandle, get_dead_letters, job_ids_for, publish, publish_raw, request, wait_for_jobs
from worker.amqp.topology import ERROR_HEADER
from worker.settings import Settings

PRODUCTS = (
    '[products.sessions]\nhandler = "postgres"\nnamespaces = ["userId", "email"]\n'
    'statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1)"]\n'
)


def garbage(rng: random.Random, key: str) -> list[bytes]:
    """A seeded mix of every kind of bad request body."""
    good_identity = {"namespace": {"code": "userId"}, "id": "x"}
    bodies: list[bytes] = [rng.randbytes(rng.randint(0, 200)) for _ in range(20)]
    odd_values: list[object] = [None, 1, "text", [], {}, [good_identity]]
    bodies += [json.dumps(value).encode() for value in odd_values]
    bodies += [
        b'{"requestId": "r", "projectKey": ',  # truncated JSON
        json.dumps({"requestId": 7, "projectKey": key, "identities": [good_identity]}).encode(),
        json.dumps({"requestId": "r", "projectKey": key, "identities": [{"namespace": "userId", "id": "x"}]}).encode(),
        json.dumps(
            {"requestId": "r", "projectKey": key, "identities": [good_identity], "startAt": "tomorrow"}
        ).encode(),
        json.dumps(
            {"requestId": "r", "projectKey": key, "identities": [good_identity], "action": "drop_table"}
        ).encode(),
        json.dumps({"requestId": "r" * 10_000, "projectKey": key, "identities": [good_identity]}).encode(),
        json.dumps({"requestId": "r", "projectKey": "no-such-project", "identities": [good_identity]}).encode(),
    ]
    rng.shuffle(bodies)
    return bodies


async def test_garbage_is_dead_lettered_and_good_requests_complete(
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    settings = make_settings(PRODUCTS)
    handle = await run_worker(settings)
    _, key = await make_project()
    bad = garbage(random.Random(20261122), key)
    good = [request(key, f"fuzz-{i}") for i in range(20)]
    duplicated_identities = request(key, "same", "same", "same")
    for index in range(0, len(bad), 5):
        await publish_raw(settings, handle.topology.requests.main, bad[index : index + 5])
        await publish(settings, good[index // 5 : index // 5 + 1])
    await publish(settings, [*good[len(bad) // 5 + 1 :], duplicated_identities, good[0]])

    dead = await get_dead_letters(settings, handle.topology.requests.dead, len(bad))
    assert all(str((message.headers or {})[ERROR_HEADER]) for message in dead)
    job_ids = await job_ids_for(pool, [r.request_id for r in [*good, duplicated_identities]])
    assert len(set(job_ids)) == len(good) + 1  # good[0] published twice is still one job
    assert set((await wait_for_jobs(pool, job_ids)).values()) == {"completed"}
    assert not handle.task.done()
    assert handle.worker.session is not None
