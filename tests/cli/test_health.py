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


ROLES = """
deletion_role_pending_since_timestamp_seconds{{role="acks"}} {acks_pending}
deletion_role_last_progress_timestamp_seconds{{role="acks"}} {acks_progress}
deletion_role_pending_since_timestamp_seconds{{role="intake"}} {intake_pending}
deletion_role_last_progress_timestamp_seconds{{role="intake"}} {intake_progress}
deletion_role_waiting{{role="intake",dependency="database"}} {intake_waiting}
"""


def test_a_role_holding_work_without_progress_is_stalled_unless_it_waits_for_a_dependency() -> None:
    now = time.time()
    text = HEALTHY.format(now=now) + ROLES.format(
        acks_pending=now - 500, acks_progress=now - 400, intake_pending=now - 500, intake_progress=now - 500,
        intake_waiting=1,
    )  # fmt: skip
    assert problems_in(text, 30, now, max_stall=120) == ["role acks holds work and has settled none for 400 s"]
    # Liveness: the stall counts, an outage does not.
    outage = text.replace("deletion_database_connected 1.0", "deletion_database_connected 0.0")
    assert problems_in(outage, 30, now, max_stall=120, probe="liveness") == [
        "role acks holds work and has settled none for 400 s"
    ]
    moving = HEALTHY.format(now=now) + ROLES.format(
        acks_pending=now - 500, acks_progress=now - 5, intake_pending=0, intake_progress=now - 900, intake_waiting=0
    )
    assert problems_in(moving, 30, now, max_stall=120) == []


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
