"""Built-in `postgres` handler: runs the product's SQL statements in one transaction,
once per namespace of the chunk's identities: `$1` is that namespace's values
(de-duplicated) and `$2`, for a statement that uses it, the namespace code. Values of
two namespaces never share a statement (see worker.products.PostgresProduct)."""

from __future__ import annotations

import asyncpg

from schemas import ProductTask
from worker.errors import PermanentError, TransientError, describe, is_transient
from worker.handlers.base import SUCCESS, Handler, ItemResult
from worker.products import uses_namespace


class PostgresHandler(Handler):
    def __init__(
        self,
        dsn: str,
        statements: list[str],
        statements_by_namespace: dict[str, list[str]],
        namespaces: list[str] | None,
        max_connections: int,
    ) -> None:
        super().__init__(namespaces)
        self.dsn = dsn
        self.statements = statements
        self.statements_by_namespace = statements_by_namespace
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=self.max_connections)
            assert pool is not None
            self._pool = pool
        return self._pool

    def plan(self, task: ProductTask) -> list[tuple[str, list[object]]]:
        """(statement, arguments) to run for this task, namespace by namespace."""
        calls: list[tuple[str, list[object]]] = []
        for namespace, values in self.values_by_namespace(task.items).items():
            if self.namespaces is None or namespace in self.namespaces:
                calls += [
                    (statement, [values, namespace] if uses_namespace(statement) else [values])
                    for statement in self.statements
                ]
            calls += [(statement, [values]) for statement in self.statements_by_namespace.get(namespace, [])]
        return calls

    async def run(self, task: ProductTask) -> dict[int, ItemResult]:
        calls = self.plan(task)
        if calls:
            try:
                pool = await self._get_pool()
                async with pool.acquire() as connection, connection.transaction():
                    for statement, arguments in calls:
                        await connection.execute(statement, *arguments)
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
