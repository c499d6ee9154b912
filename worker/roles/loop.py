"""A role that works in rounds (dispatch, maintenance, the reconciler): `tick` does one
round and says whether there is more to do at once; otherwise the role waits for its
interval (or a wake-up). A failed round is classified like any other failure: the
role backs off (capped) and tries again, and never takes the session down with it."""

from __future__ import annotations

import asyncio
from abc import abstractmethod

import structlog

from worker.aio import sleep_unless
from worker.amqp import is_broker_failure
from worker.errors import FailureClass, classify, describe
from worker.retry import RECONNECT_POLICY
from worker.roles.base import Role, Session

log = structlog.get_logger(__name__)


class PeriodicRole(Role):
    def __init__(self, name: str, interval: float) -> None:
        super().__init__(name)
        self.interval = interval
        self.rounds = 0

    @abstractmethod
    async def tick(self, session: Session) -> bool:
        """One round; True when there may be more to do right away."""

    async def wait_for_work(self, stopping: asyncio.Event) -> None:
        await sleep_unless(stopping, self.interval)

    async def run(self, session: Session, stopping: asyncio.Event) -> None:
        failures = 0
        while not stopping.is_set() and not session.lost.is_set():
            self.state.busy()
            try:
                more = await self.tick(session)
            except Exception as error:
                if is_broker_failure(error):
                    raise
                failures += 1
                failure = classify(error)
                delay = RECONNECT_POLICY.delay_ms(failures) / 1000
                if failure in (FailureClass.UNAVAILABLE, FailureClass.CONTENTION):
                    self.state.waiting("database" if failure is FailureClass.UNAVAILABLE else None)
                    log.warning("round_deferred", role=self.name, error=describe(error), retry_in_s=round(delay, 2))
                else:
                    log.exception("round_failed", role=self.name, error=describe(error))
                await sleep_unless(stopping, delay)
                continue
            failures = 0
            self.rounds += 1
            self.state.waiting(None)
            if more:
                self.state.advanced()
                continue
            self.state.idle()
            await self.wait_for_work(stopping)
