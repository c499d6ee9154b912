"""One error hierarchy, the failure class of every error, and descriptions safe to log.

Every role decides what to do with a failure from its class alone (`classify`):

  NEVER_RETRY   the input can never succeed (bad JSON, wrong schema, a 4xx from a
                product, a constraint violated): dead-letter it, with the reason;
  TRANSIENT     expected to succeed later (a product's 5xx, a time-out): the retry
                tiers, with backoff and jitter, up to the attempt limit;
  CONTENTION    the same work should succeed if tried again now (deadlock,
                serialization failure): retry in place a few times, then treat it
                as RECURRING;
  UNAVAILABLE   a service the role needs is down (Postgres unreachable, restarting,
                a standby after a failover): keep the work, pause, wait for it;
  RECURRING     this batch will fail the same way every time (out of shared
                memory, a statement too large or too slow): split it, and a
                single message that still fails goes to the retry tiers.

A dead-letter reason, a log line and a job's `errors` may be read by anyone operating
the system, so descriptions never quote input: pydantic's messages are rebuilt without
the offending values, and database errors are named by class and SQLSTATE only.
"""

from __future__ import annotations

from enum import StrEnum

import asyncpg
from pydantic import ValidationError


class FailureClass(StrEnum):
    NEVER_RETRY = "never_retry"
    TRANSIENT = "transient"
    CONTENTION = "contention"
    UNAVAILABLE = "unavailable"
    RECURRING = "recurring"


class DeletionWorkerError(Exception):
    """Base of every error this service raises on purpose."""

    failure = FailureClass.NEVER_RETRY


class ConfigError(DeletionWorkerError):
    """A setting, the products file or a migration is wrong; the message is for a person."""


class UsageError(DeletionWorkerError):
    """A command or request named something that does not exist or does not fit."""


class NotFoundError(DeletionWorkerError, LookupError):
    """The job, queue or key named does not exist (or is not the caller's)."""


class RefusedError(DeletionWorkerError):
    """The operation is not allowed in the current state (e.g. cancel a completed job)."""


class ConflictError(DeletionWorkerError):
    """The request contradicts an earlier one (an idempotency key reused for another request)."""


class UnavailableError(DeletionWorkerError):
    """A service this process needs (RabbitMQ, Postgres) cannot be reached."""

    failure = FailureClass.UNAVAILABLE


class TransientError(DeletionWorkerError):
    """Expected to succeed later (a 5xx, a time-out, a connection refused by a product)."""

    failure = FailureClass.TRANSIENT


class PermanentError(DeletionWorkerError):
    """Retrying cannot help (bad input, a 4xx from a product, a broken SQL statement)."""


# Postgres errors by SQLSTATE, most specific first (a five-character code, then its class).
# Anything not listed is a property of the data or of the statement: NEVER_RETRY.
SQLSTATE_FAILURES: dict[str, FailureClass] = {
    "08": FailureClass.UNAVAILABLE,  # connection exception
    "57P01": FailureClass.UNAVAILABLE,  # admin shutdown
    "57P02": FailureClass.UNAVAILABLE,  # crash shutdown
    "57P03": FailureClass.UNAVAILABLE,  # cannot connect now (starting up, recovering)
    "57P04": FailureClass.UNAVAILABLE,  # database dropped
    "25006": FailureClass.UNAVAILABLE,  # read-only transaction: connected to a standby after a failover
    "53300": FailureClass.UNAVAILABLE,  # too many connections
    "53100": FailureClass.UNAVAILABLE,  # disk full: waiting for space helps, splitting does not
    "58": FailureClass.UNAVAILABLE,  # system error (I/O)
    "40001": FailureClass.CONTENTION,  # serialization failure
    "40P01": FailureClass.CONTENTION,  # deadlock detected
    "55P03": FailureClass.CONTENTION,  # lock not available
    "57014": FailureClass.RECURRING,  # query cancelled (statement timeout): too slow at this size
    "53200": FailureClass.RECURRING,  # out of memory / out of shared memory (lock table full)
    "53400": FailureClass.RECURRING,  # configuration limit exceeded
    "54": FailureClass.RECURRING,  # program limit exceeded (too many parameters, too complex)
}


def classify(error: BaseException) -> FailureClass:
    """The failure class of any error a role may meet."""
    if isinstance(error, DeletionWorkerError):
        return error.failure
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = getattr(error, "sqlstate", None) or ""
        return SQLSTATE_FAILURES.get(sqlstate) or SQLSTATE_FAILURES.get(sqlstate[:2], FailureClass.NEVER_RETRY)
    if isinstance(error, TimeoutError):
        # A pool that gave no connection in time, or a statement past its time-out: try
        # again shortly; if it keeps timing out, the work is split (see RECURRING).
        return FailureClass.CONTENTION
    if isinstance(error, (OSError, ConnectionError, asyncpg.exceptions.InterfaceError)):
        return FailureClass.UNAVAILABLE
    if isinstance(error, asyncpg.exceptions.TargetServerAttributeNotMatched):
        # Every host of a multi-host URL answered, none writable: a failover under way.
        return FailureClass.UNAVAILABLE
    return FailureClass.NEVER_RETRY


def is_transient(error: BaseException) -> bool:
    """Worth trying the same thing again later (anything but NEVER_RETRY)."""
    return classify(error) is not FailureClass.NEVER_RETRY


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
    if isinstance(error, DeletionWorkerError):
        # Our own messages are written not to include identity values.
        return str(error) or type(error).__name__
    return type(error).__name__
