"""Topic-exchange routing keys matched against binding patterns, as RabbitMQ matches them:
words split on `.`, `*` stands for exactly one word, `#` for zero or more.

Used where the service decides for itself what a topic binding would take: which event
types the events relay publishes at all (`DELETION_EVENTS_PUBLISH`).
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"^[A-Za-z0-9_\-]+$")


def validate_pattern(pattern: str) -> str:
    """The pattern, or ValueError saying what is wrong with it."""
    words = pattern.split(".")
    if not pattern or any(word not in ("*", "#") and _WORD.match(word) is None for word in words):
        raise ValueError(f"not a topic pattern (words of letters, digits, _ or -, or * and #): {pattern!r}")
    return pattern


def topic_matches(pattern: str, routing_key: str) -> bool:
    return _matches(tuple(pattern.split(".")), tuple(routing_key.split(".")))


@lru_cache(maxsize=4096)
def _matches(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        # `#` takes no word, or one more and stays.
        return _matches(rest, words) or (bool(words) and _matches(pattern, words[1:]))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _matches(rest, words[1:])


class TopicFilter:
    """Whether any of several patterns takes a routing key, remembered per key (a
    service has a few dozen event types, and the relay asks for every event)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = tuple(validate_pattern(pattern) for pattern in patterns)
        self.takes_everything = "#" in self.patterns
        self._known: dict[str, bool] = {}

    def __call__(self, routing_key: str) -> bool:
        if self.takes_everything:
            return True
        known = self._known.get(routing_key)
        if known is None:
            known = any(topic_matches(pattern, routing_key) for pattern in self.patterns)
            if len(self._known) < 4096:  # product names come from configuration, but stay bounded
                self._known[routing_key] = known
        return known
