"""`deletion-worker health`: healthy only when connected, consuming and alive."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable

from prometheus_client import start_http_server

from tests.cli.conftest import Invoke
from tests.support import WorkerHandle
from worker.cli.health import problems_in
from worker.settings import Settings

HEALTHY = """
deletion_broker_connected 1.0
deletion_database_connected 1.0
deletion_worker_heartbeat_timestamp_seconds {now}
deletion_consumers_expected 3.0
deletion_consumers_active{{queue="a"}} 1.0
deletion_consumers_active{{queue="b"}} 1.0
deletion_consumers_active{{queue="c"}} 1.0
"""


def test_problems_of_metrics_texts() -> None:
    now = time.time()
    assert problems_in(HEALTHY.format(now=now), 30, now) == []
    broken = HEALTHY.format(now=now - 100).replace("deletion_broker_connected 1.0", "deletion_broker_connected 0.0")
    broken = broken.replace('deletion_consumers_active{queue="c"} 1.0', 'deletion_consumers_active{queue="c"} 0.0')
    assert problems_in(broken, 30, now) == [
        "not connected to RabbitMQ",
        "no heartbeat for 100 s",
        "2 of 3 consumers active",
    ]
    assert "not connected to Postgres" in problems_in("", 30, now)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_health_against_a_running_worker(
    invoke: Invoke, make_settings: Callable[..., Settings], run_worker: Callable[..., Awaitable[WorkerHandle]]
) -> None:
    settings = make_settings('[products.crm]\nhandler = "external"\n')
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1")  # the worker's metrics, as `run` serves them
    try:
        unreachable = await invoke(settings, "health", "--port", str(free_port()))
        assert unreachable.exit_code == 5
        handle = await run_worker(settings)
        healthy = await invoke(settings, "health", "--port", str(port))
        assert (healthy.exit_code, healthy.output.strip()) == (0, "healthy")
        handle.worker.request_stop("test")
        await handle.task
        stopped = await invoke(settings, "health", "--port", str(port))
        assert stopped.exit_code == 5
        assert "not connected to RabbitMQ" in stopped.output
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
