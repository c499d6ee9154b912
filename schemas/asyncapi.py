"""Writes the AsyncAPI 3.0 description of the broker interface to schemas/asyncapi.yaml
(run: python -m schemas.asyncapi).

The document is generated from the message models, never edited by hand: a test fails
when the file differs from what this module makes, checks its names against
worker.amqp.topology (this package sits below `worker` and cannot import it) and
validates it with the official AsyncAPI parser.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from schemas.events import JOB_EVENT_TYPES, PRODUCT_EVENT_STATUSES, LifecycleEvent
from schemas.messages import DeletionRequest, ProductAck, ProductTask
from schemas.webhooks import WebhookDelivery

ASYNCAPI_FILE = Path(__file__).resolve().parent / "asyncapi.yaml"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
PREFIX = "deletion"  # DELETION_TOPOLOGY_PREFIX's default
BINDING_VERSION = "0.3.0"  # the AMQP bindings version of AsyncAPI 3.0
SCHEMA_REF = "#/components/schemas/{model}"
MODELS: tuple[type[BaseModel], ...] = (DeletionRequest, ProductTask, ProductAck, LifecycleEvent, WebhookDelivery)

JSON = dict[str, Any]
# The consumer queues, by channel key: their address and message.
CONSUMER_QUEUES = {
    "requests": (f"{PREFIX}.requests", "DeletionRequest"),
    "productQueue": (f"{PREFIX}.product.{{product}}", "ProductTask"),
    "acks": (f"{PREFIX}.acks", "ProductAck"),
    "webhooks": (f"{PREFIX}.webhooks", "WebhookDelivery"),
}

INFO = f"""\
How the deletion worker talks over RabbitMQ. Every name starts with the topology prefix,
`DELETION_TOPOLOGY_PREFIX` (here its default, `{PREFIX}`); a deployment with another
prefix has the same channels under its own names.

Queues are durable quorum queues; the worker publishes persistent JSON messages
(`application/json`) with publisher confirms. Messages may carry fields of their own
beyond those described: they are kept and ignored. Delivery is at least once throughout.

Every consumer queue `X` has a dead-letter queue `X.dead` holding what could not be
processed: the body unchanged, the reason in headers (`deletion-worker dlq` lists,
replays and purges them). Transient failures wait in retry tiers before going back to
their queue.
"""

DEAD_LETTER_HEADERS: JSON = {
    "type": "object",
    "description": "The original message's headers, and these. A message the broker dead-lettered on its own "
    "(its queue's delivery limit reached: it kept failing or crashing its consumer) has RabbitMQ's `x-death` "
    "instead of the `x-deletion-` headers.",
    "properties": {
        "x-deletion-error": {"type": "string", "maxLength": 1000, "description": "Why it could not be processed."},
        "x-deletion-origin-queue": {"type": "string", "description": "The queue it was consumed from."},
        "x-deletion-dead-at": {"type": "integer", "description": "When it was dead-lettered, in epoch milliseconds."},
        "x-deletion-attempt": {"type": "integer", "minimum": 1, "description": "Retries made before, if any."},
        "x-death": {"type": "array", "items": {"type": "object"}, "description": "Set by RabbitMQ."},
    },
}
RETRY_HEADERS: JSON = {
    "type": "object",
    "description": "The original message's headers, and these (it keeps them when back in its queue).",
    "properties": {
        "x-deletion-attempt": {"type": "integer", "minimum": 1, "description": "This retry's number."},
        "x-deletion-error": {"type": "string", "maxLength": 1000, "description": "Why the last attempt failed."},
    },
}
# Channel parameters by name; AsyncAPI 3.0 parameters are strings with no schema.
PARAMETERS: dict[str, JSON] = {
    "product": {"description": "A product's name, as configured in the products file.", "examples": ["sessions"]},
    "delayMs": {
        "description": "The tier's delay in milliseconds: doubling from DELETION_RETRY_BASE_MS, ending at "
        "DELETION_RETRY_CAP_MS.",
        "examples": ["500", "1000", "300000"],
    },
    "event": {
        "description": "The last part of the event's `type`.",
        "enum": [event_type.split(".", 1)[1] for event_type in JOB_EVENT_TYPES],
    },
    "status": {"description": "The product's new status.", "enum": list(PRODUCT_EVENT_STATUSES)},
}


def component_schemas() -> JSON:
    """Every model's schema and the definitions they use, each under its own name."""
    schemas: JSON = {}
    for model in MODELS:
        schema = model.model_json_schema(by_alias=True, ref_template=SCHEMA_REF)
        definitions = schema.pop("$defs", {})  # their $refs already point to components/schemas
        for name, definition in [(model.__name__, schema), *definitions.items()]:
            # Models may share a definition (Identity), never give one name to two different ones.
            if schemas.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas are named {name!r}")
    return {**schemas, "DeadLetterHeaders": DEAD_LETTER_HEADERS, "RetryHeaders": RETRY_HEADERS}


def _message(name: str, summary: str, payload: JSON, headers: str | None = None) -> JSON:
    message: JSON = {"name": name, "title": name, "summary": summary, "contentType": "application/json"}
    if headers is not None:
        message["headers"] = {"$ref": SCHEMA_REF.format(model=headers)}
    return {**message, "payload": payload}


def component_messages() -> JSON:
    summaries = {
        "DeletionRequest": "Delete a user's data in every product.",
        "ProductTask": "Delete these identities in one product; may carry chunks of many jobs.",
        "ProductAck": "A product's outcome of one task, per job.",
        "LifecycleEvent": "A job's or a product's status changed.",
        "WebhookDelivery": "A webhook delivery the notify role gave up, to be made again.",
    }
    messages = {name: _message(name, text, {"$ref": SCHEMA_REF.format(model=name)}) for name, text in summaries.items()}
    body = "The original body, unchanged"
    retry = "A message waiting for its next attempt."
    messages["RetryCopy"] = _message("RetryCopy", retry, {"description": body}, "RetryHeaders")
    for _, original in CONSUMER_QUEUES.values():
        # Not the model's schema: a message dead-lettered for not matching it is kept as it came.
        payload = {"description": f"{body}: a {original}, unless it was refused for not being one."}
        summary = f"A {original} that could not be processed."
        messages[f"Dead{original}"] = _message(f"Dead{original}", summary, payload, "DeadLetterHeaders")
    return messages


def _channel(address: str, message: str, description: str, exchange: tuple[str, str] | None = None) -> JSON:
    """A queue's channel, or with `exchange` (name, type) one of an exchange, routed by the address."""
    channel: JSON = {
        "address": address,
        "description": description,
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
    }
    if placeholders := [part.split("}")[0] for part in address.split("{")[1:]]:
        channel["parameters"] = {name: PARAMETERS[name] for name in placeholders}
    if exchange is None:
        amqp = {"is": "queue", "queue": {"name": address, "durable": True, "exclusive": False, "autoDelete": False}}
    else:
        name, kind = exchange
        amqp = {"is": "routingKey", "exchange": {"name": name, "type": kind, "durable": True, "autoDelete": False}}
    return {**channel, "bindings": {"amqp": {**amqp, "bindingVersion": BINDING_VERSION}}}


def channels() -> JSON:
    requests, product, acks, webhooks = (
        CONSUMER_QUEUES[key][0] for key in ("requests", "productQueue", "acks", "webhooks")
    )
    events, retry = f"{PREFIX}.events", f"{PREFIX}.retry.{{delayMs}}ms"
    default = "published to the default exchange"
    found = {
        "requests": _channel(requests, "DeletionRequest", f"Deletion requests from upstream services, {default}."),
        "productTasks": _channel(
            "{product}",
            "ProductTask",
            f"Tasks for products, routed by `{PREFIX}.products` to the queue of the product named by the routing key.",
            (f"{PREFIX}.products", "direct"),
        ),
        "productQueue": _channel(
            product,
            "ProductTask",
            f"A product's queue, bound to `{PREFIX}.products` with the product's name; built-in handlers and "
            "external product services consume it.",
        ),
        "acks": _channel(acks, "ProductAck", f"Products' acknowledgements (built-in or external), {default}."),
        "webhooks": _channel(
            webhooks,
            "WebhookDelivery",
            f"Given-up webhook deliveries that `deletion-worker dlq replay` put back, {default}.",
        ),
    }
    for key, (queue, original) in CONSUMER_QUEUES.items():
        description = f"Dead letters of `{queue}`, {default} by the worker, or dead-lettered by the broker."
        found[f"{key}Dead"] = _channel(f"{queue}.dead", f"Dead{original}", description)
    found["jobEvents"] = _channel(
        "job.{event}",
        "LifecycleEvent",
        f"Job events on the topic exchange `{events}`, the routing key being their `type`: subscribers bind queues "
        "of their own (`job.*`, `#`). An event nobody subscribed to is dropped.",
        (events, "topic"),
    )
    found["productEvents"] = _channel(
        "product.{product}.{status}",
        "LifecycleEvent",
        f"Events of a product's part of a job, on `{events}` like job events (bind `product.#`).",
        (events, "topic"),
    )
    found["retryTiers"] = _channel(
        retry,
        "RetryCopy",
        "Internal to the worker: a retry tier, a fanout exchange and a queue of this name. A copy is published to "
        "the exchange with its origin queue's name as routing key; when its delay is up the queue dead-letters it "
        "to the default exchange, which puts it back in its origin queue.",
        (retry, "fanout"),
    )
    return found


def operations() -> JSON:
    described = channels()

    def operation(action: str, channel: str, summary: str, **binding: Any) -> JSON:
        amqp = {"deliveryMode": 2, "mandatory": True, **binding} if action == "send" else {"ack": True}
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in described[channel]["messages"]],
            "bindings": {"amqp": {**amqp, "bindingVersion": BINDING_VERSION}},
        }

    return {
        "receiveDeletionRequest": operation("receive", "requests", "Intake turns requests into jobs."),
        "sendProductTask": operation("send", "productTasks", "Dispatch sends each product its part of jobs."),
        "receiveProductTask": operation("receive", "productQueue", "Built-in product handlers carry out tasks."),
        "sendProductAck": operation("send", "acks", "Built-in product handlers report their outcome."),
        "receiveProductAck": operation("receive", "acks", "Acknowledgements settle products' parts of jobs."),
        # An event nobody subscribed to is no error: events are published without `mandatory`.
        "sendJobEvent": operation("send", "jobEvents", "The events relay publishes job events.", mandatory=False),
        "sendProductEvent": operation(
            "send", "productEvents", "The events relay publishes product events.", mandatory=False
        ),
        "receiveWebhookDelivery": operation(
            "receive", "webhooks", "The notify role makes a replayed delivery again and sends it."
        ),
        "sendRetryCopy": operation("send", "retryTiers", "A transient failure: try again after a delay."),
        **{
            f"deadLetter{original}": operation("send", f"{key}Dead", f"Dead-letter a {original}.")
            for key, (_, original) in CONSUMER_QUEUES.items()
        },
    }


def document() -> JSON:
    version = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "deletion-worker", "version": version, "description": INFO},
        "defaultContentType": "application/json",
        "channels": channels(),
        "operations": operations(),
        "components": {"schemas": component_schemas(), "messages": component_messages()},
    }


class _Dumper(yaml.SafeDumper):
    # Shared dicts are written out where they are used: anchors and aliases would only puzzle a reader.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # Multi-line prose as a block, line breaks as written; anything else as PyYAML chooses.
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _text)


def render() -> str:
    text = yaml.dump(document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    return "# Generated from the models by `python -m schemas.asyncapi`: do not edit.\n" + text


def main() -> int:
    ASYNCAPI_FILE.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {ASYNCAPI_FILE}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
