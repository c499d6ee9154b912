"""What every role is: a name, `run(session, stopping)` called once per broker session,
and a `RoleState` that health reads.

A role never lets its own trouble end the session: it classifies every failure
(worker.errors.classify) and handles it itself. Only a broker failure (the channel or
connection is gone) ends its `run`, and the supervisor then starts a new session for
every role.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from worker import metrics
from worker.amqp import ConsumerChannel, Publisher, Topology


class SessionLostError(Exception):
    """The broker channel or connection of this session is gone."""


@dataclass
class Session:
    """One broker connection's worth of shared things."""

    publisher: Publisher
    topology: Topology
    lost: asyncio.Event
    open_channel: Callable[[], Awaitable[ConsumerChannel]]


class RoleState:
    """Progress of a role, exported as metrics for `deletion-worker health`.

    `pending_since` is when the role took work it has not settled yet (None when it
    holds none); `last_progress` is when it last settled some, or found none to do.
    A role holding work with no progress for long is stalled; one waiting for a
    dependency says which (`waiting_for`), so that an outage is not taken for a stall."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.progress = 0
        self.last_progress = time.time()
        self.pending_since: float | None = None
        self.waiting_for: str | None = None
        self._export()

    def busy(self) -> None:
        if self.pending_since is None:
            self.pending_since = time.time()
            self._export()

    def advanced(self, units: int = 1) -> None:
        self.progress += units
        self.last_progress = time.time()
        metrics.ROLE_PROGRESS.labels(self.name).inc(units)
        self._export()

    def idle(self) -> None:
        """Nothing in hand, nothing to do: as good as progress."""
        self.pending_since = None
        self.last_progress = time.time()
        self._export()

    def settled(self, units: int) -> None:
        """The work in hand is done (some units of it)."""
        self.pending_since = None
        self.advanced(units)

    def waiting(self, dependency: str | None) -> None:
        if dependency != self.waiting_for:
            if self.waiting_for is not None:
                metrics.ROLE_WAITING.labels(self.name, self.waiting_for).set(0)
            if dependency is not None:
                metrics.ROLE_WAITING.labels(self.name, dependency).set(1)
            self.waiting_for = dependency

    def _export(self) -> None:
        metrics.ROLE_LAST_PROGRESS.labels(self.name).set(self.last_progress)
        metrics.ROLE_PENDING_SINCE.labels(self.name).set(self.pending_since or 0)


class Role(ABC):
    """A unit of work a process runs; many copies of a role may run anywhere."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = RoleState(name)

    @property
    def consumes(self) -> str | None:
        """The queue it consumes (health expects a consumer on it), if any."""
        return None

    @abstractmethod
    async def run(self, session: Session, stopping: asyncio.Event) -> None:
        """Work until `stopping` is set (finish what is in hand) or the session is lost
        (raise SessionLostError or a broker error)."""

    def summary(self) -> dict[str, int]:
        """Counts for the process's one-line summary at exit."""
        return {}

    async def close(self) -> None:
        """Release what the role holds beyond a session (handler connections)."""
        return
