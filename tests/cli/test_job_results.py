"""What each product did, through the real broker: a built-in postgres product counting
rows, an external product (the SDK) failing one identity; `jobs identities`, `jobs retry`,
`jobs show`; retention leaves no identity value in any table; a dry run deletes nothing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg

from tests.cli.conftest import Invoke
from tests.sdk.helpers import crm_worker, eventually
from tests.support import WorkerHandle, end_job, job_ids_for, publish, request, wait_for_jobs
from worker.ops.demo import DEMO_USERS, seed_demo_rows
from worker.sdk import Item, Result
from worker.settings import Settings
from worker.store.retention import hash_expired_identities

PRODUCTS = (
    '[products.db]\nhandler = "postgres"\nnamespaces = ["email"]\n'
    'statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1)"]\n'
    'count_statements = ["SELECT count(*) FROM demo.sessions WHERE user_id = ANY($1)"]\n'
    '[products.crm]\nhandler = "external"\n'
)
LOCKED = "locked.person@example.com"


class Crm:
    """The external product: cannot delete LOCKED until healed; counts what it sees."""

    def __init__(self) -> None:
        self.healed = False
        self.seen: list[tuple[bool, list[str]]] = []

    async def handle(self, items: list[Item]) -> list[Result]:
        results = []
        for item in items:
            values = item.values("email")
            self.seen.append((item.dry_run, values))
            if LOCKED in values and not self.healed:
                failed = {
                    identity: f"record locked: {identity.id}" for identity in item.identities if identity.id == LOCKED
                }
                results.append(item.failed("1 record locked", identities=failed, deleted=len(values) - 1, not_found=0))
            else:
                results.append(item.succeeded(deleted=len(values), not_found=0))
        return results


async def test_failed_identity_listed_retried_and_hashed_by_retention(
    invoke: Invoke,
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    settings = make_settings(PRODUCTS)
    await run_worker(settings)
    _, key = await make_project()
    crm = Crm()
    async with crm_worker(settings, crm.handle) as product:
        await eventually(product.consuming.is_set)
        kept = request(key, "fine@example.com", LOCKED, namespace="email")  # fails, then is retried
        hashed = request(key, "other@example.com", LOCKED, namespace="email")  # fails, then retention
        await publish(settings, [kept, hashed])
        kept_id, hashed_id = await job_ids_for(pool, [kept.request_id, hashed.request_id])
        assert await wait_for_jobs(pool, [kept_id, hashed_id]) == {kept_id: "failed", hashed_id: "failed"}

        listed = await invoke(settings, "jobs", "identities", str(kept_id), "--json")
        *entries, following = [json.loads(line) for line in listed.output.splitlines()]
        assert entries == [
            {"product": "crm", "namespace": "email", "id": LOCKED, "idHash": None, "status": "failed",
             "error": f"record locked: {LOCKED}", "retrying": False},
        ]  # fmt: skip
        assert following == {"next": None}
        shown = {
            p["product"]: p
            for p in json.loads((await invoke(settings, "jobs", "show", str(kept_id), "--json")).output)["products"]
        }
        assert (shown["crm"]["status"], shown["crm"]["deleted"], shown["crm"]["identitiesFailed"]) == ("failed", 1, 1)
        assert (shown["db"]["status"], shown["db"]["identitiesFailed"]) == ("success", 0)
        # Nothing of theirs in demo.sessions; no count at all when both jobs shared a task.
        assert shown["db"]["deleted"] in (0, None)
        assert shown["crm"]["startedAt"] is not None
        assert shown["crm"]["finishedAt"] is not None

        crm.healed = True
        crm.seen.clear()
        refused = await invoke(settings, "jobs", "retry", str(kept_id), "--product", "db")
        assert refused.exit_code == 4  # nothing of db failed
        retried = await invoke(settings, "jobs", "retry", str(kept_id), "--product", "crm")
        assert json.loads(retried.output)["products"] == [{"product": "crm", "chunks": 1, "identities": 1}]
        assert await wait_for_jobs(pool, [kept_id]) == {kept_id: "completed"}
        assert crm.seen == [(False, [LOCKED])]  # only what failed went out again
    shown = {
        p["product"]: p
        for p in json.loads((await invoke(settings, "jobs", "show", str(kept_id), "--json")).output)["products"]
    }
    assert (shown["crm"]["deleted"], shown["crm"]["identitiesFailed"], shown["crm"]["retries"]) == (2, 0, 1)

    # Retention: the failure row keeps its place, but no table holds the value any more.
    async with pool.acquire() as connection:
        await end_job(connection, hashed_id, "failed", timedelta(days=1))
        key_bytes = settings.identity_hash_key.get_secret_value().encode()
        while (await hash_expired_identities(connection, key_bytes, timedelta(0)))[1]:
            pass
    after = [
        json.loads(line)
        for line in (await invoke(settings, "jobs", "identities", str(hashed_id), "--json")).output.splitlines()
    ]
    assert after[0]["id"] is None
    assert after[0]["idHash"].startswith("hmac:")
    assert after[0]["error"] == f"record locked: {after[0]['idHash']}"
    tables = await pool.fetch(
        "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    holding = [
        table["t"]
        for table in tables
        if await pool.fetchval(f"SELECT count(*) FROM {table['t']} x WHERE x::text LIKE '%other@example.com%'")
    ]
    assert holding == []
    assert await pool.fetchval("SELECT count(*) FROM identity_failures WHERE job_id = $1", hashed_id) == 1
    refused = await invoke(settings, "jobs", "retry", str(hashed_id))
    assert refused.exit_code == 4
    assert "keyed hashes" in refused.output


async def test_a_dry_run_counts_and_deletes_nothing(
    invoke: Invoke,
    pool: asyncpg.Pool,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    settings = make_settings(PRODUCTS)
    await run_worker(settings)
    _, key = await make_project()
    async with pool.acquire() as connection:
        await seed_demo_rows(connection)
    before = await pool.fetchval("SELECT count(*) FROM demo.sessions WHERE user_id = ANY($1)", list(DEMO_USERS))
    assert before > 0
    crm = Crm()
    async with crm_worker(settings, crm.handle) as product:
        await eventually(product.consuming.is_set)
        identities = [arg for user in DEMO_USERS for arg in ("--identity", f"email:{user}")]
        published = await invoke(settings, "publish", "--project", key, "--dry-run", *identities)
        assert published.exit_code == 0, published.output
        [job_id] = await job_ids_for(pool, [json.loads(published.output)["requestId"]])
        assert await wait_for_jobs(pool, [job_id]) == {job_id: "completed"}
    assert await pool.fetchval("SELECT count(*) FROM demo.sessions WHERE user_id = ANY($1)", list(DEMO_USERS)) == before
    assert crm.seen == [(True, list(DEMO_USERS))]
    view = json.loads((await invoke(settings, "jobs", "show", str(job_id), "--json")).output)
    assert view["dryRun"] is True
    assert {p["product"]: p["deleted"] for p in view["products"]} == {"crm": 3, "db": before}
