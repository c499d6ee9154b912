"""schemas/asyncapi.yaml is what the generator makes now, names what the topology
declares, and passes the official AsyncAPI parser (run under Node)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from schemas.asyncapi import ASYNCAPI_FILE, document, render
from schemas.events import is_event_type
from tests.node import NPM_TIMEOUT, node_and_npm, npm_ci
from worker.amqp.topology import ATTEMPT_HEADER, DEAD_AT_HEADER, ERROR_HEADER, ORIGIN_HEADER, Topology

VALIDATOR = Path(__file__).resolve().parent / "asyncapi_validate"
STALE = "schemas/asyncapi.yaml is stale: run `python -m schemas.asyncapi`"

# The product channels' parameter, used as a product's name: the topology then names the
# product queues exactly as the document writes them.
PRODUCT = "{product}"
TOPOLOGY = Topology("deletion", (PRODUCT,))
# Queues the topology declares whose messages have no model in schemas/ yet, so the
# document cannot describe them. Give the message a model, describe the queue, and take
# it off this list.
NOT_YET_DESCRIBED: set[str] = set()


def test_asyncapi_file_is_up_to_date() -> None:
    assert ASYNCAPI_FILE.exists(), "schemas/asyncapi.yaml missing: run `python -m schemas.asyncapi`"
    assert ASYNCAPI_FILE.read_text(encoding="utf-8") == render(), STALE


def _addresses(template: str, values: dict[str, list[str]]) -> list[str]:
    """Every name `template` stands for, its {parameters} replaced by each of their values."""
    found = [template]
    for name, choices in values.items():
        found = [address.replace(f"{{{name}}}", choice) for address in found for choice in choices]
    return found


def _values(channel: dict[str, Any], **given: list[str]) -> dict[str, list[str]]:
    parameters: dict[str, dict[str, Any]] = channel.get("parameters", {})
    return {name: given.get(name) or parameter["enum"] for name, parameter in parameters.items()}


def test_channels_are_named_as_the_topology_names_them() -> None:
    queues = {name for names in TOPOLOGY.consumer_queues() for name in names.all()} - NOT_YET_DESCRIBED
    exchanges = {TOPOLOGY.products_exchange, TOPOLOGY.events_exchange, *TOPOLOGY.retry_tier_names()}
    delays = [str(delay) for delay in TOPOLOGY.retry_delays_ms]
    seen_queues: set[str] = set()
    seen_exchanges: set[str] = set()
    for key, channel in document()["channels"].items():
        address: str = channel["address"]
        placeholders = {part.split("}")[0] for part in address.split("{")[1:]}
        assert placeholders == set(channel.get("parameters", {})), f"{key}: parameters differ from the address"
        binding = channel["bindings"]["amqp"]
        values = _values(channel, product=[PRODUCT], delayMs=delays)
        if binding["is"] == "queue":
            assert binding["queue"]["name"] == address, key
            names = _addresses(address, values)
            assert not set(names) & NOT_YET_DESCRIBED, f"{key} is described now: take it off NOT_YET_DESCRIBED"
            assert set(names) <= queues, f"{key}: {names} are not queues of the topology"
            seen_queues.update(names)
            continue
        exchange = binding["exchange"]
        names = _addresses(exchange["name"], values)
        assert set(names) <= exchanges, f"{key}: {names} are not exchanges of the topology"
        seen_exchanges.update(names)
        if exchange["name"] == TOPOLOGY.products_exchange:
            assert address == PRODUCT, "dispatch routes a task by its product's name"
        elif exchange["name"] == TOPOLOGY.events_exchange:
            routing_keys = _addresses(address, _values(channel, product=["sessions"]))
            assert all(is_event_type(routing_key) for routing_key in routing_keys), f"{key}: {routing_keys}"
        else:
            assert exchange["type"] == "fanout", key
            assert address == exchange["name"], "a retry tier is named by its fanout exchange"
    assert seen_queues == queues, f"queues without a channel: {sorted(queues - seen_queues)}"
    assert seen_exchanges == exchanges, f"exchanges without a channel: {sorted(exchanges - seen_exchanges)}"


def test_headers_and_examples_match_the_worker() -> None:
    schemas = document()["components"]["schemas"]
    assert {ERROR_HEADER, ORIGIN_HEADER, DEAD_AT_HEADER, ATTEMPT_HEADER} <= set(
        schemas["DeadLetterHeaders"]["properties"]
    )
    assert {ERROR_HEADER, ATTEMPT_HEADER} <= set(schemas["RetryHeaders"]["properties"])
    examples = document()["channels"]["retryTiers"]["parameters"]["delayMs"]["examples"]
    assert {int(example) for example in examples} <= set(TOPOLOGY.retry_delays_ms)


def _installed_parser() -> str | None:
    try:
        manifest = (VALIDATOR / "node_modules" / "@asyncapi" / "parser" / "package.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    version: str = json.loads(manifest)["version"]
    return version


@pytest.mark.timeout(NPM_TIMEOUT + 120)
def test_asyncapi_file_passes_the_official_parser() -> None:
    node, npm = node_and_npm("validate schemas/asyncapi.yaml with @asyncapi/parser")
    pinned = json.loads((VALIDATOR / "package.json").read_text(encoding="utf-8"))["dependencies"]["@asyncapi/parser"]
    # Installed when missing, and again when package.json pins another version than node_modules holds.
    if _installed_parser() != pinned:
        npm_ci(npm, VALIDATOR)
    result = subprocess.run(
        [node, "validate.mjs", str(ASYNCAPI_FILE)],
        cwd=VALIDATOR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"the AsyncAPI parser found errors:\n{result.stdout}\n{result.stderr}"
