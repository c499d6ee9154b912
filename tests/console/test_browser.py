"""The console in a real browser (Debian's Chromium through Playwright), over a served
API and an in-process worker: sign in, a work order from a CSV watched to completion,
find by identity, cancel, replay a dead letter, sign out, and another organization that
sees none of it. Every page is screenshotted, checked with axe-core (no serious or
critical violations) at a laptop and a phone width, and no page may log a console error."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from axe_playwright_python.async_playwright import Axe
from fastapi import FastAPI
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

from tests.console.conftest import Member, insert_job
from tests.support import WorkerHandle, request
from worker.amqp import Outgoing, Publisher, Topology, connect
from worker.amqp.topology import ERROR_HEADER, ORIGIN_HEADER
from worker.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
LAPTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)
WAIT_MS = 30_000

# Skipped only outside CI: there deploy/dev.sh installs Chromium, and a missing one fails.
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"), reason="no /usr/bin/chromium (deploy/dev.sh test installs it)"
)


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app on a free local port, as a base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


class Checker:
    """Screenshots, axe-core and console errors for every page visited."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.errors: list[str] = []
        self.axe = Axe()
        self.shots = 0

    def watch(self, page: Page) -> None:
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    async def check(self, page: Page, name: str) -> None:
        await page.wait_for_load_state("networkidle")
        width = page.viewport_size["width"] if page.viewport_size else 0
        self.shots += 1
        await page.screenshot(path=self.directory / f"{self.shots:02d}-{name}-{width}.png", full_page=True)
        results = await self.axe.run(page)
        serious = [
            f"{violation['id']}: {violation['help']}"
            for violation in results.response["violations"]
            if violation["impact"] in ("serious", "critical")
        ]
        assert serious == [], f"{name} at {width}px"
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} scrolls sideways at {width}px"
        assert self.errors == [], f"{name}: console errors"


async def dead_letter(settings: Settings, project_key: str) -> str:
    """A deletion request on the requests' dead-letter queue, as if intake had given up on it."""
    topology = Topology.for_settings(settings, ["sessions", "profiles"])
    body = request(project_key, "replayed-user").model_dump_json().encode()
    connection = await connect(settings.amqp_url, name="console test")
    try:
        publisher = await Publisher.open(connection)
        headers = {ORIGIN_HEADER: topology.requests.main, ERROR_HEADER: "database unavailable (test)"}
        await publisher.publish(
            [Outgoing(routing_key=topology.requests.dead, body=body, message_id="dead-one", headers=headers)]
        )
    finally:
        await connection.close()
    return topology.requests.dead


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/console")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()


async def test_the_console_in_a_browser(
    console_app: FastAPI,
    console_settings: Settings,
    make_member: Callable[..., Awaitable[Member]],
    run_worker: Callable[..., Awaitable[WorkerHandle]],
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    member = await make_member("org-e2e-a", operator=True)
    stranger = await make_member("org-e2e-b", project_name="other shop")
    scheduled = await insert_job(
        pool, member, [("userId", "later-1")], display_name="Next week", start_at=datetime.now(UTC) + timedelta(days=7)
    )
    await run_worker(console_settings)
    dead_queue = await dead_letter(console_settings, member.project_key)
    csv_file = tmp_path / "identities.csv"
    csv_file.write_text("namespace,id\nuserId,e2e-1\nuserId,e2e-2\nemail,e2e@example.com\n", encoding="utf-8")
    checker = Checker(tmp_path)

    async with served(console_app) as base, async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = await browser.new_page(viewport=LAPTOP)
            checker.watch(page)
            await page.goto(f"{base}/console")
            await checker.check(page, "sign-in")
            await sign_in(page, base, member.key)
            await checker.check(page, "overview")

            # A work order from a CSV, watched until every product is done.
            await page.get_by_role("link", name="New work order").click()
            await page.get_by_label("Name", exact=True).fill("Erasure from the browser")
            await page.get_by_label("CSV file").set_input_files(csv_file)
            await expect(page.locator("#count")).to_have_text("3 identities in identities.csv")
            await checker.check(page, "new")
            await page.get_by_role("button", name="Create the work order").click()
            await expect(page.locator("#live p .status")).to_have_text("completed", timeout=WAIT_MS)
            await expect(page.locator("#live .status-row .status")).to_have_text(["success", "success"])
            await checker.check(page, "job")
            created = int(page.url.rsplit("/", 1)[1])

            # Found by identity; the value never appears in a URL.
            await page.get_by_role("link", name="Jobs", exact=True).click()
            await checker.check(page, "jobs")
            await page.get_by_label("Find a person's jobs by identity").fill("email:e2e@example.com")
            await page.get_by_role("button", name="Find").click()
            await expect(page.get_by_role("link", name=str(created), exact=True)).to_be_visible()
            assert "e2e" not in page.url
            await checker.check(page, "find")

            # Cancel a scheduled job, after confirming.
            await page.goto(f"{base}/console/jobs/{scheduled}")
            await page.get_by_role("link", name="Cancel this job").click()
            await checker.check(page, "cancel")
            await page.get_by_role("button", name=f"Yes, cancel job {scheduled}").click()
            await expect(page.locator("#live p .status")).to_have_text("cancelled")
            assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", scheduled) == "cancelled"

            # Replay the dead letter: intake makes a job of it this time.
            await page.get_by_role("link", name="Queues").click()
            await expect(page.get_by_text("database unavailable (test)")).to_be_visible()
            await checker.check(page, "queues")
            await page.get_by_role("button", name="Replay message dead-one").click()
            await expect(page.get_by_text(f"Replayed 1 message(s) of {dead_queue}.")).to_be_visible()
            await expect(page.get_by_text("No dead letters.")).to_be_visible()
            for _ in range(100):  # the replayed request becomes a job once intake has it
                if await pool.fetchval("SELECT count(*) FROM jobs WHERE project_id = $1", member.project_id) == 3:
                    break
                await asyncio.sleep(0.1)
            assert await pool.fetchval("SELECT count(*) FROM jobs WHERE project_id = $1", member.project_id) == 3

            await page.get_by_role("link", name="Keys").click()
            await checker.check(page, "keys")
            await page.get_by_role("link", name="Webhooks").click()
            await checker.check(page, "webhooks")
            await page.get_by_role("link", name="Overview").click()
            await checker.check(page, "overview-after")  # with the jobs above (deploy/console.png)

            # Every page again at a phone's width.
            await page.set_viewport_size(PHONE)
            for path, name in (("", "overview"), ("/jobs", "jobs"), (f"/jobs/{created}", "job"), ("/new", "new"),
                               ("/queues", "queues"), ("/keys", "keys"), ("/webhooks", "webhooks")):  # fmt: skip
                await page.goto(f"{base}/console{path}")
                await checker.check(page, name)
            await page.set_viewport_size(LAPTOP)

            await page.get_by_role("button", name="Sign out").click()
            await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            await page.goto(f"{base}/console/jobs/{created}")
            await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

            # Another organization sees none of it.
            await sign_in(page, base, stranger.key)
            await expect(page.get_by_role("link", name="Queues")).to_have_count(0)
            await page.goto(f"{base}/console/jobs")
            await expect(page.get_by_text("No jobs.")).to_be_visible()
            await checker.check(page, "jobs-other-org")
            assert (await page.request.get(f"{base}/console/jobs/{created}")).status == 404
            assert (await page.request.get(f"{base}/console/queues")).status == 404
        finally:
            await browser.close()
