"""Failure classes, and descriptions of errors that are safe to log and store.

A dead-letter reason, a log line and a job's `errors` may be read by anyone operating
the system, so they never quote input: pydantic's messages are rebuilt without the
offending values, and database errors are named by class and SQLSTATE only.
"""

from __future__ import annotations

import asyncpg
from pydantic import ValidationError


class PermanentError(Exception):
    """Retrying cannot help (bad input, a 4xx from a product, a broken SQL statement)."""


class TransientError(Exception):
    """Expected to succeed later (a 5xx, a time-out, a connection refused)."""


def describe_validation_error(error: ValidationError, limit: int = 5) -> str:
    parts = []
    for item in error.errors(include_input=False, include_url=False)[:limit]:
        location = ".".join(str(part) for part in item["loc"]) or "message"
        parts.append(f"{location}: {item['msg']}")
    more = error.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "schema: " + "; ".join(parts)


def describe(error: BaseException) -> str:
    """A one-line description of `error` that contains no input values."""
    if isinstance(error, ValidationError):
        return describe_validation_error(error)
    if isinstance(error, asyncpg.PostgresError):
        return f"database error {getattr(error, 'sqlstate', '?')} ({type(error).__name__})"
    if isinstance(error, (PermanentError, TransientError)):
        # Our own messages are written not to include identity values.
        return str(error) or type(error).__name__
    return type(error).__name__
