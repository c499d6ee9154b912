"""The Node.js example product (deploy/examples/node-product) against a real broker and a
running service: any language can be a product with the JSON Schemas alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.node import NPM_TIMEOUT, node_and_npm, npm_ci
from tests.sdk.helpers import EXTERNAL_CRM, eventually
from tests.spans import context_of, links_of, spans_named
from tests.support import WorkerHandle, get_dead_letters, job_ids_for, publish, publish_raw, request, wait_for_jobs
from worker.amqp.topology import ERROR_HEADER
from worker.settings import Settings

MakeSettings = Callable[..., Settings]
MakeProject = Callable[..., Awaitable[tuple[int, str]]]
RunWorker = Callable[..., Awaitable[WorkerHandle]]

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "node-product"


def _installed() -> None:
    _, npm = node_and_npm("run the Node.js example product")
    if (EXAMPLE / "node_modules" / "amqplib").is_dir() and (EXAMPLE / "node_modules" / "ajv").is_dir():
        return
    npm_ci(npm, EXAMPLE)


class NodeProduct:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, object]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.events.append(json.loads(line))

    def saw(self, event: str) -> bool:
        return any(e.get("event") == event for e in self.events)

    def count(self, event: str) -> int:
        return sum(1 for e in self.events if e.get("event") == event)


@asynccontextmanager
async def node_product(settings: Settings) -> AsyncIterator[NodeProduct]:
    node, _ = node_and_npm("run the Node.js example product")
    environment = {
        **os.environ,
        "AMQP_URL": settings.amqp_url,
        "DELETION_PREFIX": settings.topology_prefix,
        "PRODUCT": "crm",
    }
    process = await asyncio.create_subprocess_exec(
        node, "product.mjs", cwd=EXAMPLE, env=environment, stdout=asyncio.subprocess.PIPE
    )
    product = NodeProduct(process)
    try:
        await eventually(lambda: product.saw("product_consuming") or process.returncode is not None)
        assert process.returncode is None, f"the product exited: {product.events}"
        yield product
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await product.reader


@pytest.mark.timeout(NPM_TIMEOUT + 60)
async def test_node_product_completes_jobs_and_dead_letters_bad_tasks(
    pool: asyncpg.Pool,
    make_settings: MakeSettings,
    make_project: MakeProject,
    run_worker: RunWorker,
    spans: InMemorySpanExporter,
) -> None:
    await asyncio.to_thread(_installed)
    settings = make_settings(EXTERNAL_CRM)
    await run_worker(settings)
    _, key = await make_project()
    queue = f"{settings.topology_prefix}.product.crm"
    requests = [request(key, f"node{n}@example.com", namespace="email") for n in range(5)]

    async with node_product(settings) as product:
        await publish(settings, requests)
        job_ids = await job_ids_for(pool, [r.request_id for r in requests])
        assert await wait_for_jobs(pool, job_ids) == dict.fromkeys(job_ids, "completed")
        # The product passed each task's trace context on to its acknowledgement: the acks
        # batches link every dispatch publish of a task.
        found = await spans_named(spans, f"process {settings.topology_prefix}.acks")
        task_publishes = {context_of(span) for span in found if span.name == "publish crm"}
        linked_by_acks = set().union(
            *(links_of(s) for s in found if s.name == f"process {settings.topology_prefix}.acks")
        )
        assert task_publishes
        assert task_publishes <= linked_by_acks

        await publish_raw(settings, queue, [b'{"taskId": "t1", "product": "crm"}'])
        [dead] = await get_dead_letters(settings, f"{queue}.dead", 1)
        assert str((dead.headers or {})[ERROR_HEADER]).startswith("schema: ")
    assert product.process.returncode == 0  # stopped by SIGTERM, gracefully
    assert product.count("task_acknowledged") >= 1
    assert product.saw("product_stopped")
