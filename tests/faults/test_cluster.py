"""A private three-node RabbitMQ cluster under load: the node leading the requests and
acks queues is killed -9 and later restarted, a follower is stopped, and a memory alarm
blocks every publisher for a while. Every role runs as a process of its own, connected
with DELETION_AMQP_URLS; nothing may be lost, duplicated or left without a consumer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.faults.accounting import Accounting, settle
from tests.faults.cluster import RabbitCluster
from tests.faults.conftest import PRODUCTS, fault_setup
from tests.faults.helpers import consumer_counts, log_events, wait_for_consumers, wait_until
from tests.faults.processes import WorkerProcesses
from tests.faults.services import available
from tests.support import Services
from worker.producer import Producer, PublishTimeoutError, build_request

BATCH = 250


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    """One cluster for the module: booting three Erlang nodes takes most of a minute here."""
    if not available():
        pytest.skip("rabbitmq-server and postgres binaries are needed for cluster tests")
    started = RabbitCluster()
    try:
        started.start()
        yield started
    finally:
        started.remove()


@pytest.fixture
async def on_cluster(
    cluster: RabbitCluster, services: Services, tmp_path: Path
) -> AsyncIterator[tuple[WorkerProcesses, asyncpg.Pool, str]]:
    await asyncio.to_thread(cluster.ensure_running)
    async with fault_setup(services.admin_database_url, cluster.urls[0], tmp_path) as (workers, pool, key):
        workers.env["DELETION_AMQP_URLS"] = ",".join(cluster.urls)
        yield workers, pool, key


def queues(prefix: str) -> list[str]:
    return [f"{prefix}.requests", f"{prefix}.acks", *(f"{prefix}.product.{p}" for p in PRODUCTS)]


async def publish(
    producer: Producer, project_key: str, count: int, tag: str, progress: Progress | None = None
) -> list[str]:
    requests = [build_request(project_key, [("userId", f"{tag}-{i}")]) for i in range(count)]
    for start in range(0, count, BATCH):
        await producer.publish(requests[start : start + BATCH])
        if progress is not None:
            progress.published += len(requests[start : start + BATCH])
    return [request.request_id for request in requests]


class Progress:
    """Samples the completed jobs every 0.1 s, while some published ones are not: the
    longest time without one more completed is the longest stall."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.published = 0
        self.longest_stall = 0.0
        self.stalled_from = 0.0
        self.changes: list[float] = []  # when the completed count grew
        self.task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        seen, since = -1, time.monotonic()
        while True:
            done = await self.pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'")
            now = time.monotonic()
            if done != seen:
                seen, since = done, now
                self.changes.append(now)
            if done >= self.published:
                since = now  # idle, nothing to do: not a stall
            if done < self.published and now - since > self.longest_stall:
                self.longest_stall, self.stalled_from = now - since, since
            await asyncio.sleep(0.1)

    def resumed_after(self, moment: float) -> float:
        """Seconds from `moment` until the next job completed."""
        return round(next(at for at in self.changes if at > moment) - moment, 1)

    def stop(self) -> float:
        self.task.cancel()
        return round(self.longest_stall, 1)


async def check_books(
    pool: asyncpg.Pool, workers: WorkerProcesses, request_ids: list[str], label: str, consumers: dict[str, int]
) -> Accounting:
    books = await settle(pool, request_ids, timeout=150)
    print(books.line(label))  # noqa: T201 - the accounting is the test's report
    assert books.lost == 0
    assert books.duplicated == 0
    assert books.overcounted_products == 0
    assert books.completed == books.accepted == len(set(request_ids))
    successes = dict(
        await pool.fetch(
            "SELECT product, count(*) FILTER (WHERE status = 'success' AND chunks_success = chunks_total)"
            " FROM product_status GROUP BY product"
        )
    )
    assert successes == dict.fromkeys(PRODUCTS, books.accepted)
    prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
    assert await wait_for_consumers(workers.env["DELETION_AMQP_URLS"].split(",")[0], queues(prefix)) == consumers
    return books


@pytest.mark.timeout(300)
async def test_leader_killed_and_restarted_then_a_follower_stopped(
    cluster: RabbitCluster, on_cluster: tuple[WorkerProcesses, asyncpg.Pool, str]
) -> None:
    workers, pool, key = on_cluster
    prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
    started = time.monotonic()
    workers.start_every_role(PRODUCTS)
    consumers = await wait_for_consumers(cluster.urls[0], queues(prefix))
    requests_queue, acks_queue = f"{prefix}.requests", f"{prefix}.acks"
    assert len(cluster.members(requests_queue)) == len(cluster.nodes)
    leaders = cluster.leaders([requests_queue, acks_queue])
    progress = Progress(pool)
    try:
        books, killed_at, new_leaders, stopped = await run_faults(
            cluster, workers, (pool, progress), key, leaders, consumers
        )
    finally:
        stall = progress.stop()
    print(  # noqa: T201 - the measurements are the test's report
        f"[cluster] leaders before={leaders} after={new_leaders} stopped_follower={stopped} requests={books.accepted}"
        f" resumed_after_kill_s={progress.resumed_after(killed_at)} longest_stall_s={stall}"
        f" (from {progress.stalled_from - killed_at:.1f} s after the kill)"
        f" total_s={time.monotonic() - started:.1f}"
    )
    # Leadership moved off the killed node (it does not move back on its own).
    assert new_leaders[requests_queue] != leaders[requests_queue]
    # Plans cut off mid-publish went out on the dispatcher's next session, not after the lease.
    assert not log_events(workers.logs(), "outbox_plans_republished")


async def run_faults(
    cluster: RabbitCluster,
    workers: WorkerProcesses,
    watched: tuple[asyncpg.Pool, Progress],
    key: str,
    leaders: dict[str, str],
    consumers: dict[str, int],
) -> tuple[Accounting, float, dict[str, str], str]:
    """Publish 4,000 requests in three parts, across the faults: the books at the end,
    and when the leader was killed."""
    pool, progress = watched
    requests_queue, acks_queue = list(leaders)
    leader = cluster.node_named(leaders[requests_queue])
    prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
    async with Producer(cluster.urls, prefix) as producer:
        ids = await publish(producer, key, 1500, "before", progress)
        await wait_until(pool, "SELECT count(*) >= 300 FROM jobs WHERE status = 'completed'")
        await asyncio.to_thread(leader.kill9)
        killed_at = time.monotonic()
        # The producer's connection (to the first node, the leader) is gone: it moves on.
        ids += await publish(producer, key, 1500, "leader-down", progress)
        await wait_until(pool, "SELECT count(*) >= 2000 FROM jobs WHERE status = 'completed'", timeout=120)
        print(f"[cluster] restarting the leader {time.monotonic() - killed_at:.1f} s after the kill")  # noqa: T201
        await asyncio.to_thread(cluster.restart, leader)
        await asyncio.to_thread(cluster.wait_for_quorum_members, [requests_queue, acks_queue], len(cluster.nodes))
        new_leaders = await asyncio.to_thread(cluster.leaders, [requests_queue, acks_queue])
        # A node leading neither queue; when the two leaders sit on the two nodes that
        # stayed up, the requests queue's other follower (which leads acks).
        idle = [n for n in cluster.nodes if n.node not in new_leaders.values()]
        follower = next(n for n in cluster.nodes if n.node != new_leaders[requests_queue] and n is not leader)
        follower = idle[0] if idle and idle[0] is not leader else follower
        await asyncio.to_thread(follower.stop)
        print(f"[cluster] follower stopped {time.monotonic() - killed_at:.1f} s after the kill")  # noqa: T201
        ids += await publish(producer, key, 1000, "follower-down", progress)
        books = await check_books(pool, workers, ids, "cluster: leader kill -9, follower stop", consumers)
    await asyncio.to_thread(cluster.restart, follower)
    return books, killed_at, new_leaders, follower.node


@pytest.mark.timeout(240)
async def test_a_memory_alarm_blocks_publishers_until_it_clears(
    cluster: RabbitCluster, on_cluster: tuple[WorkerProcesses, asyncpg.Pool, str]
) -> None:
    workers, pool, key = on_cluster
    prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
    workers.start_every_role(PRODUCTS)
    consumers = await wait_for_consumers(cluster.urls[0], queues(prefix))
    node = cluster.running()
    async with Producer(cluster.urls, prefix) as producer:
        ids = await publish(producer, key, 1000, "before-alarm")
        node.ctl("set_vm_memory_high_watermark", "absolute", "1")
        try:
            await asyncio.to_thread(cluster.wait_for_alarm, node)
            publishing = asyncio.create_task(publish(producer, key, 2000, "alarm"))
            # A producer that may wait one second gives up with an error that says so.
            impatient = [build_request(key, [("userId", f"impatient-{i}")]) for i in range(BATCH)]
            async with Producer(cluster.urls, prefix, confirm_timeout=1) as hurried:
                with pytest.raises(PublishTimeoutError):
                    await hurried.publish(impatient)
            await asyncio.sleep(2)
            assert not publishing.done(), "publishing went on under a memory alarm"
            held = await consumer_counts(cluster.urls[-1], queues(prefix))
        finally:
            node.ctl("set_vm_memory_high_watermark", "0.4")
        cleared = time.monotonic()
        ids += await asyncio.wait_for(publishing, 60)
        # Published again once the alarm is over: the part that got through is not doubled.
        await producer.publish(impatient)
        ids += [request.request_id for request in impatient]
        waited = time.monotonic() - cleared
        print(f"[cluster] memory alarm: the blocked publishes finished {waited:.1f} s after it cleared")  # noqa: T201
    assert held == consumers
    await check_books(pool, workers, ids, "cluster: memory alarm", consumers)
