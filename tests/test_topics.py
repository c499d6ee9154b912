"""Topic patterns are matched as a RabbitMQ topic exchange matches its bindings."""

from __future__ import annotations

import pytest

from worker.settings import Settings
from worker.topics import TopicFilter, topic_matches, validate_pattern


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("#", "job.completed", True),
        ("job.*", "job.completed", True),
        ("job.*", "job", False),
        ("job.*", "job.a.b", False),
        ("*.completed", "job.completed", True),
        ("product.*.failed", "product.crm.failed", True),
        ("product.*.failed", "product.crm.success", False),
        ("product.#", "product", True),  # `#` takes zero words too
        ("product.#", "product.crm.failed", True),
        ("#.failed", "job.failed", True),
        ("#.failed", "failed", True),
        ("#.failed", "job.failed.later", False),
        ("job.#.x", "job.x", True),
        ("job.#.x", "job.a.b.x", True),
        ("a.#.#.b", "a.b", True),
        ("job.completed", "job.completed", True),
        ("job.completed", "job.complete", False),
    ],
)
def test_a_pattern_takes_what_a_binding_would(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_a_filter_takes_a_key_any_of_its_patterns_takes() -> None:
    takes = TopicFilter(("job.*", "product.*.failed"))
    assert [takes(key) for key in ("job.overdue", "product.crm.failed", "product.crm.success")] == [True, True, False]
    assert TopicFilter(("#",))("anything.at.all")


@pytest.mark.parametrize("pattern", ["", "job.", "job..x", "job.comp*", "job completed", "job.é"])
def test_what_is_not_a_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="not a topic pattern"):
        validate_pattern(pattern)


def test_the_setting_is_a_comma_separated_list_checked_when_read() -> None:
    assert Settings(events_publish="job.*, product.*.failed").event_publish_patterns == ("job.*", "product.*.failed")
    assert Settings().event_publish_patterns == ("#",)
    with pytest.raises(ValueError, match="not a topic pattern"):
        Settings(events_publish="job.*,bad pattern")
