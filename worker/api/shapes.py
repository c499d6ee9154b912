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
        "dryRun": row["dry_run"],
    }


def job_view_with_products(row: dict[str, Any], products: list[dict[str, Any]]) -> dict[str, Any]:
    """The view of one job: what each product did follows the seed's fields."""
    return {**job_view(row), "products": [job_product_result(item, row["dry_run"]) for item in products]}


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
        view["productStatusDetails"] = [product_status_detail(item, display_names, row["dry_run"]) for item in products]
    view["regulation"] = row["regulation"]
    view["dueAt"] = iso(row["due_at"]) if row["due_at"] else None
    view["dryRun"] = row["dry_run"]
    return view


def _product_results(item: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    """What a product did (beyond the seeds); in a dry run its count is what it would delete."""
    started, finished = item.get("started_at"), item.get("finished_at")
    return {
        "deleted": None if dry_run else item.get("deleted"),
        "wouldDelete": item.get("deleted") if dry_run else None,
        "notFound": item.get("not_found"),
        "identitiesFailed": item.get("identities_failed") or 0,
        "retries": item.get("retries") or 0,
        "startedAt": started,
        "finishedAt": finished,
        "durationMs": int((finished - started).total_seconds() * 1000) if started and finished else None,
    }


def product_status_detail(item: dict[str, Any], display_names: dict[str, str], dry_run: bool) -> dict[str, Any]:
    """The seed's three fields, then what the product did."""
    results = _product_results(item, dry_run)
    results["startedAt"] = iso(results["startedAt"]) if results["startedAt"] else None
    results["finishedAt"] = iso(results["finishedAt"]) if results["finishedAt"] else None
    return {
        "productName": display_names.get(item["product"], item["product"]),
        "productStatus": item["status"],
        "createdAt": iso(item["created_at"]),
        **results,
    }


def job_product_result(item: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    results = _product_results(item, dry_run)
    results["startedAt"] = epoch_ms(results["startedAt"])
    results["finishedAt"] = epoch_ms(results["finishedAt"])
    return {"product": item["product"], "status": item["status"], **results}
