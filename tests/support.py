"""Helpers shared by the tests: running workers in-process, waiting for jobs, queue state."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from schemas import DeletionRequest
from schemas.status import TERMINAL_JOB_STATUSES
from worker.amqp import Outgoing, Publisher, Topology, topology
from worker.producer import build_request, publish_requests
from worker.products import load_products
from worker.roles.consuming import QueueRole
from worker.roles.spec import RoleSpec, all_roles
from worker.runner import WorkerProcess
from worker.settings import Settings

WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Services:
    amqp_url: str
    admin_database_url: str

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.admin_database_url)
        return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class WorkerHandle:
    worker: WorkerProcess
    task: asyncio.Task[None]
    settings: Settings

    @property
    def topology(self) -> Topology:
        return self.worker.topology


def consumers_of(worker: WorkerProcess) -> list[QueueRole]:
    return [role for role in worker.roles if isinstance(role, QueueRole)]


async def wait_until_consuming(worker: WorkerProcess, timeout: float = WAIT_SECONDS) -> None:
    expected = sum(1 for spec in worker.specs if spec.kind in ("intake", "acks", "product", "notify"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.session is not None and sum(role.consuming for role in consumers_of(worker)) == expected:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("worker did not start consuming")


async def start_worker(settings: Settings, roles: list[RoleSpec] | None = None) -> WorkerHandle:
    products = load_products(settings.products_file)
    worker = WorkerProcess(settings, products, roles if roles is not None else all_roles(products.built_in()))
    task = asyncio.create_task(worker.run())
    handle = WorkerHandle(worker, task, settings)
    try:
        await wait_until_consuming(worker)
    except BaseException:
        await stop_worker(handle)
        raise
    return handle


async def stop_worker(handle: WorkerHandle, delete_topology: bool = True) -> None:
    handle.worker.request_stop("test teardown")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(handle.task, handle.settings.shutdown_timeout + 10)
    if delete_topology:
        connection = await aio_pika.connect(handle.settings.amqp_url)
        try:
            channel = await connection.channel()
            await topology.delete(channel, handle.topology)
        finally:
            await connection.close()


async def declare_topology(settings: Settings) -> None:
    """Declare a settings' topology ahead of its worker (to publish a backlog first)."""
    products = load_products(settings.products_file)
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        await topology.declare(connection, Topology.for_settings(settings, products.names), settings.delivery_limit)
    finally:
        await connection.close()


async def publish(settings: Settings, requests: Sequence[DeletionRequest]) -> None:
    await publish_requests(settings.amqp_url, requests, prefix=settings.topology_prefix)


def request(project_key: str, *values: str, namespace: str = "userId", **fields: Any) -> DeletionRequest:
    return build_request(project_key, [(namespace, value) for value in values], **fields)


async def publish_raw(settings: Settings, queue: str, bodies: Sequence[bytes], **headers: Any) -> None:
    """Publish arbitrary bytes (bad input) to a queue of this settings' topology."""
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        publisher = await Publisher.open(connection)
        await publisher.publish([Outgoing(routing_key=queue, body=body, headers=headers) for body in bodies])
    finally:
        await connection.close()


async def job_ids_for(pool: asyncpg.Pool, request_ids: Sequence[str], timeout: float = WAIT_SECONDS) -> list[int]:
    """Wait until every request is a job; returns job ids in request order."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await pool.fetch(
            "SELECT request_id, id FROM jobs JOIN unnest($1::text[]) AS r(request) ON r.request = request_id",
            list(request_ids),
        )
        found = {row["request_id"]: row["id"] for row in rows}
        if len(found) == len(set(request_ids)):
            return [found[r] for r in request_ids]
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(set(request_ids)) - len(found)} of {len(set(request_ids))} requests never became jobs"
            )
        await asyncio.sleep(0.05)


async def wait_for_jobs(
    pool: asyncpg.Pool,
    job_ids: Sequence[int],
    statuses: Sequence[str] = TERMINAL_JOB_STATUSES,
    timeout: float = WAIT_SECONDS,
) -> dict[int, str]:
    """Wait until every job is in one of `statuses`; returns {job_id: status}."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await pool.fetch("SELECT id, status FROM jobs WHERE id = ANY($1::bigint[])", list(job_ids))
        found = {row["id"]: row["status"] for row in rows}
        if len(found) == len(set(job_ids)) and all(status in statuses for status in found.values()):
            return found
        if time.monotonic() > deadline:
            waiting = {job: status for job, status in found.items() if status not in statuses}
            raise TimeoutError(f"jobs not in {list(statuses)} after {timeout}s: {dict(list(waiting.items())[:10])}")
        await asyncio.sleep(0.05)


async def queue_depth(settings: Settings, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, from a passive declare."""
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return result.message_count or 0, result.consumer_count or 0
    finally:
        await connection.close()


async def get_dead_letters(
    settings: Settings, queue: str, expected: int, timeout: float = WAIT_SECONDS
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take `expected` messages from a dead-letter queue (acking them), waiting for them to arrive."""
    connection = await aio_pika.connect(settings.amqp_url)
    messages: list[aio_pika.abc.AbstractIncomingMessage] = []
    try:
        channel = await connection.channel()
        declared = await channel.get_queue(queue, ensure=False)
        deadline = time.monotonic() + timeout
        while len(messages) < expected:
            message = await declared.get(fail=False, no_ack=True)
            if message is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(messages)} of {expected} dead letters arrived in {queue}")
                await asyncio.sleep(0.05)
                continue
            messages.append(message)
        return messages
    finally:
        await connection.close()


async def end_job(connection: asyncpg.Connection, job_id: int, status: str, ago: timedelta = timedelta(0)) -> None:
    """Make a job look as if it had ended `ago` with `status`: in the job row and in the
    retention queue, as the worker records an ending (whatever the job's state before)."""
    async with connection.transaction():
        finished_at = await connection.fetchval(
            "UPDATE jobs SET status = $2, finished_at = now() - $3::interval WHERE id = $1 RETURNING finished_at",
            job_id,
            status,
            ago,
        )
        await connection.execute("DELETE FROM retention_queue WHERE job_id = $1", job_id)
        await connection.execute(
            "INSERT INTO retention_queue (finished_at, job_id) VALUES ($1, $2)", finished_at, job_id
        )


async def get_all(settings: Settings, queue: str) -> list[str]:
    """Every message of a queue as text (body and headers), given back afterwards."""
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return []
        texts = []
        while (message := await declared.get(fail=False, no_ack=False)) is not None:
            texts.append(message.body.decode(errors="replace") + repr(message.headers))
        return texts
    finally:
        await connection.close()


class TcpProxy:
    """Forwards connections to the broker, and breaks them as a network would: `latency`
    seconds added to every chunk each way; `drop()` cuts every connection at once (RST, in
    the middle of whatever frame was on its way); `blackhole()` stops forwarding on the
    connections open now without closing them (no FIN: only a heartbeat notices), while
    new connections pass."""

    def __init__(self, target_host: str, target_port: int, latency: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.latency = latency
        self.writers: set[asyncio.StreamWriter] = set()
        self.frozen: set[asyncio.StreamWriter] = set()
        self.closing = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.latency:
                    await asyncio.sleep(self.latency)
                if writer in self.frozen:
                    break
                writer.write(data)
                await writer.drain()
            if writer in self.frozen:
                # Silent, even when the far side closes: no data and no FIN, until the end.
                await self.closing.wait()
        finally:
            writer.close()
            self.writers.discard(writer)

    def drop(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()

    def blackhole(self) -> None:
        self.frozen.update(self.writers)

    async def close(self) -> None:
        self.closing.set()
        self.drop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
