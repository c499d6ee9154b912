"""Writes the JSON Schema of every message model to schemas/json/ (run: python -m schemas.export).

The files are part of the contract for producers and consumers in other languages; a
test fails when they differ from what the models generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.events import LifecycleEvent
from schemas.messages import DeletionRequest, ProductAck, ProductTask
from schemas.webhooks import WebhookDelivery

JSON_DIR = Path(__file__).resolve().parent / "json"

EXPORTED: dict[str, type[BaseModel]] = {
    "deletion-request": DeletionRequest,
    "product-task": ProductTask,
    "product-ack": ProductAck,
    "lifecycle-event": LifecycleEvent,
    "webhook-delivery": WebhookDelivery,
}


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(by_alias=True)
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[Path, str]:
    return {JSON_DIR / f"{name}.schema.json": render(model) for name, model in EXPORTED.items()}


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    for path, text in expected_files().items():
        path.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
