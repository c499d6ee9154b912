"""Built-in `postgres` handler: runs the product's SQL statements in one transaction,
once per namespace of the chunk's identities: `$1` is that namespace's values
(de-duplicated) and `$2`, for a statement that uses it, the namespace code. Values of
two namespaces never share a statement (see worker.products.PostgresProduct).

Counts: the rows each statement affected (its command tag) are summed into the item's
`deleted`. A task that carries the chunks of several jobs runs each statement once for
all of them (the fast path for many small requests), and the rows it removed cannot be
told apart by job: such items report no count. A dry run runs the product's count
statements instead, in a read-only transaction; dispatch sends a dry run in a task of its
own, so its count is always its own.
"""

from __future__ import annotations

import asyncpg

from schemas import ProductTask
from worker.errors import PermanentError, TransientError, describe, is_transient
from worker.handlers.base import SUCCESS, Handler, ItemResult
from worker.products import uses_namespace

Calls = list[tuple[str, list[object]]]


def affected_rows(command_tag: str) -> int:
    """The row count at the end of a command tag (`DELETE 3`, `UPDATE 2`, `INSERT 0 1`); 0 if none."""
    last = command_tag.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresHandler(Handler):
    def __init__(
        self,
        dsn: str,
        statements: list[str],
        statements_by_namespace: dict[str, list[str]],
        namespaces: list[str] | None,
        max_connections: int,
        *,
        count_statements: list[str] | None = None,
        count_statements_by_namespace: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(namespaces)
        self.dsn = dsn
        self.statements = statements
        self.statements_by_namespace = statements_by_namespace
        self.count_statements = count_statements or []
        self.count_statements_by_namespace = count_statements_by_namespace or {}
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=self.max_connections)
            assert pool is not None
            self._pool = pool
        return self._pool

    def plan(self, task: ProductTask, *, counting: bool = False) -> Calls:
        """(statement, arguments) to run for this task, namespace by namespace: the
        deleting statements, or with `counting` the count statements."""
        shared = self.count_statements if counting else self.statements
        by_namespace = self.count_statements_by_namespace if counting else self.statements_by_namespace
        calls: Calls = []
        for namespace, values in self.values_by_namespace(task.items).items():
            if self.namespaces is None or namespace in self.namespaces:
                calls += [
                    (statement, [values, namespace] if uses_namespace(statement) else [values]) for statement in shared
                ]
            calls += [(statement, [values]) for statement in by_namespace.get(namespace, [])]
        return calls

    async def run(self, task: ProductTask) -> dict[int, ItemResult]:
        calls = self.plan(task, counting=task.dry_run)
        total = 0
        if calls:
            try:
                total = await (self._count(calls) if task.dry_run else self._delete(calls))
            except Exception as error:
                if is_transient(error):
                    raise TransientError(f"postgres: {describe(error)}") from error
                if isinstance(error, asyncpg.PostgresError):
                    raise PermanentError(f"postgres: {describe(error)}") from error
                raise
        if len(task.items) != 1 or (task.dry_run and not calls):
            return {item["jobId"]: SUCCESS for item in task.items}
        return {task.items[0]["jobId"]: ItemResult("success", deleted=total)}

    async def _delete(self, calls: Calls) -> int:
        pool = await self._get_pool()
        async with pool.acquire() as connection, connection.transaction():
            return sum(
                [affected_rows(await connection.execute(statement, *arguments)) for statement, arguments in calls]
            )

    async def _count(self, calls: Calls) -> int:
        """A dry run: read-only, so that a count statement cannot change anything either."""
        pool = await self._get_pool()
        async with pool.acquire() as connection, connection.transaction(readonly=True):
            counts = [await connection.fetchval(statement, *arguments) for statement, arguments in calls]
        if not all(isinstance(count, int) for count in counts):
            raise PermanentError("postgres: a count statement must return one number")
        return sum(counts)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
