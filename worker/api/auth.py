"""Who is calling: the organization behind an API key.

`/public/...` and `/workorder` take `Authorization: Bearer {KEY}`; the older
`/api/v1/...` takes the bare key (`Authorization: {KEY}`), as its documentation shows.
A verified key is remembered for a few seconds so that reads do not pay a database
round trip each; revocation therefore takes effect within KEY_CACHE_SECONDS.
"""

from __future__ import annotations

import time

import asyncpg
from fastapi import Request

from worker.api.errors import ApiError
from worker.store.api_keys import ApiKeyOwner, verify_key

KEY_CACHE_SECONDS = 10.0
_KEY_CACHE_SIZE = 10_000


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ApiKeyOwner]] = {}

    def get(self, key: str) -> ApiKeyOwner | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, owner: ApiKeyOwner) -> None:
        if len(self._entries) >= _KEY_CACHE_SIZE:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + KEY_CACHE_SECONDS, owner)


def _presented_key(request: Request, bearer: bool) -> str:
    header = request.headers.get("authorization", "").strip()
    if bearer:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "send your organization API key as `Authorization: Bearer {KEY}`")
        return key.strip()
    key = header.removeprefix("Bearer ").strip()  # tolerate the newer form on the older routes
    if not key:
        raise ApiError(401, "send your organization API key as `Authorization: {KEY}`")
    return key


async def authenticate(request: Request, bearer: bool = True) -> ApiKeyOwner:
    key = _presented_key(request, bearer)
    cache: KeyCache = request.app.state.key_cache
    owner = cache.get(key)
    if owner is None:
        pool: asyncpg.Pool = request.app.state.pool
        async with pool.acquire() as connection:
            owner = await verify_key(connection, key)
        if owner is None:
            raise ApiError(401, "the API key is not valid (wrong, or revoked)")
        cache.put(key, owner)
    return owner


async def bearer_owner(request: Request) -> ApiKeyOwner:
    return await authenticate(request, bearer=True)


async def bare_key_owner(request: Request) -> ApiKeyOwner:
    return await authenticate(request, bearer=False)
