"""What a claimed delivery sends, and how it is signed.

- A status callback of an OpenDSR request (a `status_callback_urls` entry of the
  event's job): the request's status in the body the spec defines, signed with the
  processor's certificate key (worker.opendsr.signing).
- Anything else: the lifecycle event itself, HMAC-signed with every active secret of
  its subscription, or of its project's callbacks (worker.webhooks.signing).

A delivery that cannot be signed is refused with the reason (the caller dead-letters
it): a replay after the cause is fixed sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from worker.opendsr.protocol import callback_body, callback_status
from worker.opendsr.signing import ProcessorSigner
from worker.roles.notify_outcomes import UNSIGNABLE_CALLBACK
from worker.store.opendsr import OpenDsrRequestRow, callback_targets
from worker.store.webhook_deliveries import ClaimedDelivery
from worker.webhooks.crypto import SecretBox, SecretKeyError
from worker.webhooks.signing import signed_headers

NO_CERTIFICATE = (
    "OpenDSR status callback: no processor certificate to sign with; set DELETION_OPENDSR_CERTIFICATE_FILE"
    " and DELETION_OPENDSR_PRIVATE_KEY_FILE, then `deletion-worker dlq replay`"
)


@dataclass(frozen=True)
class Prepared:
    delivery: ClaimedDelivery
    body: bytes
    headers: dict[str, str]


class DeliverySigner:
    def __init__(self, box: SecretBox, opendsr: ProcessorSigner | None) -> None:
        self.box = box
        self.opendsr = opendsr

    async def prepare(
        self, connection: asyncpg.Connection, claimed: list[ClaimedDelivery]
    ) -> tuple[list[Prepared], list[tuple[ClaimedDelivery, str]]]:
        """(ready to send, refused with a reason)."""
        events = {d.id: orjson.loads(d.event) for d in claimed if d.subscription_id is None}
        job_ids = sorted({int(event["jobId"]) for event in events.values()})
        requests = await callback_targets(connection, job_ids) if job_ids else {}
        ready: list[Prepared] = []
        refused: list[tuple[ClaimedDelivery, str]] = []
        for delivery in claimed:
            event = events.get(delivery.id)
            request = requests.get(int(event["jobId"])) if event is not None else None
            if event is not None and request is not None and delivery.url in request.status_callback_urls:
                outcome = self._status_callback(delivery, event, request)
            else:
                outcome = self._webhook(delivery)
            if isinstance(outcome, Prepared):
                ready.append(outcome)
            else:
                refused.append((delivery, outcome))
        return ready, refused

    def _status_callback(
        self, delivery: ClaimedDelivery, event: dict[str, Any], request: OpenDsrRequestRow
    ) -> Prepared | str:
        if callback_status(event) is None:
            return f"OpenDSR status callback: {delivery.event_type} changes no request status"
        if self.opendsr is None:
            return NO_CERTIFICATE
        body = callback_body(event, request, delivery.url)
        return Prepared(delivery, body, self.opendsr.headers(body))

    def _webhook(self, delivery: ClaimedDelivery) -> Prepared | str:
        try:
            secrets = [self.box.open(sealed) for sealed in delivery.sealed_secrets]
        except SecretKeyError as error:
            return str(error)
        if not secrets:
            return UNSIGNABLE_CALLBACK if delivery.subscription_id is None else "no active signing secret"
        headers = signed_headers(delivery.event_id, delivery.event_type, secrets, delivery.event)
        return Prepared(delivery, delivery.event, headers)
