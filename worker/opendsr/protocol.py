"""How OpenDSR words map onto the service's: request types, regulations, identity types,
job statuses; the status callback body; the spec's error object.

Statuses: a job `scheduled` is `pending`, `running` is `in_progress`, `completed` is
`completed`. A `cancelled` job is `cancelled`, and so is a `failed` one: the spec has no
word for a request that could not be carried out, and `cancelled` is its only ending
that does not claim the data is gone (the reason stays visible in the Jobs API and the
work-order view of the job).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, get_args
from uuid import UUID

import orjson

from schemas.messages import Regulation
from schemas.opendsr import (
    IDENTITY_FORMATS,
    SUBJECT_REQUEST_TYPES,
    SUPPORTED_REQUEST_TYPES,
    RequestStatus,
    SubjectIdentity,
)
from schemas.status import JobStatus
from worker.products import ProductsFile

REQUEST_STATUS: dict[str, RequestStatus] = {
    JobStatus.SCHEDULED: "pending",
    JobStatus.RUNNING: "in_progress",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "cancelled",
    JobStatus.CANCELLED: "cancelled",
}
REGULATIONS: tuple[str, ...] = get_args(Regulation)
# The `domain` of an error detail, by HTTP status: which side of the exchange to look at.
ERROR_DOMAINS = {400: "Validation", 401: "Authentication", 404: "Request", 409: "Request", 413: "Validation"}


class RequestRefusedError(Exception):
    """A request the OpenDSR API refuses: `reason` is a short machine word. The message
    never quotes an identity value."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


def error_document(status: int, message: str, reason: str) -> dict[str, Any]:
    """The spec's error body: an error object with the status and one detail."""
    domain = ERROR_DOMAINS.get(status, "Processor" if status >= 500 else "Request")
    detail = {"domain": domain, "reason": reason, "message": message}
    return {"error": {"code": status, "message": message, "errors": [detail]}}


def rfc3339(moment: datetime) -> str:
    """UTC, to the second, with `Z`: the form of the spec's examples."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def request_status(job_status: str) -> RequestStatus:
    return REQUEST_STATUS[job_status]


def check_request_type(request_type: str) -> None:
    if request_type in SUPPORTED_REQUEST_TYPES:
        return
    if request_type in SUBJECT_REQUEST_TYPES:
        raise RequestRefusedError(
            "unsupported_subject_request_type",
            f"subject_request_type {request_type} is not supported by this processor; supported: "
            + ", ".join(SUPPORTED_REQUEST_TYPES),
        )
    raise RequestRefusedError(
        "invalid_subject_request_type",
        "subject_request_type must be one of " + ", ".join(SUBJECT_REQUEST_TYPES),
    )


def regulation_of(text: str) -> Regulation:
    """The service's regulation for the request's `regulation` (case and `-`/`_` aside)."""
    word = text.strip().lower().replace("-", "_")
    for regulation in get_args(Regulation):
        if word == regulation:
            found: Regulation = regulation
            return found
    raise RequestRefusedError(
        "unsupported_regulation",
        f"regulation {text[:40]!r} is not supported; supported: {', '.join(REGULATIONS)}",
    )


def takes_namespace(products: ProductsFile, namespace: str) -> bool:
    """Whether some configured product deletes identities of this namespace."""
    for config in products.products.values():
        if config.namespaces is None or namespace in config.namespaces:
            return True
        if namespace in getattr(config, "statements_by_namespace", {}):
            return True
    return False


class IdentityTable:
    """The settings' identity-type table, cut down to the namespaces some product takes:
    a type no product could delete is refused, not accepted and silently skipped."""

    def __init__(self, table: Mapping[str, str], products: ProductsFile) -> None:
        self.namespaces: dict[tuple[str, str], str] = {}
        for key, namespace in table.items():
            identity_type, _, identity_format = key.partition(":")
            if takes_namespace(products, namespace):
                self.namespaces[(identity_type, identity_format or "raw")] = namespace

    def supported(self) -> list[dict[str, str]]:
        """The discovery document's `supported_identities`."""
        return [{"identity_type": t, "identity_format": f} for t, f in sorted(self.namespaces)]

    def resolve(self, identities: Sequence[SubjectIdentity]) -> list[tuple[str, str]]:
        """(namespace, value) of each identity, each pair once; RequestRefusedError naming the
        first identity type (or format) that has no namespace here."""
        resolved: dict[tuple[str, str], None] = {}
        known_types = {identity_type for identity_type, _ in self.namespaces}
        for identity in identities:
            identity_type, identity_format = identity.identity_type, identity.identity_format.lower()
            namespace = self.namespaces.get((identity_type, identity_format))
            if namespace is None:
                raise self._refusal(identity_type[:64], identity_format[:16], identity_type in known_types)
            # Hex digests match whatever case they were written in.
            value = identity.identity_value if identity_format == "raw" else identity.identity_value.lower()
            resolved[(namespace, value)] = None
        return list(resolved)

    @staticmethod
    def _refusal(identity_type: str, identity_format: str, type_known: bool) -> RequestRefusedError:
        if type_known or identity_format not in IDENTITY_FORMATS:
            return RequestRefusedError(
                "unsupported_identity_format",
                f"identity_format {identity_format!r} is not supported for identity_type {identity_type!r}"
                " (see /opendsr/discovery)",
            )
        return RequestRefusedError(
            "unsupported_identity_type",
            f"identity_type {identity_type!r} is not supported by this processor (see /opendsr/discovery)",
        )


class CallbackRequest(Protocol):
    """What a status callback needs to know of its request (worker.store.opendsr rows)."""

    @property
    def controller_id(self) -> str: ...
    @property
    def subject_request_id(self) -> UUID: ...
    @property
    def expected_completion_time(self) -> datetime: ...


def callback_status(event: Mapping[str, Any]) -> RequestStatus | None:
    """The request status a lifecycle event (schemas.events.LifecycleEvent, as a dict)
    moves its request to, or None for events that change no request status (product
    events, job.at_risk, job.overdue)."""
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type.startswith("job."):
        return None
    return REQUEST_STATUS.get(event_type.removeprefix("job."))


def callback_body(event: Mapping[str, Any], request: CallbackRequest, url: str) -> bytes:
    """The status callback to `url` (one of the request's status_callback_urls) for this
    event, as the exact bytes to sign and send. ValueError for an event that changes no
    request status (check callback_status first)."""
    status = callback_status(event)
    if status is None:
        raise ValueError(f"event type {event.get('type')!r} changes no OpenDSR request status")
    return orjson.dumps(
        {
            "controller_id": request.controller_id,
            "expected_completion_time": rfc3339(request.expected_completion_time),
            "status_callback_url": url,
            "subject_request_id": str(request.subject_request_id),
            "request_status": status,
        }
    )
