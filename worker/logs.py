"""structlog, configured once per process.

JSON when stdout is not a terminal (containers, CI), readable lines on a terminal.
Identity values are personal data and never logged: callers log counts and ids, and a
last-line processor blanks any field whose name suggests an identity, in case one slips in.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import structlog

from worker import tracing

REDACTED_KEYS = frozenset({"identity", "identities", "identity_value", "user_id", "userId", "id_value"})


def _redact_identities(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in REDACTED_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


def _withhold_exception_messages(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A traceback shows where, and the exception's type, never its message: messages of
    database and validation errors can quote the input (an identity value)."""
    exc_info = event.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        kind, _, trace = exc_info
        frames = "".join(traceback.format_tb(trace))
        event["exception"] = f"Traceback (most recent call last):\n{frames}{kind.__name__} (message withheld)"
    return event


_configured = False


def configure_logging(level: str = "info", log_format: str = "auto") -> None:
    global _configured  # noqa: PLW0603 - configuring logging is process-wide by nature
    if _configured:
        return
    _configured = True
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    # Libraries (aio-pika, uvicorn) log through the standard library; keep their noise down.
    logging.basicConfig(level=max(numeric_level, logging.WARNING), stream=sys.stderr, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            tracing.add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_identities,
            _withhold_exception_messages,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Not cached: logging happens per batch, not per message, and an uncached logger
        # follows a later reconfiguration (tests capture logs after the CLI configured them).
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Back to structlog's defaults (tests that ran CLI commands in-process use this)."""
    global _configured  # noqa: PLW0603 - the counterpart of configure_logging
    _configured = False
    structlog.reset_defaults()
