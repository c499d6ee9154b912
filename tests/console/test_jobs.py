"""The jobs pages: filters and pages, finding by identity (also after retention), and
new work orders from a CSV."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.console.conftest import Member, csrf_of, insert_job, sign_in
from worker.console.routes_new import CsvError, parse_identities
from worker.settings import Settings
from worker.store.retention import identity_hash

MakeMember = Callable[..., Awaitable[Member]]
MakeClient = Callable[..., httpx.AsyncClient]


async def test_the_list_filters_by_status_and_id_and_pages(
    make_client: MakeClient, make_member: MakeMember, pool: asyncpg.Pool
) -> None:
    member = await make_member("org-console-a")
    ids = [await insert_job(pool, member, [("userId", f"u-{n}")] * 1, display_name=f"order {n}") for n in range(27)]
    await pool.execute("UPDATE jobs SET status = 'failed' WHERE id = $1", ids[0])
    workorder = await pool.fetchval("SELECT workorder_id FROM jobs WHERE id = $1", ids[3])
    async with make_client() as client:
        await sign_in(client, member.key)
        first = (await client.get("/console/jobs")).text
        assert "order 26" in first
        assert "order 1<" not in first  # 25 a page, newest first
        second = (await client.get("/console/jobs", params={"page": 2})).text
        assert "order 1<" in second
        assert "order 0<" in second
        failed = (await client.get("/console/jobs", params={"status": "failed"})).text
        assert "order 0<" in failed
        assert "order 5<" not in failed
        by_id = (await client.get("/console/jobs", params={"q": workorder})).text
        assert "order 3<" in by_id
        assert "order 4<" not in by_id


async def test_find_by_identity_after_retention_through_the_keyed_hash(
    make_client: MakeClient, make_member: MakeMember, pool: asyncpg.Pool, console_settings: Settings
) -> None:
    member = await make_member("org-console-a")
    job_id = await insert_job(pool, member, [("email", "bob@example.com")])
    other = await insert_job(pool, member, [("email", "carol@example.com")])
    key = console_settings.identity_hash_key.get_secret_value().encode()
    await pool.execute(
        "UPDATE job_identities SET value = NULL, value_hash = $2 WHERE job_id = $1",
        job_id,
        identity_hash(key, "email", "bob@example.com"),
    )
    async with make_client() as client:
        await sign_in(client, member.key)
        page = await client.get("/console/jobs")
        found = await client.post(
            "/console/find", data={"identity": "email:bob@example.com", "csrf": csrf_of(page.text)}
        )
        assert found.status_code == 200
        assert f'href="/console/jobs/{job_id}"' in found.text
        assert f'href="/console/jobs/{other}"' not in found.text
        assert "bob@example.com" not in found.text  # the value is not echoed back
        assert "bob" not in str(found.url)  # posted, never in a URL
        bad = await client.post("/console/find", data={"identity": "no-namespace", "csrf": csrf_of(page.text)})
        assert bad.status_code == 400


async def test_a_csv_becomes_a_work_order(make_client: MakeClient, make_member: MakeMember, pool: asyncpg.Pool) -> None:
    member = await make_member("org-console-a")
    csv = b"namespace,id\nuserId,u-1\n\nemail,ann@example.com\n"
    async with make_client() as client:
        await sign_in(client, member.key)
        page = await client.get("/console/new")
        response = await client.post(
            "/console/new",
            data={"csrf": csrf_of(page.text), "project": member.project_key, "displayName": "From a file"},
            files={"file": ("ids.csv", csv, "text/csv")},
        )
        assert response.status_code == 303
        job_id = int(response.headers["location"].rsplit("/", 1)[1])
        row = await pool.fetchrow("SELECT identity_count, display_name, project_id FROM jobs WHERE id = $1", job_id)
        assert (row["identity_count"], row["display_name"], row["project_id"]) == (2, "From a file", member.project_id)
        refused = await client.post(
            "/console/new",
            data={"csrf": csrf_of(page.text), "project": member.project_key},
            files={"file": ("ids.csv", b"userId\n", "text/csv")},
        )
        assert refused.status_code == 400
        assert "line 1" in refused.text


async def test_a_csv_waits_for_the_api_s_parse_budget(
    make_client: MakeClient, make_member: MakeMember, console_app: FastAPI, pool: asyncpg.Pool
) -> None:
    """The console's CSV is parsed into as many objects as a work order posted to the API:
    it waits for the same budget instead of adding to it."""
    member = await make_member("org-console-a")
    budget = console_app.state.api.body_budget
    async with make_client() as client:
        await sign_in(client, member.key)
        page = await client.get("/console/new")
        async with budget.reserve(budget.total):  # a large work order being parsed
            posted = asyncio.create_task(
                client.post(
                    "/console/new",
                    data={"csrf": csrf_of(page.text), "project": member.project_key},
                    files={"file": ("ids.csv", b"userId,u-1\nuserId,u-2\n", "text/csv")},
                )
            )
            await asyncio.sleep(0.3)
            assert not posted.done()
            assert await pool.fetchval("SELECT count(*) FROM jobs WHERE project_id = $1", member.project_id) == 0
        response = await posted
    assert response.status_code == 303
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE project_id = $1", member.project_id) == 1


def test_csv_parsing() -> None:
    assert parse_identities(b"\xef\xbb\xbfnamespace,id\r\nuserId, u-1 \r\n\r\n") == [("userId", "u-1")]
    assert parse_identities(b"email,a@b.c\n") == [("email", "a@b.c")]
    with pytest.raises(CsvError, match="line 2"):
        parse_identities(b"userId,u-1\nuserId,u-2,extra\n")
    with pytest.raises(CsvError, match="no identities"):
        parse_identities(b"namespace,id\n")
    with pytest.raises(CsvError, match="more than"):
        parse_identities(b"userId,u\n" * 100_001)


async def test_queues_are_for_operator_keys(make_client: MakeClient, make_member: MakeMember) -> None:
    operator = await make_member("org-console-ops", operator=True)
    async with make_client() as client:
        await sign_in(client, operator.key)
        page = await client.get("/console/queues")
        assert page.status_code == 200
        assert "requests" in page.text
        assert "No dead letters." in page.text
        overview = await client.get("/console")
        assert "missing: no worker has declared it yet" in overview.text  # no worker runs in this test
