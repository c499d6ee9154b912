"""Queue state for operators: depth and consumers of every queue of the topology."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from worker.amqp import Connection, Topology
from worker.amqp.admin import queue_depths


@dataclass
class QueueState:
    name: str
    kind: str  # main | retry (a tier) | dead
    exists: bool
    ready: int | None = None
    consumers: int | None = None
    unacked: int | None = None

    @property
    def warning(self) -> str | None:
        if not self.exists:
            return "missing: no worker has declared it yet"
        if self.kind == "main" and (self.ready or 0) > 0 and self.consumers == 0:
            return "work waiting and no consumer"
        if self.kind == "dead" and (self.ready or 0) > 0:
            return "dead letters: see `deletion-worker dlq list`"
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.name, "kind": self.kind, "exists": self.exists, "ready": self.ready,
            "unacked": self.unacked, "consumers": self.consumers, "warning": self.warning,
        }  # fmt: skip


def _kinds(topology: Topology) -> list[tuple[str, str]]:
    queues = [
        (name, kind)
        for names in topology.consumer_queues()
        for name, kind in zip(names.all(), ("main", "dead"), strict=True)
    ]
    return queues + [(name, "retry") for name in topology.retry_tier_names()]


async def queue_states(connection: Connection, topology: Topology) -> list[QueueState]:
    """Ready messages and consumers by passive declare: works without the management plugin."""
    kinds = _kinds(topology)
    depths = await queue_depths(connection, [name for name, _ in kinds])
    return [
        QueueState(depth.name, kind, depth.exists, depth.ready, depth.consumers)
        for depth, (_, kind) in zip(depths, kinds, strict=True)
    ]


async def add_unacked(states: list[QueueState], management_url: str, amqp_url: str) -> None:
    """Unacknowledged counts come only from the management API, when it is reachable."""
    vhost = urlsplit(amqp_url).path.lstrip("/") or "/"
    parts = urlsplit(management_url)
    auth = (parts.username or "guest", parts.password or "guest")
    base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
    async with httpx.AsyncClient(base_url=base, auth=auth, timeout=5) as client:
        for state in states:
            if not state.exists:
                continue
            answer = await client.get(f"/api/queues/{quote(vhost, safe='')}/{quote(state.name, safe='')}")
            if answer.status_code == 200:
                state.unacked = answer.json().get("messages_unacknowledged")
