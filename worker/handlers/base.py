"""What a built-in product handler is, and how one is made from the products file."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from schemas import FailedIdentity, Identity, ProductTask, TaskItem
from worker.errors import PermanentError


@dataclass(frozen=True)
class ItemResult:
    status: str  # success | failed
    error: str | None = None
    # What the product did, when it says: rows deleted (in a dry run: that would be) and
    # identities it had nothing for; in a failed result, the identities that failed when
    # not all of them did.
    deleted: int | None = None
    not_found: int | None = None
    failed_identities: tuple[FailedIdentity, ...] = ()


SUCCESS = ItemResult("success")


class Handler(ABC):
    """Carries out one product task. Returns a result per job id, raises TransientError to
    have the task retried later, or PermanentError to fail every item of it."""

    def __init__(self, namespaces: list[str] | None) -> None:
        self.namespaces = set(namespaces) if namespaces is not None else None

    def wanted(self, identity: Identity) -> bool:
        return self.namespaces is None or identity["namespace"]["code"] in self.namespaces

    @staticmethod
    def values_by_namespace(items: list[TaskItem]) -> dict[str, list[str]]:
        """The identity values of these items per namespace, de-duplicated, in order."""
        seen: dict[str, dict[str, None]] = {}
        for item in items:
            for identity in item["identities"]:
                seen.setdefault(identity["namespace"]["code"], {}).setdefault(identity["id"])
        return {namespace: list(values) for namespace, values in seen.items()}

    @abstractmethod
    async def run(self, task: ProductTask) -> dict[int, ItemResult]: ...

    async def close(self) -> None:
        return None


def failed_items(task: ProductTask, error: PermanentError) -> dict[int, ItemResult]:
    return {item["jobId"]: ItemResult("failed", str(error)) for item in task.items}
