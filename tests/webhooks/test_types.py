"""Which event types a subscription may ask for, and what its patterns match."""

from __future__ import annotations

import pytest

from worker.webhooks.types import EventTypeError, check_event_types, matches


def test_types_and_patterns() -> None:
    given = ["job.completed", "job.*", "product.*.failed", "product.crm_db.success", "*", "job.*"]
    assert check_event_types(given) == given[:5]  # repeats dropped, order kept


@pytest.mark.parametrize(
    "bad", [[], ["job.done"], ["jobs.*"], ["product.crm"], ["job.%"], ["product.*.*.x"], ["JOB.*"], ["x" * 20] * 51]
)
def test_refused(bad: list[str]) -> None:
    with pytest.raises(EventTypeError):
        check_event_types(bad)


def test_matching() -> None:
    assert matches("*", "product.crm.failed")
    assert matches("job.*", "job.at_risk")
    assert not matches("job.*", "product.crm.failed")
    assert matches("product.*.failed", "product.crm_db.failed")
    assert not matches("product.*.failed", "product.crm.success")
    assert matches("product.crm_db.success", "product.crm_db.success")
    assert not matches("product.crm_db.success", "product.crmxdb.success")  # `_` is literal
