"""The event types a subscription asks for: exact types (schemas.events) or patterns in
which `*` matches any run of characters: `job.*` (every job event), `product.*.failed`
(any product failing), `*` (everything)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from schemas.events import is_event_type
from worker.errors import UsageError

MAX_EVENT_TYPES = 50
_SEGMENT = re.compile(r"^(\*|[a-z0-9][a-z0-9_-]{0,62})$")
KINDS = ("job", "product", "*")


class EventTypeError(UsageError):
    pass


def _valid_pattern(pattern: str) -> bool:
    segments = pattern.split(".")
    return (
        len(pattern) <= 100
        and len(segments) <= 3
        and segments[0] in KINDS
        and all(_SEGMENT.match(segment) for segment in segments)
    )


def check_event_types(types: Sequence[str]) -> list[str]:
    """The types, validated and without repeats (in the order given); raises EventTypeError."""
    if not types:
        raise EventTypeError("eventTypes: name at least one type or pattern (`*` for every event)")
    if len(types) > MAX_EVENT_TYPES:
        raise EventTypeError(f"eventTypes: at most {MAX_EVENT_TYPES}")
    for index, text in enumerate(types):
        known = is_event_type(text) if "*" not in text else _valid_pattern(text)
        if not known:
            raise EventTypeError(
                f"eventTypes.{index}: not an event type (job.completed, product.<name>.failed, ...) nor a pattern"
                " of them (job.*, product.*.failed, *)"
            )
    return list(dict.fromkeys(types))


def matches(pattern: str, event_type: str) -> bool:
    """Whether an event type is one a pattern asks for (what the fan-out's SQL does)."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, event_type) is not None
