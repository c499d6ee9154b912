"""`deletion-worker queues`: depth, consumers, and warnings."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from tests.cli.conftest import Invoke
from tests.support import WorkerHandle, publish_raw, queue_depth, stop_worker
from worker.settings import Settings

PRODUCTS = '[products.crm]\nhandler = "external"\n'


async def test_queues_show_depth_consumers_and_warnings(
    invoke: Invoke, make_settings: Callable[..., Settings], run_worker: Callable[..., Awaitable[WorkerHandle]]
) -> None:
    settings = make_settings(PRODUCTS)
    missing = json.loads((await invoke(settings, "queues", "--json")).output)
    assert {row["warning"] for row in missing} == {"missing: no worker has declared it yet"}

    handle = await run_worker(settings)
    topology = handle.topology
    await publish_raw(settings, topology.requests.main, [b"not json"])  # becomes a dead letter
    await publish_raw(settings, topology.product("crm").main, [b"{}", b"{}"])  # nobody consumes crm: external
    while (await queue_depth(settings, topology.requests.dead))[0] < 1:
        pass
    rows = {row["queue"]: row for row in json.loads((await invoke(settings, "queues", "--json")).output)}
    # Main and dead per queue (requests, crm, acks, webhooks), and the retry tiers.
    assert len(rows) == 4 * 2 + len(topology.retry_delays_ms)
    assert rows[topology.webhooks.main]["consumers"] == 1  # the notify role
    assert rows[topology.requests.main]["consumers"] == 1
    assert rows[topology.acks.main]["consumers"] == 1
    assert rows[topology.product("crm").main] | {} == {
        "queue": topology.product("crm").main, "kind": "main", "exists": True, "ready": 2, "unacked": None,
        "consumers": 0, "warning": "work waiting and no consumer",
    }  # fmt: skip
    assert rows[topology.requests.dead]["ready"] == 1
    assert rows[topology.requests.dead]["warning"] == "dead letters: see `deletion-worker dlq list`"
    table = await invoke(settings, "queues")
    assert topology.product("crm").main in table.output
    assert "no consumer" in table.output
    await stop_worker(handle, delete_topology=False)
