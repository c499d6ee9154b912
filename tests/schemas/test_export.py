"""The exported JSON Schema files are the models' current schema, and they accept the
messages the docs show."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas import DeletionRequest, ProductAck, ProductTask
from schemas.export import JSON_DIR, expected_files


def test_exported_schema_files_are_up_to_date() -> None:
    for path, text in expected_files().items():
        assert path.exists(), f"{path.name} missing: run `python -m schemas.export`"
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run `python -m schemas.export`"
    assert {p.name for p in JSON_DIR.glob("*.schema.json")} == {p.name for p in expected_files()}


def test_request_defaults_and_extra_fields() -> None:
    request = DeletionRequest.model_validate_json(
        json.dumps(
            {
                "requestId": "r-1",
                "projectKey": "3sWXSsqHgSKnE87YkNJK",
                "identities": [{"namespace": {"code": "email"}, "id": "poul.anderson@example.com"}],
                "traceId": "kept as an extra field",
            }
        )
    )
    assert request.action == "delete_user_data"
    assert request.dataset_id == "ALL"
    assert request.start_at is None
    assert request.model_extra == {"traceId": "kept as an extra field"}


@pytest.mark.parametrize(
    "body",
    [
        {"requestId": "r", "projectKey": "k", "identities": []},
        {"requestId": "r", "projectKey": "k", "identities": [{"namespace": {"code": "x"}, "id": ""}]},
        {"requestId": "r", "projectKey": "k", "identities": [{"namespace": {}, "id": "a"}]},
        {"requestId": "r", "projectKey": "k", "identities": [{"namespace": {"code": "x"}, "id": "a"}], "action": "x"},
        {"requestId": "", "projectKey": "k", "identities": [{"namespace": {"code": "x"}, "id": "a"}]},
        {"requestId": "r", "projectKey": "k", "identities": [{"namespace": {"code": "x"}, "id": "a"}], "startAt": -1},
    ],
)
def test_invalid_requests_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DeletionRequest.model_validate(body)


def test_task_and_ack_round_trip() -> None:
    task = ProductTask.model_validate(
        {
            "taskId": "t",
            "product": "sessions",
            "items": [{"jobId": 1, "projectId": 2, "datasetId": "ALL", "identities": []}],
        }
    )
    assert ProductTask.model_validate_json(task.model_dump_json(by_alias=True)) == task
    ack = ProductAck.model_validate(
        {"taskId": "t", "product": "sessions", "results": [{"jobId": 1, "status": "failed", "error": "boom"}]}
    )
    assert json.loads(ack.model_dump_json(by_alias=True))["results"] == [
        {"jobId": 1, "status": "failed", "error": "boom"}
    ]
