"""Database rows → the seeds' JSON shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.status import WORKORDER_STATUS


def epoch_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and Z, as in the seed (2022-07-21T18:05:28.316029Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "jobId": row["id"],
        "description": row["description"],
        "status": row["status"],
        "projectId": row["project_id"],
        "action": row["action"],
        "referenceId": row["reference_id"],
        "createdAt": epoch_ms(row["created_at"]),
        "updatedAt": epoch_ms(row["updated_at"]),
        "startAt": epoch_ms(row["start_at"]),
        "errors": row["errors"],
        "regulation": row["regulation"],
        "dueAt": epoch_ms(row["due_at"]),
    }


def workorder_view(
    row: dict[str, Any], org_id: str, products: list[dict[str, Any]] | None, display_names: dict[str, str]
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "workorderId": row["workorder_id"],
        "orgId": org_id,
        "bundleId": row["bundle_id"],
        "action": "identity-delete",
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"] or row["created_at"]),
        "operationCount": row["identity_count"],
        "status": WORKORDER_STATUS[row["status"]],
        "createdBy": row["created_by"],
        "datasetId": row["dataset_id"],
        "displayName": row["display_name"],
        "description": row["description"],
    }
    if products is not None:
        view["productStatusDetails"] = [
            {
                "productName": display_names.get(item["product"], item["product"]),
                "productStatus": item["status"],
                "createdAt": iso(item["created_at"]),
            }
            for item in products
        ]
    view["regulation"] = row["regulation"]
    view["dueAt"] = iso(row["due_at"]) if row["due_at"] else None
    return view
