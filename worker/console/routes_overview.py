"""The overview: jobs by status, overdue and at-risk counts, requests received and
completed per day, per-product failure rates, and (for operators) queue depths."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from worker.console import broker
from worker.console.chart import day_chart
from worker.console.web import User, api_state, console_state, pool_of, render
from worker.ops.queues import QueueState
from worker.store.console import org_projects
from worker.store.overview import overview

router = APIRouter(prefix="/console", include_in_schema=False)
# The overview reads the summary of settled jobs plus the few live ones (worker.store.overview);
# it is still computed at most this often per organization, and the page says when it was.
OVERVIEW_SECONDS = 10.0


@router.get("")
async def overview_page(request: Request, user: User) -> Response:
    state = console_state(request)
    cached = state.overviews.get(user.org_id)
    if cached is not None and cached[0] > time.monotonic():
        _, computed_at, summary = cached
    else:
        async with pool_of(request).acquire() as connection:
            project_ids = [project["id"] for project in await org_projects(connection, user.org_id)]
            summary = await overview(connection, project_ids)
        computed_at = datetime.now(UTC)
        if len(state.overviews) > 1000:
            state.overviews.clear()
        state.overviews[user.org_id] = (time.monotonic() + OVERVIEW_SECONDS, computed_at, summary)
    names = api_state(request).products.display_names()
    rates = [
        (names.get(product, product), failed, finished, 100.0 * failed / finished if finished else 0.0)
        for product, failed, finished in summary.products
    ]
    queues: list[QueueState] = []
    if user.operator:
        queues, _ = await broker.queues_and_dead_letters(api_state(request), dead_letters=False)
    context = {
        "summary": summary,
        "computed_at": computed_at,
        "chart": day_chart(summary.per_day),
        "rates": rates,
        "queues": queues,
        "title": "Overview",
    }
    return render(request, "overview.html", context, user=user)
