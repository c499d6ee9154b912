"""`jobs audit --verify` finds a changed or removed entry; `receipts keygen|show|verify`
issue a receipt and check it offline, an identity included."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.cli.conftest import Invoke
from tests.support import end_job
from worker.ops.exitcodes import ExitCode
from worker.settings import Settings
from worker.store.jobs import NewJob, cancel_job, create_jobs

MakeProject = Callable[..., Awaitable[tuple[int, str]]]


async def make_job(pool: asyncpg.Pool, project_id: int, tag: str) -> int:
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection, [NewJob(tag, project_id, [("email", "cli.person@example.com")])], ["crm"], None
        )
    return created[(project_id, tag)]


async def superuser_change(pool: asyncpg.Pool, sql: str, job_id: int) -> None:
    """Past the append-only trigger, as a superuser can."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL session_replication_role = replica")
        await connection.execute(sql, job_id)


async def test_audit_verify_exits_invalid_on_an_edited_or_removed_entry(
    invoke: Invoke, pool: asyncpg.Pool, make_settings: Callable[..., Settings], make_project: MakeProject
) -> None:
    settings = make_settings()
    project_id, _ = await make_project()
    edited, removed = [await make_job(pool, project_id, f"cli-audit-{project_id}-{i}") for i in range(2)]
    for job_id in (edited, removed):
        async with pool.acquire() as connection:
            await cancel_job(connection, job_id, actor="cli")

    shown = await invoke(settings, "jobs", "audit", str(edited), "--verify", "--json")
    assert shown.exit_code == 0, shown.output
    trail = json.loads(shown.output)
    assert [entry["kind"] for entry in trail["entries"]] == ["job.received", "products", "job.cancelled"]
    assert trail["intact"] is True

    await superuser_change(
        pool, 'UPDATE audit_entries SET detail = \'{"by":"someone else"}\' WHERE job_id = $1 AND seq = 3', edited
    )
    await superuser_change(pool, "DELETE FROM audit_entries WHERE job_id = $1 AND seq = 2", removed)
    changed = await invoke(settings, "jobs", "audit", str(edited), "--verify")
    assert changed.exit_code == ExitCode.INVALID
    assert "entry 3: its content does not match its hash" in changed.output
    gone = await invoke(settings, "jobs", "audit", str(removed), "--verify")
    assert gone.exit_code == ExitCode.INVALID
    assert "entry 3: expected entry 2 here" in gone.output
    assert (await invoke(settings, "jobs", "audit", "999999999")).exit_code == ExitCode.NOT_FOUND


async def test_receipts_keygen_show_and_verify_offline(
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: MakeProject,
) -> None:
    settings = make_settings(identity_hash_key="cli-test-identity-hash-key-32-bytes-long")
    keys = await invoke(settings, "receipts", "keygen")
    pair = json.loads(keys.output)
    monkeypatch.setenv("DELETION_RECEIPT_SIGNING_KEY", pair["privateKey"])
    project_id, _ = await make_project()
    job_id = await make_job(pool, project_id, f"cli-receipt-{project_id}")
    not_yet = await invoke(settings, "receipts", "show", str(job_id))
    assert not_yet.exit_code == ExitCode.REFUSED
    async with pool.acquire() as connection:
        await end_job(connection, job_id, "completed")

    shown = await invoke(settings, "receipts", "show", str(job_id))
    assert shown.exit_code == 0, shown.output
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_bytes(shown.stdout_bytes)
    hash_key = settings.identity_hash_key.get_secret_value()
    verify = ["receipts", "verify", str(receipt_file), "--public-key", pair["publicKey"], "--hash-key", hash_key]
    covered = await invoke(settings, *verify, "--identity", "email:cli.person@example.com")
    assert covered.exit_code == 0, covered.output
    assert json.loads(covered.output) | {"valid": True, "coversIdentity": True} == json.loads(covered.output)
    other = await invoke(settings, *verify, "--identity", "email:someone.else@example.com")
    assert other.exit_code == ExitCode.INVALID
    assert json.loads(other.output)["coversIdentity"] is False

    tampered = shown.stdout_bytes.replace(b'"status":"completed"', b'"status":"completes"', 1)
    assert tampered != shown.stdout_bytes
    receipt_file.write_bytes(tampered)
    refused = await invoke(settings, *verify)
    assert refused.exit_code == ExitCode.INVALID
    assert "NOT valid" in refused.output
