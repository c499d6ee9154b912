"""What handle sees and returns, and the acknowledgement it becomes: valid for every reader."""

from __future__ import annotations

import orjson
import pytest

from schemas import ProductAck, ProductTask
from worker.sdk import Identity, Item, Result
from worker.sdk.model import ResultsMismatchError, ack_body, check_results, items_of

TASK = ProductTask.model_validate(
    {
        "taskId": "t-1",
        "product": "crm",
        "dryRun": True,
        "items": [
            {
                "jobId": 7,
                "projectId": 1,
                "datasetId": "ALL",
                "identities": [
                    {"namespace": {"code": "email"}, "id": "a@example.com"},
                    {"namespace": {"code": "userId"}, "id": "42"},
                    {"namespace": {"code": "email"}, "id": "a@example.com"},
                ],
            }
        ],
    }
)


def test_items_carry_the_task_fields_and_group_values_by_namespace() -> None:
    [item] = items_of(TASK)
    assert (item.job_id, item.project_id, item.dataset_id, item.dry_run) == (7, 1, "ALL", True)
    assert item.values("email") == ["a@example.com"]
    assert item.namespaces() == ["email", "userId"]


def test_a_plain_ack_is_exactly_the_old_format() -> None:
    [item] = items_of(TASK)
    body = ack_body("t-1", "crm", [item.succeeded()])
    assert orjson.loads(body) == {
        "taskId": "t-1",
        "product": "crm",
        "results": [{"jobId": 7, "status": "success", "error": None}],
    }


def test_counts_and_failed_identities_are_extra_fields_the_schema_accepts() -> None:
    [item] = items_of(TASK)
    result = item.failed(
        "1 identity failed", identities={Identity("userId", "42"): "locked\x00"}, deleted=1, not_found=0
    )
    ack = ProductAck.model_validate_json(ack_body("t-1", "crm", [result]))
    [wire] = ack.results
    assert (wire["status"], wire["error"]) == ("failed", "1 identity failed")
    assert wire["deleted"] == 1
    assert wire["notFound"] == 0
    assert wire["failedIdentities"] == [{"namespace": {"code": "userId"}, "id": "42", "error": "locked"}]


def test_results_must_match_the_items_in_order() -> None:
    items = [*items_of(TASK), *items_of(TASK.model_copy(update={"items": [{**TASK.items[0], "jobId": 8}]}))]
    assert check_results(items, [item.succeeded() for item in items])
    with pytest.raises(ResultsMismatchError):
        check_results(items, [items[0].succeeded()])
    with pytest.raises(ResultsMismatchError):
        check_results(items, [items[1].succeeded(), items[0].succeeded()])
    with pytest.raises(ResultsMismatchError):
        check_results(items, {7: Result(7, "success"), 8: Result(8, "success")})
    assert isinstance(items[0], Item)
