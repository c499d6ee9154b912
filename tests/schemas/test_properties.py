"""Property-based tests of the message models: any input is either a valid message or a
validation error whose description never quotes the input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import DeletionRequest, ProductAck, ProductTask
from worker.roles.batch import DeadLetter, parse_body
from worker.roles.intake import parse_request

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
identity = st.fixed_dictionaries(
    {"namespace": st.fixed_dictionaries({"code": st.text(max_size=20)}), "id": st.text(max_size=40)}
)
request_like = st.fixed_dictionaries(
    {
        "requestId": st.text(max_size=30) | st.integers(),
        "projectKey": st.text(max_size=30),
        "identities": st.lists(identity, max_size=5) | json_values,
    },
    optional={"startAt": st.integers() | st.text(max_size=5), "action": st.text(max_size=20), "datasetId": json_values},
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_parsing(body: bytes) -> None:
    for model in (DeletionRequest, ProductTask, ProductAck):
        result = parse_body(model, body)
        assert isinstance(result, (model, DeadLetter))


@settings(max_examples=300, deadline=None)
@given(request_like)
def test_request_like_documents_validate_or_explain_without_echoing(document: dict[str, object]) -> None:
    body = json.dumps(document).encode()
    result = parse_request(body, max_bytes=1_000_000, max_identities=100_000)
    if isinstance(result, DeadLetter):
        identities = document.get("identities")
        if isinstance(identities, list):
            for item in identities:
                value = item.get("id") if isinstance(item, dict) else None
                if isinstance(value, str) and len(value) >= 4:
                    assert value not in result.reason
    else:
        assert isinstance(result, DeletionRequest)
        assert 1 <= len(result.identities) <= 100_000
        assert all(i["id"] and "\x00" not in i["id"] for i in result.identities)


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=100_000).filter(lambda s: "\x00" not in s))
def test_huge_strings_are_bounded(text: str) -> None:
    document = {"requestId": "r", "projectKey": "k", "identities": [{"namespace": {"code": "c"}, "id": text}]}
    if len(text) > 1024:
        with pytest.raises(ValidationError) as refused:
            DeletionRequest.model_validate(document)
        assert text not in str(refused.value.errors(include_input=False))
    else:
        assert DeletionRequest.model_validate(document).identities[0]["id"] == text


def test_oversized_and_overfull_requests_are_refused_with_a_reason() -> None:
    too_big = parse_request(b"x" * 2048, max_bytes=1024, max_identities=10)
    assert isinstance(too_big, DeadLetter)
    assert too_big.reason.startswith("limit:")
    identities = [{"namespace": {"code": "u"}, "id": f"v{i}"} for i in range(11)]
    over = parse_request(
        json.dumps({"requestId": "r", "projectKey": "k", "identities": identities}).encode(),
        max_bytes=1_000_000,
        max_identities=10,
    )
    assert isinstance(over, DeadLetter)
    assert over.reason == "limit: 11 identities exceed 10"
