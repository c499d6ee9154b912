"""The messages this service writes, encoded in one place beside the models they must agree with.

Built from plain dicts typed by the TypedDicts of schemas.messages and encoded with
orjson: these run for every identity of every job, and model objects would cost several
times more. Every encoder has a test that feeds its output back through its model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson
from typing_extensions import TypedDict

from schemas.messages import AckResult, DeletionRequest, TaskItem


def task_item(job_id: int, project_id: int, dataset_id: str, identities: Iterable[tuple[str, str]]) -> TaskItem:
    return {
        "jobId": job_id,
        "projectId": project_id,
        "datasetId": dataset_id,
        "identities": [{"namespace": {"code": namespace}, "id": value} for namespace, value in identities],
    }


def task_items(items: Sequence[TaskItem]) -> bytes:
    """The `items` array of a product task. Every product gets the same items, so they are
    encoded once and spliced into each product's message (`task_message`)."""
    return orjson.dumps(items)


def task_message(task_id: str, product: str, encoded_items: bytes, dry_run: bool = False) -> bytes:
    """A whole ProductTask: its own id and product around items encoded by `task_items`.
    `dryRun` is written only when true: an ordinary task reads as it always did."""
    head = orjson.dumps(
        {"taskId": task_id, "product": product, "dryRun": True} if dry_run else {"taskId": task_id, "product": product}
    )
    return head[:-1] + b',"items":' + encoded_items + b"}"


class ProductAckDict(TypedDict):
    taskId: str
    product: str
    results: list[AckResult]


def ack_message(task_id: str, product: str, results: list[AckResult]) -> bytes:
    ack: ProductAckDict = {"taskId": task_id, "product": product, "results": results}
    return orjson.dumps(ack)


def request_message(request: DeletionRequest) -> bytes:
    return request.model_dump_json(by_alias=True).encode()


# The encoded size of one identity in a task is at most this many bytes per character of
# its namespace and value (JSON escapes a control character as \u00XX), plus the framing.
ENCODED_BYTES_PER_CHAR = 6
IDENTITY_FRAMING_BYTES = 40
ITEM_FRAMING_BYTES = 100


def identity_bytes_bound(characters: int) -> int:
    """An upper bound of the encoded size in a task (`task_item`) of one identity whose
    namespace and value have this many characters together."""
    return characters * ENCODED_BYTES_PER_CHAR + IDENTITY_FRAMING_BYTES
