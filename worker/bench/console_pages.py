"""The web console's pages over the bench's large jobs table: each page's server-side
time (its `Server-Timing` header), signed in with the bench's key, one request at a time.
The first request of a page is cold (the overview is then kept for a few seconds)."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import aiohttp
import asyncpg

from worker.roles.maintenance import SETTLE_STEP
from worker.store.overview_summary import settle

CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')
ROUNDS = 10


def console_paths(job_id: int) -> dict[str, str]:
    return {
        "overview": "/console",
        "jobs": "/console/jobs",
        "jobs, completed, page 40": "/console/jobs?status=completed&page=40",
        "job": f"/console/jobs/{job_id}",
        "new work order": "/console/new",
        "keys": "/console/keys",
    }


async def catch_up_summary(connection: asyncpg.Connection) -> float:
    """The maintenance role's overview passes over the freshly filled table until none is
    left to settle, in seconds. Without the minute's margin: the bench's jobs were all
    committed before this (nothing else writes jobs in this step)."""
    started = time.perf_counter()
    while await settle(connection, SETTLE_STEP, margin=timedelta(0)):
        pass
    return round(time.perf_counter() - started, 1)


async def measure_console(base_url: str, api_key: str, job_id: int, jobs_in_table: int) -> dict[str, object]:
    """p50 and slowest of ROUNDS requests per page, in ms, from a local client."""
    # unsafe: the cookie jar keeps cookies of an IP address (the bench's API is 127.0.0.1).
    async with aiohttp.ClientSession(base_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get("/console/sign-in") as page:
            found = CSRF_INPUT.search(await page.text())
        if found is None:
            raise RuntimeError("the console's sign-in page has no CSRF token")
        async with session.post(
            "/console/sign-in", data={"key": api_key, "csrf": found.group(1)}, allow_redirects=False
        ) as signed:
            signed.raise_for_status()
        pages: dict[str, dict[str, float]] = {}
        for name, path in console_paths(job_id).items():
            times: list[float] = []
            for _ in range(ROUNDS):
                async with session.get(path, allow_redirects=False) as answer:
                    await answer.read()
                    if answer.status != 200:
                        raise RuntimeError(f"{path} answered {answer.status}")
                    times.append(float(answer.headers["server-timing"].partition("dur=")[2]))
            pages[name] = {"first_ms": times[0], "p50_ms": sorted(times)[len(times) // 2], "max_ms": max(times)}
    return {"jobs_in_table": jobs_in_table, "pages": pages}
