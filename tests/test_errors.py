"""Every failure has one class, decided in one place."""

from __future__ import annotations

import asyncpg
import pytest

from worker.amqp import PublishRefusedError
from worker.errors import FailureClass, PermanentError, TransientError, UnavailableError, classify, describe


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (asyncpg.exceptions.ConnectionDoesNotExistError("gone"), FailureClass.UNAVAILABLE),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), FailureClass.UNAVAILABLE),
        (asyncpg.exceptions.AdminShutdownError("terminating"), FailureClass.UNAVAILABLE),
        (asyncpg.exceptions.TooManyConnectionsError("too many"), FailureClass.UNAVAILABLE),
        (asyncpg.exceptions.ReadOnlySQLTransactionError("standby"), FailureClass.UNAVAILABLE),
        # A multi-host URL while no server is writable yet (between a primary's stop and a promotion).
        (asyncpg.exceptions.TargetServerAttributeNotMatched("no primary"), FailureClass.UNAVAILABLE),
        (asyncpg.exceptions.DiskFullError("disk full"), FailureClass.UNAVAILABLE),
        (ConnectionRefusedError(), FailureClass.UNAVAILABLE),
        (UnavailableError("down"), FailureClass.UNAVAILABLE),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), FailureClass.CONTENTION),
        (asyncpg.exceptions.SerializationError("serialization"), FailureClass.CONTENTION),
        (asyncpg.exceptions.LockNotAvailableError("lock"), FailureClass.CONTENTION),
        (TimeoutError(), FailureClass.CONTENTION),
        # Out of (shared) memory is what a batch touching too many jobs hit: it would hit
        # it again, so it must not be retried in place (the old livelock).
        (asyncpg.exceptions.OutOfMemoryError("out of shared memory"), FailureClass.RECURRING),
        (asyncpg.exceptions.QueryCanceledError("statement timeout"), FailureClass.RECURRING),
        (asyncpg.exceptions.TooManyColumnsError("too many"), FailureClass.RECURRING),
        (asyncpg.exceptions.UniqueViolationError("duplicate"), FailureClass.NEVER_RETRY),
        (asyncpg.exceptions.UndefinedTableError("no table"), FailureClass.NEVER_RETRY),
        (PermanentError("http: answered 404"), FailureClass.NEVER_RETRY),
        (TransientError("http: answered 503"), FailureClass.TRANSIENT),
        (PublishRefusedError("nacked"), FailureClass.TRANSIENT),
        (ValueError("bug"), FailureClass.NEVER_RETRY),
    ],
)
def test_failure_classes(error: BaseException, failure: FailureClass) -> None:
    assert classify(error) is failure


def test_descriptions_never_quote_input() -> None:
    error = asyncpg.exceptions.UniqueViolationError("Key (request_id)=(alice@example.com) already exists")
    assert describe(error) == "database error 23505 (UniqueViolationError)"
    assert describe(ValueError("alice@example.com")) == "ValueError"
