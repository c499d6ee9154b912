"""`deletion-worker up` as a user runs it: a real process, a real deletion, a clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import pytest

from tests.support import Services, wait_for_jobs
from worker.amqp import topology as topology_module
from worker.amqp.topology import Topology
from worker.ops.demo import DEMO_USERS
from worker.settings import DEFAULT_PRODUCTS_FILE

CLI = [sys.executable, "-c", "from worker.cli import main; main()"]


def cli_env(database_url: str, amqp_url: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "DELETION_DATABASE_URL": database_url,
        "DELETION_AMQP_URL": amqp_url,
        "DELETION_TOPOLOGY_PREFIX": prefix,
        "DELETION_PRODUCTS_FILE": str(DEFAULT_PRODUCTS_FILE),
        "DELETION_METRICS_PORT": "0",
        "DELETION_LOG_FORMAT": "json",
        "DELETION_API_PORT": str(free_port()),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.timeout(90)
async def test_up_deletes_demo_rows_and_stops_cleanly(services: Services, database_url: str, tmp_path: Path) -> None:
    prefix = f"tup{secrets.token_hex(4)}"
    env = cli_env(database_url, services.amqp_url, prefix)
    log_path = tmp_path / "up.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen([*CLI, "up"], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + 30
        while "session_started" not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "worker did not start"
            await asyncio.sleep(0.1)
        key = await connection.fetchval("SELECT key FROM projects WHERE org_id = 'demo' ORDER BY id LIMIT 1")
        user = DEMO_USERS[0]
        assert await connection.fetchval("SELECT count(*) FROM demo.sessions WHERE user_id = $1", user) > 0

        published = subprocess.run(
            [*CLI, "publish", "--project", key, "--identity", f"userId:{user}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        request_id = json.loads(published.stdout)["requestId"]
        for _ in range(200):
            job_id = await connection.fetchval("SELECT id FROM jobs WHERE request_id = $1", request_id)
            if job_id is not None:
                break
            await asyncio.sleep(0.05)
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        assert pool is not None
        try:
            assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
        finally:
            await pool.close()
        for table in ("sessions", "events", "profiles", "profile_attributes"):
            assert await connection.fetchval(f"SELECT count(*) FROM demo.{table} WHERE user_id = $1", user) == 0

        # The API runs in the same process: a user deleted over HTTP is deleted too.
        created = subprocess.run(
            [*CLI, "keys", "create", "--org", "demo"], env=env, capture_output=True, text=True, check=True
        )
        api_key = json.loads(created.stdout)["apiKey"]
        base = f"http://127.0.0.1:{env['DELETION_API_PORT']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            answer = await http.delete(
                f"/public/{key}/users/{DEMO_USERS[1]}", headers={"Authorization": f"Bearer {api_key}"}
            )
            assert answer.status_code == 200
            api_job = answer.json()["data"]["jobId"]
            for _ in range(300):
                job = (
                    await http.get(f"/public/{key}/jobs/{api_job}", headers={"Authorization": f"Bearer {api_key}"})
                ).json()
                if job["data"]["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
            assert job["data"]["status"] == "completed"
        assert await connection.fetchval("SELECT count(*) FROM demo.sessions WHERE user_id = $1", DEMO_USERS[1]) == 0

        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await connection.close()
        amqp = await aio_pika.connect(services.amqp_url)
        try:
            channel = await amqp.channel()
            await topology_module.delete(channel, Topology(prefix, ("sessions", "events", "profiles")))
        finally:
            await amqp.close()

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "demo_ready" in events
    assert "jobs_created" in events
    assert events[-1] == "worker_stopped"  # the one-line summary comes last
    assert lines[-1]["consumed"] >= 4
    assert user not in log_path.read_text()  # identity values never reach the logs
