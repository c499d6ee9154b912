"""Every role a process of its own, connected to the broker through a proxy that adds
latency, cuts every connection mid-frame, then goes silent on them (no FIN, no RST):
nothing is lost or duplicated, each process notices the silence by heartbeat, and every
queue gets its consumers back."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.faults.accounting import settle
from tests.faults.conftest import PRODUCTS, fault_setup
from tests.faults.helpers import consumer_counts, log_events, publish_many, wait_for_consumers, wait_until
from tests.support import Services, TcpProxy

HEARTBEAT = 2  # seconds, negotiated through the URL (RabbitMQ takes the lower of the two)
# aiormq gives up on a connection after (heartbeat + 1) * 3 s without a frame.
DETECTION_LIMIT = (HEARTBEAT + 1) * 3
PART = 700


def through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc, query=f"heartbeat={HEARTBEAT}"))


@pytest.mark.timeout(240)
async def test_latency_cuts_and_silent_drops_lose_nothing(services: Services, tmp_path: Path) -> None:
    broker = urlsplit(services.amqp_url)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672, latency=0.002)
    await proxy.start()
    try:
        async with fault_setup(services.admin_database_url, services.amqp_url, tmp_path) as (workers, pool, key):
            workers.env["DELETION_AMQP_URL"] = through(proxy, services.amqp_url)
            prefix = workers.env["DELETION_TOPOLOGY_PREFIX"]
            queues = [f"{prefix}.requests", f"{prefix}.acks", *(f"{prefix}.product.{p}" for p in PRODUCTS)]
            workers.start_every_role(PRODUCTS)
            consumers = await wait_for_consumers(services.amqp_url, queues)
            processes = len(workers.running)

            ids = await publish_many(services.amqp_url, prefix, key, PART, "cut")
            await wait_until(pool, "SELECT count(*) >= 200 FROM jobs WHERE status = 'completed'")
            proxy.drop()
            ids += await publish_many(services.amqp_url, prefix, key, PART, "silent")
            await wait_until(pool, f"SELECT count(*) >= {PART + 200} FROM jobs WHERE status = 'completed'")
            silenced = time.time()
            proxy.blackhole()
            detected = await wait_for_detection(tmp_path, silenced, processes)
            ids += await publish_many(services.amqp_url, prefix, key, PART, "after")

            books = await settle(pool, ids, timeout=120)
            print(books.line("proxy: latency, cut mid-frame, silent drop"))  # noqa: T201 - the test's report
            print(f"[proxy] silence noticed after {min(detected):.1f}-{max(detected):.1f} s")  # noqa: T201
            assert books.lost == 0
            assert books.duplicated == 0
            assert books.completed == books.accepted == 3 * PART
            assert max(detected) <= DETECTION_LIMIT + 3  # the rest: a busy 2-core host's slack
            # The broker drops the silent connections' consumers by heartbeat too.
            assert await wait_for_counts(services.amqp_url, queues, consumers) == consumers
    finally:
        await proxy.close()


async def wait_for_detection(log_dir: Path, since: float, processes: int) -> list[float]:
    """Seconds from `since` until each process logged losing its session."""
    deadline = time.monotonic() + DETECTION_LIMIT * 3
    while True:
        lost = await asyncio.to_thread(first_losses, log_dir, since)
        if len(lost) == processes:
            return list(lost.values())
        assert time.monotonic() < deadline, f"only {sorted(lost)} noticed the silence"
        await asyncio.sleep(0.5)


def first_losses(log_dir: Path, since: float) -> dict[str, float]:
    lost: dict[str, float] = {}
    for path in log_dir.glob("*.log"):
        for event in log_events(path.read_text(errors="replace"), "session_lost"):
            at = datetime.fromisoformat(event["timestamp"]).timestamp()
            if at > since:
                lost.setdefault(path.name, at - since)
    return lost


async def wait_for_counts(url: str, queues: list[str], expected: dict[str, int], timeout: float = 30) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while (counts := await consumer_counts(url, queues)) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    return counts
