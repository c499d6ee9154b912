"""What a product's `handle` sees (Item) and returns (Result), and their wire forms.

An acknowledgement keeps the fields every release reads (`jobId`, `status`, `error`) and
adds, only when the product gave them, `deleted`, `notFound` and `failedIdentities`:
extra fields are allowed by the ack schema, so older consumers read these acks alike and
an ack without them is byte for byte what the built-in handlers send.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

from schemas import AckResult, ProductTask, TaskItem

ERROR_MAX_CHARS = 1000  # the schema allows 10,000; a reason longer than this says no more


def clean_text(text: str) -> str:
    """An error text the ack schema accepts: no NUL characters, bounded."""
    return text.replace("\x00", "")[:ERROR_MAX_CHARS] or "error"


class Identity(NamedTuple):
    namespace: str
    id: str


@dataclass(frozen=True)
class IdentityFailure:
    identity: Identity
    error: str


@dataclass(frozen=True)
class Result:
    """The outcome of one item. `failed_identities` non-empty: those identities could not be
    deleted (the item is `failed`, with the list for a per-identity view); the rest were."""

    job_id: int
    status: Literal["success", "failed"]
    error: str | None = None
    deleted: int | None = None
    not_found: int | None = None
    failed_identities: tuple[IdentityFailure, ...] = ()


@dataclass(frozen=True)
class Item:
    """One job's chunk of identities: delete them (unless `dry_run`), then say how it went
    with `succeeded()` or `failed(...)`."""

    job_id: int
    project_id: int
    dataset_id: str
    identities: tuple[Identity, ...]
    dry_run: bool = False  # the task asks to count only (`dryRun`): delete nothing
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)  # the item as sent, extra fields too

    def values(self, namespace: str) -> list[str]:
        """The identity values of one namespace (e.g. every `email`), without duplicates."""
        return list(dict.fromkeys(identity.id for identity in self.identities if identity.namespace == namespace))

    def namespaces(self) -> list[str]:
        return list(dict.fromkeys(identity.namespace for identity in self.identities))

    def succeeded(self, *, deleted: int | None = None, not_found: int | None = None) -> Result:
        return Result(self.job_id, "success", None, deleted, not_found)

    def failed(
        self,
        error: str,
        *,
        identities: Mapping[Identity, str] | None = None,
        deleted: int | None = None,
        not_found: int | None = None,
    ) -> Result:
        """The item failed; with `identities` (identity -> reason), only those did."""
        failures = tuple(
            IdentityFailure(identity, clean_text(reason)) for identity, reason in (identities or {}).items()
        )
        return Result(self.job_id, "failed", clean_text(error), deleted, not_found, failures)


def items_of(task: ProductTask) -> list[Item]:
    return [_item(raw, task.dry_run) for raw in task.items]


def _item(raw: TaskItem, dry_run: bool) -> Item:
    identities = tuple(Identity(identity["namespace"]["code"], identity["id"]) for identity in raw["identities"])
    return Item(raw["jobId"], raw["projectId"], raw["datasetId"], identities, dry_run, raw)


def failed_results(items: Iterable[Item], error: str) -> list[Result]:
    return [item.failed(error) for item in items]


def _wire_result(result: Result) -> AckResult:
    wire: dict[str, Any] = {"jobId": result.job_id, "status": result.status, "error": result.error}
    if result.deleted is not None:
        wire["deleted"] = result.deleted
    if result.not_found is not None:
        wire["notFound"] = result.not_found
    if result.failed_identities:
        wire["failedIdentities"] = [
            {"namespace": {"code": f.identity.namespace}, "id": f.identity.id, "error": f.error}
            for f in result.failed_identities
        ]
    return wire  # type: ignore[return-value]  # AckResult allows extra fields; TypedDict cannot say so


def ack_body(task_id: str, product: str, results: Iterable[Result]) -> bytes:
    return orjson.dumps({"taskId": task_id, "product": product, "results": [_wire_result(r) for r in results]})


class ResultsMismatchError(Exception):
    """`handle` did not return one result per item, in order: a bug in the product's code."""


def check_results(items: list[Item], results: object) -> list[Result]:
    if not isinstance(results, list | tuple) or len(results) != len(items):
        count = len(results) if isinstance(results, list | tuple) else type(results).__name__
        raise ResultsMismatchError(f"handle returned {count} results for {len(items)} items")
    for item, result in zip(items, results, strict=True):
        if not isinstance(result, Result) or result.job_id != item.job_id:
            raise ResultsMismatchError("handle must return item.succeeded()/item.failed() per item, in order")
    return list(results)
