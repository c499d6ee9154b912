"""Due dates: when a deletion must be done, from the regulation a request names.

A request may give its own `dueAt`; otherwise a job requested under a regulation is
due that regulation's deadline after it was received (DELETION_REGULATION_DEADLINES,
defaults in worker.settings). A job with neither has no due date. Deadlines are
calendar time from receipt: the statutory clocks (GDPR art. 12(3) one month, CCPA 45
days, LGPD 15 days, PIPEDA 30 days) as a fixed number of days an operator can change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.messages import Regulation
from worker.settings import Settings


@dataclass(frozen=True)
class DuePolicy:
    settings: Settings

    @property
    def at_risk_margin(self) -> timedelta:
        return self.settings.due_at_risk_margin

    def due_at(self, regulation: Regulation | None, explicit: datetime | None) -> datetime | None:
        if explicit is not None:
            return explicit
        if regulation is None:
            return None
        return datetime.now(UTC) + self.settings.deadline(regulation)


def from_epoch_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)
