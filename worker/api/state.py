"""What the API's request handlers share: settings, products, the pool, small caches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from fastapi.responses import Response

from worker.api.limits import ByteBudget
from worker.products import ProductsFile
from worker.settings import Settings


@dataclass
class ApiState:
    settings: Settings
    products: ProductsFile
    pool: asyncpg.Pool
    # (projectKey, org) → project id; a project never changes organization or id.
    projects: dict[tuple[str, str], int] = field(default_factory=dict)
    body_budget: ByteBudget = field(default_factory=lambda: ByteBudget(16 * 1024 * 1024, 60.0))
    readiness: tuple[float, list[str]] = (-1e9, [])  # (when checked, problems found)

    def __post_init__(self) -> None:
        self.body_budget = ByteBudget(self.settings.api_max_parse_bytes, self.settings.api_parse_wait)


def json_response(body: Any, status: int = 200) -> Response:
    """JSON through orjson: the response shapes are built from rows directly, and the
    models in schemas/api.py document them in /openapi.json (tests check they agree)."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
