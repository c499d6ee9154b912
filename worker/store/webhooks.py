"""Webhook subscriptions, their signing secrets and a project's callback secret
(migrations/0009). The fan-out of relayed events into deliveries: worker.store.
webhook_fanout.

Secrets arrive and leave sealed (worker.webhooks.crypto): this module never sees one in
plaintext. A rotation keeps at most two active per owner: the newest stays valid for a
grace time beside the one just made, any older one ends at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from worker.errors import RefusedError

ACTIVE = "(retire_at IS NULL OR retire_at > now())"


@dataclass(frozen=True)
class Subscription:
    id: uuid.UUID
    project_id: int
    url: str
    event_types: list[str]
    description: str
    created_at: datetime
    active_secrets: int
    # While a rotation is under way: when the older secret stops signing.
    rotation_ends_at: datetime | None


@dataclass(frozen=True)
class SecretOwner:
    """A subscription's secrets, or a project's callback secret."""

    subscription_id: uuid.UUID | None = None
    callback_project_id: int | None = None

    def __post_init__(self) -> None:
        if (self.subscription_id is None) == (self.callback_project_id is None):
            raise ValueError("a secret belongs to a subscription or to a project's callbacks")

    @property
    def condition(self) -> str:
        """SQL naming the owner's rows, with its id as $1."""
        if self.subscription_id is not None:
            return "subscription_id = $1"
        return "callback_project_id = $1"

    @property
    def key(self) -> uuid.UUID | int:
        if self.subscription_id is not None:
            return self.subscription_id
        assert self.callback_project_id is not None
        return self.callback_project_id


SUBSCRIPTION_SELECT = f"""
SELECT s.id, s.project_id, s.url, s.event_types, s.description, s.created_at,
       (SELECT count(*) FROM webhook_secrets k WHERE k.subscription_id = s.id AND {ACTIVE}) AS active_secrets,
       (SELECT min(retire_at) FROM webhook_secrets k WHERE k.subscription_id = s.id AND retire_at > now())
           AS rotation_ends_at
FROM webhook_subscriptions s
"""  # noqa: S608 - constant text


def _subscription(row: asyncpg.Record) -> Subscription:
    return Subscription(
        row["id"],
        row["project_id"],
        row["url"],
        list(row["event_types"]),
        row["description"],
        row["created_at"],
        row["active_secrets"],
        row["rotation_ends_at"],
    )


MAX_SUBSCRIPTIONS = 100  # per project: every relayed event is matched against each


class TooManySubscriptionsError(RefusedError):
    def __init__(self) -> None:
        super().__init__(f"a project has at most {MAX_SUBSCRIPTIONS} webhooks; remove one first")


async def create_subscription(
    connection: asyncpg.Connection,
    project_id: int,
    url: str,
    event_types: list[str],
    sealed_secret: bytes,
    *,
    description: str = "",
    created_by: str | None = None,
) -> Subscription:
    """TooManySubscriptionsError when the project has MAX_SUBSCRIPTIONS already (from the
    API and the CLI alike)."""
    async with connection.transaction():
        count = await connection.fetchval(
            "SELECT count(*) FROM webhook_subscriptions WHERE project_id = $1", project_id
        )
        if count >= MAX_SUBSCRIPTIONS:
            raise TooManySubscriptionsError
        subscription_id = await connection.fetchval(
            "INSERT INTO webhook_subscriptions (project_id, url, event_types, description, created_by)"
            " VALUES ($1, $2, $3::text[], $4, $5) RETURNING id",
            project_id,
            url,
            event_types,
            description,
            created_by,
        )
        await connection.execute(
            "INSERT INTO webhook_secrets (subscription_id, sealed) VALUES ($1, $2)", subscription_id, sealed_secret
        )
        found = await get_subscription(connection, subscription_id)
    assert found is not None
    return found


async def list_subscriptions(connection: asyncpg.Connection, project_id: int) -> list[Subscription]:
    rows = await connection.fetch(SUBSCRIPTION_SELECT + " WHERE s.project_id = $1 ORDER BY s.created_at", project_id)
    return [_subscription(row) for row in rows]


async def get_subscription(
    connection: asyncpg.Connection, subscription_id: uuid.UUID, project_id: int | None = None
) -> Subscription | None:
    """The subscription, if it exists (and belongs to `project_id`, when given)."""
    row = await connection.fetchrow(
        SUBSCRIPTION_SELECT + " WHERE s.id = $1 AND ($2::bigint IS NULL OR s.project_id = $2)",
        subscription_id,
        project_id,
    )
    return None if row is None else _subscription(row)


async def delete_subscription(
    connection: asyncpg.Connection, subscription_id: uuid.UUID, project_id: int | None = None
) -> bool:
    """Remove it with its secrets and its pending deliveries; False when there was none."""
    deleted = await connection.fetchval(
        "DELETE FROM webhook_subscriptions WHERE id = $1 AND ($2::bigint IS NULL OR project_id = $2) RETURNING id",
        subscription_id,
        project_id,
    )
    return deleted is not None


async def secret_status(connection: asyncpg.Connection, owner: SecretOwner) -> tuple[int, datetime | None]:
    """(active secrets, when the older one of a rotation stops signing)."""
    row = await connection.fetchrow(
        f"SELECT count(*) FILTER (WHERE {ACTIVE}) AS active, min(retire_at) FILTER (WHERE retire_at > now()) AS ends"  # noqa: S608
        f" FROM webhook_secrets WHERE {owner.condition}",
        owner.key,
    )
    assert row is not None
    return int(row["active"]), row["ends"]


async def add_secret(connection: asyncpg.Connection, owner: SecretOwner, sealed: bytes, grace: timedelta) -> None:
    """Rotate: the new secret signs from now on; the newest active one keeps signing
    beside it for `grace` (or less, if it was ending sooner), older ones end now."""
    async with connection.transaction():
        await connection.execute(
            f"DELETE FROM webhook_secrets WHERE {owner.condition} AND retire_at <= now()",  # noqa: S608
            owner.key,
        )
        await connection.execute(
            f"""
            UPDATE webhook_secrets k
            SET retire_at = CASE
                WHEN k.id = (SELECT max(id) FROM webhook_secrets WHERE {owner.condition} AND {ACTIVE})
                THEN least(coalesce(k.retire_at, 'infinity'), now() + $2::interval)
                ELSE now() END
            WHERE {owner.condition} AND {ACTIVE}
            """,  # noqa: S608 - constant text
            owner.key,
            grace,
        )
        column = "subscription_id" if owner.subscription_id is not None else "callback_project_id"
        await connection.execute(
            f"INSERT INTO webhook_secrets ({column}, sealed) VALUES ($1, $2)",  # noqa: S608 - constant text
            owner.key,
            sealed,
        )


async def retire_old_secrets(connection: asyncpg.Connection, owner: SecretOwner) -> int:
    """End a rotation now: every active secret but the newest stops signing."""
    result = await connection.execute(
        f"""
        UPDATE webhook_secrets SET retire_at = now()
        WHERE {owner.condition} AND {ACTIVE}
          AND id < (SELECT max(id) FROM webhook_secrets WHERE {owner.condition} AND {ACTIVE})
        """,  # noqa: S608 - constant text
        owner.key,
    )
    return int(result.split()[-1])


async def active_sealed_secrets(connection: asyncpg.Connection, owner: SecretOwner) -> list[bytes]:
    """The owner's active secrets, sealed, newest first."""
    rows = await connection.fetch(
        f"SELECT sealed FROM webhook_secrets WHERE {owner.condition} AND {ACTIVE} ORDER BY id DESC",  # noqa: S608
        owner.key,
    )
    return [row["sealed"] for row in rows]
