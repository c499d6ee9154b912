"""The postgres handler never gives a statement the values of two namespaces at once."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from schemas import ProductTask
from worker.handlers.postgres import PostgresHandler
from worker.products import ProductsFileError, load_products


def task(*identities: tuple[str, str]) -> ProductTask:
    return ProductTask.model_validate(
        {
            "taskId": str(uuid.uuid4()),
            "product": "p",
            "items": [
                {
                    "jobId": 1,
                    "projectId": 1,
                    "datasetId": "ALL",
                    "identities": [{"namespace": {"code": ns}, "id": value} for ns, value in identities],
                }
            ],
        }
    )


def test_statements_run_once_per_namespace_with_that_namespaces_values() -> None:
    handler = PostgresHandler(
        "postgresql://unused",
        statements=["DELETE FROM a WHERE u = ANY($1)", "DELETE FROM b WHERE ns = $2 AND v = ANY($1)"],
        statements_by_namespace={"email": ["DELETE FROM c WHERE email = ANY($1)"]},
        namespaces=["userId", "email"],
        max_connections=1,
    )
    calls = handler.plan(task(("userId", "42"), ("email", "42"), ("email", "x@y"), ("phone", "1"), ("userId", "42")))
    assert calls == [
        ("DELETE FROM a WHERE u = ANY($1)", [["42"]]),
        ("DELETE FROM b WHERE ns = $2 AND v = ANY($1)", [["42"], "userId"]),
        ("DELETE FROM a WHERE u = ANY($1)", [["42", "x@y"]]),
        ("DELETE FROM b WHERE ns = $2 AND v = ANY($1)", [["42", "x@y"], "email"]),
        ("DELETE FROM c WHERE email = ANY($1)", [["42", "x@y"]]),
    ]  # phone: not a namespace of this product


async def test_an_email_42_does_not_delete_user_id_42(pool: asyncpg.Pool, database_url: str) -> None:
    """Before: every identity value went into one $1 array: an email `42` also deleted
    the rows of userId `42`."""
    table = f"demo.ns_{uuid.uuid4().hex[:8]}"
    await pool.execute(f"CREATE TABLE {table} (user_id text, email text)")
    try:
        await pool.execute(f"INSERT INTO {table} VALUES ('42', 'someone@example.com'), ('7', '42')")
        handler = PostgresHandler(
            database_url,
            statements=[],
            statements_by_namespace={
                "userId": [f"DELETE FROM {table} WHERE user_id = ANY($1)"],
                "email": [f"DELETE FROM {table} WHERE email = ANY($1)"],
            },
            namespaces=None,
            max_connections=1,
        )
        try:
            await handler.run(task(("email", "42")))
        finally:
            await handler.close()
        left = await pool.fetch(f"SELECT user_id, email FROM {table} ORDER BY user_id")
        assert [tuple(row) for row in left] == [("42", "someone@example.com")]
    finally:
        await pool.execute(f"DROP TABLE {table}")


def test_a_products_file_that_would_mix_namespaces_is_refused(tmp_path: Path) -> None:
    mixing = tmp_path / "mixing.toml"
    mixing.write_text('[products.p]\nhandler = "postgres"\nstatements = ["DELETE FROM t WHERE u = ANY($1)"]\n')
    with pytest.raises(ProductsFileError, match="email 42 would delete userId 42"):
        load_products(mixing)
    with_namespace_code = tmp_path / "ok.toml"
    with_namespace_code.write_text(
        '[products.p]\nhandler = "postgres"\nstatements = ["DELETE FROM t WHERE ns = $2 AND u = ANY($1)"]\n'
    )
    assert load_products(with_namespace_code).names == ["p"]
