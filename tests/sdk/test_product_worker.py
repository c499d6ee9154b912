"""The product SDK against a real broker and a running service: jobs complete, fail, retry,
and a stop in the middle of a task loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.sdk.helpers import EXTERNAL_CRM, crm_worker, eventually
from tests.spans import context_of, links_of, one, parent_of, spans_named
from tests.support import (
    TcpProxy,
    WorkerHandle,
    get_dead_letters,
    job_ids_for,
    publish,
    publish_raw,
    queue_depth,
    request,
    wait_for_jobs,
)
from worker.amqp.topology import ERROR_HEADER, ORIGIN_HEADER, Topology
from worker.sdk import Item, PermanentError, Result, TransientError
from worker.settings import Settings

MakeSettings = Callable[..., Settings]
MakeProject = Callable[..., Awaitable[tuple[int, str]]]
RunWorker = Callable[..., Awaitable[WorkerHandle]]
REPO_ROOT = Path(__file__).resolve().parents[2]


async def _service(make_settings: MakeSettings, run_worker: RunWorker, **overrides: object) -> Settings:
    settings = make_settings(EXTERNAL_CRM, **overrides)
    await run_worker(settings)
    return settings


async def test_product_worker_completes_jobs(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = await _service(make_settings, run_worker)
    _, key = await make_project()
    seen: list[tuple[int, list[str]]] = []

    async def handle(items: list[Item]) -> list[Result]:
        seen.extend((item.job_id, item.values("email")) for item in items)
        return [item.succeeded(deleted=len(item.identities)) for item in items]

    requests = [request(key, f"user{n}@example.com", namespace="email") for n in range(5)]
    async with crm_worker(settings, handle) as product:
        await eventually(product.consuming.is_set)
        await publish(settings, requests)
        job_ids = await job_ids_for(pool, [r.request_id for r in requests])
        assert await wait_for_jobs(pool, job_ids) == dict.fromkeys(job_ids, "completed")
    assert sorted(seen) == sorted((job, [f"user{n}@example.com"]) for n, job in enumerate(job_ids))
    assert product.counts.retried == product.counts.dead_lettered == product.counts.failed == 0
    assert await queue_depth(settings, f"{settings.topology_prefix}.product.crm") == (0, 0)


async def test_permanent_error_fails_the_job_with_its_message(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = await _service(make_settings, run_worker)
    _, key = await make_project()

    async def handle(items: list[Item]) -> list[Result]:
        raise PermanentError("crm refuses: account is under legal hold")

    deletion = request(key, "held@example.com")
    async with crm_worker(settings, handle) as product:
        await eventually(product.consuming.is_set)
        await publish(settings, [deletion])
        [job_id] = await job_ids_for(pool, [deletion.request_id])
        assert await wait_for_jobs(pool, [job_id]) == {job_id: "failed"}
    errors = await pool.fetchval("SELECT errors FROM jobs WHERE id = $1", job_id)
    assert errors == ["crm: crm refuses: account is under legal hold"]
    assert product.counts.failed == 1


async def test_transient_error_is_retried_then_completes(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = await _service(make_settings, run_worker)
    _, key = await make_project()
    calls = 0

    async def handle(items: list[Item]) -> list[Result]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientError("crm answered 503")
        return [item.succeeded() for item in items]

    deletion = request(key, "flaky@example.com")
    async with crm_worker(settings, handle) as product:
        await eventually(product.consuming.is_set)
        await publish(settings, [deletion])
        [job_id] = await job_ids_for(pool, [deletion.request_id])
        assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    assert calls == 3
    assert product.counts.retried == 2


async def test_a_slow_handle_times_out_and_is_retried(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = await _service(make_settings, run_worker)
    _, key = await make_project()
    calls = 0

    async def handle(items: list[Item]) -> list[Result]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(30)
        return [item.succeeded() for item in items]

    deletion = request(key, "slow@example.com")
    async with crm_worker(settings, handle, timeout=0.3) as product:
        await eventually(product.consuming.is_set)
        await publish(settings, [deletion])
        [job_id] = await job_ids_for(pool, [deletion.request_id])
        assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    assert calls == 2
    assert product.counts.retried == 1


async def test_stop_finishes_the_task_in_hand_and_hands_back_the_rest(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    # One job per task, so that tasks wait behind the one in hand.
    settings = await _service(make_settings, run_worker, task_max_items=1)
    _, key = await make_project()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def blocking(items: list[Item]) -> list[Result]:
        entered.set()
        await release.wait()
        return [item.succeeded() for item in items]

    requests = [request(key, f"inflight{n}@example.com") for n in range(4)]
    product = crm_worker(settings, blocking, batch_size=1, concurrency=1)
    serving = asyncio.create_task(product.serve())
    await eventually(product.consuming.is_set)
    await publish(settings, requests)
    job_ids = await job_ids_for(pool, [r.request_id for r in requests])
    await asyncio.wait_for(entered.wait(), 20)

    product.stop("test")
    await asyncio.sleep(0.5)
    assert not serving.done()  # waiting for the task in hand
    release.set()
    await asyncio.wait_for(serving, 15)
    assert product.counts.tasks == 1
    assert product.counts.unfinished == 0

    async def one_completed() -> bool:
        rows = await pool.fetch("SELECT status FROM jobs WHERE id = ANY($1::bigint[])", job_ids)
        return sorted(row["status"] for row in rows) == ["completed", "running", "running", "running"]

    await eventually(one_completed)

    # Nothing was lost: a second worker finds every other task on the queue.
    async def quick(items: list[Item]) -> list[Result]:
        return [item.succeeded() for item in items]

    async with crm_worker(settings, quick) as second:
        assert await wait_for_jobs(pool, job_ids) == dict.fromkeys(job_ids, "completed")
    assert second.counts.tasks == 3


async def test_an_invalid_task_is_dead_lettered_with_the_reason(
    make_settings: MakeSettings, run_worker: RunWorker
) -> None:
    settings = await _service(make_settings, run_worker)
    queue = f"{settings.topology_prefix}.product.crm"

    async def handle(items: list[Item]) -> list[Result]:
        raise AssertionError("no valid task was sent")

    async with crm_worker(settings, handle) as product:
        await eventually(product.consuming.is_set)
        await publish_raw(settings, queue, [b"{not json", b'{"taskId": "t1", "product": "crm", "items": []}'])
        dead = await get_dead_letters(settings, f"{queue}.dead", 2)
    reasons = sorted(str((message.headers or {})[ERROR_HEADER]) for message in dead)
    assert reasons[0] == "json: body is not valid JSON"
    assert reasons[1].startswith("schema: items:")
    assert {(message.headers or {})[ORIGIN_HEADER] for message in dead} == {queue}
    assert product.counts.dead_lettered == 2


async def test_sigterm_under_run_finishes_the_task_and_logs_one_summary(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = await _service(make_settings, run_worker)
    _, key = await make_project()
    environment = {
        **os.environ,
        "AMQP_URL": settings.amqp_url,
        "PREFIX": settings.topology_prefix,
        "RETRY_BASE_MS": str(settings.retry_base_ms),
        "RETRY_CAP_MS": str(settings.retry_cap_ms),
        "HANDLE_SECONDS": "1.5",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.sdk.slow_product",
        cwd=REPO_ROOT,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deletion = request(key, "sigterm@example.com")
        await publish(settings, [deletion])
        [job_id] = await job_ids_for(pool, [deletion.request_id])
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"handling\n"
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    [summary] = [line for line in lines if line["event"] == "product_worker_stopped"]
    assert (summary["tasks"], summary["unfinished"], summary["retried"]) == (1, 0, 0)


async def test_reconnects_after_the_broker_connection_is_lost(
    pool: asyncpg.Pool, make_settings: MakeSettings, make_project: MakeProject, run_worker: RunWorker
) -> None:
    settings = await _service(make_settings, run_worker)
    _, key = await make_project()
    broker = urlsplit(settings.amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    await proxy.start()
    through_proxy = settings.model_copy(
        update={"amqp_url": urlunsplit(broker._replace(netloc=f"guest:guest@127.0.0.1:{proxy.port}"))}
    )

    async def handle(items: list[Item]) -> list[Result]:
        return [item.succeeded() for item in items]

    try:
        async with crm_worker(through_proxy, handle) as product:
            await eventually(product.consuming.is_set)
            proxy.drop()
            await eventually(lambda: product.counts.sessions == 2 and product.consuming.is_set())
            deletion = request(key, "after-loss@example.com")
            await publish(settings, [deletion])
            [job_id] = await job_ids_for(pool, [deletion.request_id])
            assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    finally:
        await proxy.close()


async def test_a_product_worker_batch_is_a_span_between_the_dispatch_and_the_acks(
    pool: asyncpg.Pool,
    make_settings: MakeSettings,
    make_project: MakeProject,
    run_worker: RunWorker,
    spans: InMemorySpanExporter,
) -> None:
    """The SDK's products are in the request's trace: a batch span linking each task's
    dispatch publish, the acknowledgements published as its children, linked by acks."""
    settings = await _service(make_settings, run_worker)
    topology = Topology.for_settings(settings, ["crm"])
    _, key = await make_project()

    async def handle(items: list[Item]) -> list[Result]:
        return [item.succeeded() for item in items]

    deletion = request(key, "traced@example.com", namespace="email")
    async with crm_worker(settings, handle) as product:
        await eventually(product.consuming.is_set)
        await publish(settings, [deletion])
        job_ids = await job_ids_for(pool, [deletion.request_id])
        assert await wait_for_jobs(pool, job_ids) == dict.fromkeys(job_ids, "completed")
    found = await spans_named(spans, f"process {topology.acks.main}")
    task_published = one(found, "publish crm", SpanKind.PRODUCER)
    batch = one(found, f"process {topology.product('crm').main}", SpanKind.CONSUMER)
    assert context_of(task_published) in links_of(batch)
    ack_published = one(found, f"publish {topology.acks.main}", SpanKind.PRODUCER)
    assert parent_of(ack_published) == context_of(batch)
    acks = one(found, f"process {topology.acks.main}", SpanKind.CONSUMER)
    assert context_of(ack_published) in links_of(acks)
