"""One large work order through the HTTP API: time to accept, time to complete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson


@dataclass(frozen=True)
class WorkOrderResult:
    identities: int
    accept_seconds: float
    complete_seconds: float
    status: str
    products: dict[str, str]


async def run_workorder(
    base_url: str, api_key: str, project_key: str, first: int, identities: int, *, alive: Callable[[], None]
) -> WorkOrderResult:
    """POSTs identities u<first>.. as one work order, then polls GET /workorder/{id} every
    50 ms. Both times count from the start of the POST. `alive` raises when a bench
    process died (no point waiting then)."""
    body = orjson.dumps(
        {
            "action": "delete_identity",
            "datasetId": "ALL",
            "displayName": "bench",
            "description": "bench work order",
            "identities": [{"namespace": {"code": "userId"}, "id": f"u{first + i}"} for i in range(identities)],
        }
    )
    headers = {"Authorization": f"Bearer {api_key}", "x-sandbox-name": project_key, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        started = time.perf_counter()
        answer = await client.post("/workorder", content=body, headers=headers)
        accepted = time.perf_counter() - started
        answer.raise_for_status()
        workorder_id = answer.json()["workorderId"]
        view: dict[str, object] = {}
        while time.perf_counter() - started < 120:
            view = (await client.get(f"/workorder/{workorder_id}", headers=headers)).json()
            if view.get("status") in {"completed", "failed", "cancelled"}:
                break
            alive()
            await asyncio.sleep(0.05)
        completed = time.perf_counter() - started
    details = view.get("productStatusDetails") or []
    products = {d["productName"]: d["productStatus"] for d in details} if isinstance(details, list) else {}
    return WorkOrderResult(identities, round(accepted, 3), round(completed, 3), str(view.get("status")), products)
