"""Large JSON bodies parsed and validated in one pass, with the garbage collector paused.

FastAPI parses a body with `json.loads` and then validates the Python objects: for a
100,000-identity work order (4.6 MB) that is two passes over 300,000 new objects, and
allocating that many tracked objects sets off the cyclic garbage collector over and
over, each time walking the process's whole heap. Measured in the API process: 0.5-0.6 s
of the 1.0 s a work order took to be accepted. Pydantic's `model_validate_json` does
both in one pass, and the objects it builds (dicts, lists, strings) cannot form cycles,
so pausing the collector while they are built loses nothing.

The route then declares its body through `openapi_extra` (FastAPI's documented way for
a body the endpoint reads itself), and `document_bodies` adds the models to the
document's components, so /openapi.json describes it as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from worker.api.errors import ApiError
from worker.api.limits import declared_size
from worker.api.state import ApiState
from worker.gc_pause import gc_paused

Model = TypeVar("Model", bound=BaseModel)

_COMPONENT_REF = "#/components/schemas/{model}"


def _is_json(content_type: str) -> bool:
    # The media types FastAPI itself parses as JSON: application/json and application/*+json.
    media_type = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def read_json_body(request: Request, timeout: float) -> bytes:
    """The raw body of a JSON request, or the RequestValidationError FastAPI would have
    raised (the API's error handler turns it into a 400, or a 415 for one not JSON).

    The body is read while its share of the parse budget is held (worker.api.limits): one
    that has not arrived within `timeout` seconds is refused with 408, so a client
    trickling its upload cannot keep the budget from everyone else."""
    try:
        body = await asyncio.wait_for(request.body(), timeout)
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout:g} s") from None
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    if not _is_json(request.headers.get("content-type", "")):
        raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",), "msg": "not JSON"}])
    return body


@asynccontextmanager
async def budgeted_json_body(state: ApiState, request: Request) -> AsyncIterator[bytes]:
    """The raw body of a large JSON request, read only once its declared size fits the
    parse budget, which stays held while the caller parses and stores it: ten large
    uploads at once each held their body while waiting their turn to parse."""
    settings = state.settings
    async with state.body_budget.reserve(declared_size(request.headers, settings.api_max_body_bytes)):
        yield await read_json_body(request, settings.api_parse_wait)


def validate_json_body(body: bytes, model: type[Model]) -> Model:
    """`body` as `model`, in one pass with the collector paused, or a RequestValidationError."""
    try:
        with gc_paused():
            return model.model_validate_json(body)
    except ValidationError as error:
        # Never the input in the errors: it may be personal data.
        problems = error.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError([{**p, "loc": ("body", *p["loc"])} for p in problems]) from None


def json_body_openapi(model: type[BaseModel], description: str) -> dict[str, Any]:
    """`openapi_extra` for a route that reads `model` from its body with parse_json_body."""
    schema = {"$ref": _COMPONENT_REF.format(model=model.__name__), "description": description}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def document_bodies(app: FastAPI, *models: type[BaseModel]) -> None:
    """Adds each model (and the models it uses) to the OpenAPI components."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template=_COMPONENT_REF)
                for name, definition in [*schema.pop("$defs", {}).items(), (model.__name__, schema)]:
                    # A model of the same name that FastAPI documented already must be this one.
                    if schemas.setdefault(name, definition) != definition:
                        raise RuntimeError(f"two different schemas named {name} in the API document")
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document
