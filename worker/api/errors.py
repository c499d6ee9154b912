"""Every error the API answers is JSON: {"error": "<code>", "message": "<what to do>"}; under
/opendsr, the OpenDSR spec's error object instead (worker.opendsr.protocol)."""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from worker.errors import (
    ConflictError,
    DeletionWorkerError,
    FailureClass,
    NotFoundError,
    RefusedError,
    TransientError,
    UnavailableError,
    UsageError,
    classify,
    describe,
)
from worker.opendsr.protocol import error_document

log = structlog.get_logger(__name__)

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    501: "not_implemented",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES.get(status, "error")
        self.message = message


# OpenDSR clients read errors in the shape of their spec, whichever part of the API refused.
OPENDSR_PREFIX = "/opendsr"


def error_response(
    status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None, path: str = ""
) -> JSONResponse:
    code = code or STATUS_CODES.get(status, "error")
    if path == OPENDSR_PREFIX or path.startswith(OPENDSR_PREFIX + "/"):
        return JSONResponse(error_document(status, message, code), status_code=status, headers=headers)
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def not_found(what: str) -> ApiError:
    # The same answer for "absent" and "belongs to another organization": no hint either way.
    return ApiError(404, f"{what} not found")


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    headers = {"Retry-After": "5"} if error.status == 503 else None
    return error_response(error.status, error.message, error.code, headers, request.url.path)


# The HTTP status of each kind of the service's own errors (most specific first).
DOMAIN_STATUS: tuple[tuple[type[DeletionWorkerError], int, str], ...] = (
    (NotFoundError, 404, "not_found"),
    (ConflictError, 422, "conflict"),
    (RefusedError, 400, "refused"),
    (UsageError, 400, "bad_request"),
    (UnavailableError, 503, "unavailable"),
    (TransientError, 503, "unavailable"),
)


async def _domain_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DeletionWorkerError)
    for kind, status, code in DOMAIN_STATUS:
        if isinstance(error, kind):
            headers = {"Retry-After": "5"} if status == 503 else None
            # Our own messages never quote input values (worker.errors.describe).
            return error_response(status, describe(error), code, headers, request.url.path)
    log.error("api_unexpected_error", error=describe(error))
    return error_response(
        500, "internal error; the request was not carried out, try again", "internal", path=request.url.path
    )


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method in {"POST", "PUT"} and content_type != "application/json":
        return error_response(415, "send the body as JSON with Content-Type: application/json", path=request.url.path)
    if any(item.get("type") == "json_invalid" for item in problems):
        return error_response(400, "the body is not valid JSON", path=request.url.path)
    parts = []
    for item in problems[:5]:
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
        message = "cannot be set here" if item.get("type") == "extra_forbidden" else item.get("msg", "invalid")
        parts.append(f"{location}: {message}")
    if len(problems) > 5:
        parts.append(f"and {len(problems) - 5} more")
    # Never the input itself: it may be personal data.
    return error_response(400, "; ".join(parts) or "invalid request", path=request.url.path)


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Starlette's own 405 names only the
    first matching route's methods, while GET and DELETE of a path are separate routes."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    message = {404: "no such route", 405: "method not allowed on this route"}.get(error.status_code, str(error.detail))
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return error_response(error.status_code, message, headers=headers, path=request.url.path)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    if classify(error) is FailureClass.UNAVAILABLE:
        # Postgres gone mid-request (a restart, a failover): the commit may or may not have
        # happened, so the answer is "retry", which the Idempotency-Key makes safe.
        log.warning("api_database_unavailable", error=describe(error))
        return error_response(
            503,
            "the database cannot be reached; retry in a few seconds with the same Idempotency-Key",
            "unavailable",
            {"Retry-After": "5"},
            request.url.path,
        )
    log.error("api_unexpected_error", error=describe(error))
    return error_response(
        500, "internal error; the request was not carried out, try again", "internal", path=request.url.path
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DeletionWorkerError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
