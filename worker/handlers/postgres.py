"""Built-in `postgres` handler: runs the product's SQL statements with the chunk's identity
values as one array parameter ($1), in one transaction."""

from __future__ import annotations

import asyncpg

from schemas import ProductTask
from worker.errors import PermanentError, TransientError, describe, is_transient
from worker.handlers.base import SUCCESS, Handler, ItemResult


class PostgresHandler(Handler):
    def __init__(self, dsn: str, statements: list[str], namespaces: list[str] | None, max_connections: int) -> None:
        super().__init__(namespaces)
        self.dsn = dsn
        self.statements = statements
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=self.max_connections)
            assert pool is not None
            self._pool = pool
        return self._pool

    async def run(self, task: ProductTask) -> dict[int, ItemResult]:
        values = self.values(task.items)
        if values:
            try:
                pool = await self._get_pool()
                async with pool.acquire() as connection, connection.transaction():
                    for statement in self.statements:
                        await connection.execute(statement, values)
            except Exception as error:
                if is_transient(error):
                    raise TransientError(f"postgres: {describe(error)}") from error
                if isinstance(error, asyncpg.PostgresError):
                    raise PermanentError(f"postgres: {describe(error)}") from error
                raise
        return {item["jobId"]: SUCCESS for item in task.items}

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
