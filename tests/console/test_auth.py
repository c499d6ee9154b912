"""Signing in and out, cookies, CSRF, the CSP, and who sees what."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import httpx

from tests.console.conftest import Member, csrf_of, insert_job, sign_in
from worker.store.webhooks import create_subscription

MakeMember = Callable[..., Awaitable[Member]]
MakeClient = Callable[..., httpx.AsyncClient]


async def test_pages_need_a_session(make_client: MakeClient) -> None:
    async with make_client() as client:
        for path in (
            "/console",
            "/console/jobs",
            "/console/new",
            "/console/keys",
            "/console/webhooks",
            "/console/jobs/1",
        ):
            response = await client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == "/console/sign-in"


async def test_sign_in_sets_a_strict_http_only_cookie_and_secure_over_https(
    make_client: MakeClient, make_member: MakeMember
) -> None:
    member = await make_member("org-console-a")
    async with make_client() as client:
        response = await sign_in(client, member.key)
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Secure" not in cookie
        overview = await client.get("/console")
        assert overview.status_code == 200
        assert "org-console-a" in overview.text
    async with make_client("https://console.test") as client:
        response = await sign_in(client, member.key)
        assert "Secure" in response.headers["set-cookie"]


async def test_a_wrong_key_does_not_sign_in(make_client: MakeClient) -> None:
    async with make_client() as client:
        response = await sign_in(client, "dwk_AAAAAAAA_not-a-key")
        assert response.status_code == 401
        assert "dw_console_session" not in response.headers.get("set-cookie", "")


async def test_a_form_field_longer_than_any_real_one_is_refused_before_sign_in(make_client: MakeClient) -> None:
    """Text fields are held in memory while the form is read, before the key or the CSRF
    token is checked: anyone could post 16 MB fields (the body limit) to the sign-in
    form. A field is now at most FORM_FIELD_MAX_BYTES."""
    async with make_client() as client:
        response = await sign_in(client, "dwk_" + "A" * 100_000)
        assert response.status_code == 400
        assert (await sign_in(client, "dwk_AAAAAAAA_not-a-key")).status_code == 401  # a real length is read


async def test_forms_without_the_csrf_token_are_refused(
    make_client: MakeClient, make_member: MakeMember, pool: asyncpg.Pool
) -> None:
    member = await make_member("org-console-a")
    job_id = await insert_job(pool, member, [("userId", "u-1")])
    async with make_client() as client:
        refused = await client.post("/console/sign-in", data={"key": member.key})
        assert refused.status_code == 403
        await sign_in(client, member.key)
        forged = await client.post(f"/console/jobs/{job_id}/cancel", data={"csrf": "forged"})
        assert forged.status_code == 403
        assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "scheduled"
        page = await client.get(f"/console/jobs/{job_id}/cancel")
        done = await client.post(f"/console/jobs/{job_id}/cancel", data={"csrf": csrf_of(page.text)})
        assert done.status_code == 303
        assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "cancelled"


async def test_sign_out_ends_the_session(make_client: MakeClient, make_member: MakeMember) -> None:
    member = await make_member("org-console-a")
    async with make_client() as client:
        await sign_in(client, member.key)
        page = await client.get("/console")
        response = await client.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
        assert response.status_code == 303
        assert (await client.get("/console")).status_code == 303


async def test_revoking_the_key_ends_its_sessions(
    make_client: MakeClient, make_member: MakeMember, pool: asyncpg.Pool, console_app: object
) -> None:
    member = await make_member("org-console-a")
    async with make_client() as client:
        await sign_in(client, member.key)
        assert (await client.get("/console")).status_code == 200
        await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE prefix = $1", member.key.split("_")[1])
        console_app.state.console.users.clear()  # type: ignore[attr-defined]  # skip the few seconds' cache
        assert (await client.get("/console")).status_code == 303


async def test_every_page_has_a_csp_without_inline_script(make_client: MakeClient, make_member: MakeMember) -> None:
    member = await make_member("org-console-a")
    async with make_client() as client:
        await sign_in(client, member.key)
        for path in ("/console", "/console/jobs", "/console/new", "/console/keys", "/console/sign-in"):
            response = await client.get(path, follow_redirects=True)
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert "<script>" not in response.text  # only <script src=...>


async def test_an_organization_sees_only_its_own_jobs(
    make_client: MakeClient, make_member: MakeMember, pool: asyncpg.Pool
) -> None:
    owner = await make_member("org-console-a")
    stranger = await make_member("org-console-b")
    job_id = await insert_job(pool, owner, [("email", "ann@example.com")], display_name="Ann's erasure")
    async with make_client() as client:
        await sign_in(client, stranger.key)
        assert "Ann&#39;s erasure" not in (await client.get("/console/jobs")).text
        assert (await client.get(f"/console/jobs/{job_id}")).status_code == 404
        assert (await client.get(f"/console/jobs/{job_id}/cancel")).status_code == 404
        page = await client.get("/console/jobs")
        found = await client.post(
            "/console/find", data={"identity": "email:ann@example.com", "csrf": csrf_of(page.text)}
        )
        assert f"/console/jobs/{job_id}" not in found.text
        assert (await client.get("/console/queues")).status_code == 404  # not an operator key
    async with make_client() as client:
        await sign_in(client, owner.key)
        assert "Ann&#39;s erasure" in (await client.get("/console/jobs")).text
        assert (await client.get(f"/console/jobs/{job_id}")).status_code == 200


async def test_markup_in_a_name_and_description_is_shown_as_text(
    make_client: MakeClient, make_member: MakeMember, pool: asyncpg.Pool
) -> None:
    member = await make_member("org-console-a")
    job_id = await insert_job(
        pool,
        member,
        [("userId", "u-1")],
        display_name="<script>alert('name')</script>",
        description='<img src=x onerror="alert(1)">',
    )
    async with make_client() as client:
        await sign_in(client, member.key)
        for path in (f"/console/jobs/{job_id}", "/console/jobs"):
            text = (await client.get(path)).text
            assert "<script>alert" not in text
            assert "<img src=x" not in text
        detail = (await client.get(f"/console/jobs/{job_id}")).text
        assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in detail
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in detail


async def test_webhooks_of_the_organization_only_and_escaped(
    make_client: MakeClient, make_member: MakeMember, pool: asyncpg.Pool
) -> None:
    owner = await make_member("org-console-a")
    stranger = await make_member("org-console-b")
    async with pool.acquire() as connection:
        await create_subscription(
            connection, owner.project_id, "https://hooks.example.com/in", ["job.*"], b"sealed",
            description="<b>ops</b> pager",
        )  # fmt: skip
    async with make_client() as client:
        await sign_in(client, owner.key)
        page = (await client.get("/console/webhooks")).text
        assert "https://hooks.example.com/in" in page
        assert "&lt;b&gt;ops&lt;/b&gt; pager" in page
        assert "<b>ops</b>" not in page
    async with make_client() as client:
        await sign_in(client, stranger.key)
        page = (await client.get("/console/webhooks")).text
        assert "hooks.example.com" not in page
        assert "No webhook subscriptions." in page
