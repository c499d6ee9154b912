"""Operators' pages: every queue's depth and consumers, dead letters (reason, origin,
age; never identity values), replay one or all, purge after typing the queue's name."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from worker.console import broker
from worker.console.web import Form, Operator, api_state, field_text, render
from worker.ops.dlq import UnknownQueueError

router = APIRouter(prefix="/console", include_in_schema=False)


async def _page(request: Request, user: Operator, notice: str | None, status: int = 200) -> Response:
    queues, dead = await broker.queues_and_dead_letters(api_state(request), dead_letters=True)
    context = {
        "queues": queues,
        "dead": dead,
        "notice": notice,
        "title": "Queues and dead letters",
    }
    return render(request, "queues.html", context, status=status, user=user)


@router.get("/queues")
async def queues_page(request: Request, user: Operator) -> Response:
    return await _page(request, user, None)


@router.post("/dead-letters/replay")
async def replay(request: Request, user: Operator, form: Form) -> Response:
    queue, message_id = field_text(form, "queue"), field_text(form, "message") or None
    try:
        count = await broker.replay(api_state(request), queue, message_id)
    except UnknownQueueError as error:
        return await _page(request, user, str(error), 400)
    return await _page(request, user, f"Replayed {count} message(s) of {queue}.")


@router.post("/dead-letters/purge")
async def purge(request: Request, user: Operator, form: Form) -> Response:
    queue = field_text(form, "queue")
    if field_text(form, "confirm") != queue:
        return await _page(request, user, f"Not purged: type the queue's name ({queue}) to confirm.", 400)
    try:
        count = await broker.purge(api_state(request), queue)
    except UnknownQueueError as error:
        return await _page(request, user, str(error), 400)
    return await _page(request, user, f"Purged {count} dead letter(s) of {queue}.")
