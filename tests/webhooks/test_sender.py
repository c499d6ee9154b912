"""The sender: one bounded call to a checked address, classified by its answer."""

from __future__ import annotations

import time

import orjson

from tests.webhook_receiver import Receiver, serve_receiver, unused_port
from worker.webhooks.sender import WebhookSender
from worker.webhooks.signing import new_secret, signed_headers

BODY = orjson.dumps({"eventId": "e1", "type": "job.completed", "jobId": 1})


async def test_outcomes_by_answer() -> None:
    secret = new_secret()
    sender = WebhookSender(timeout=2, allow_private=True)
    try:
        async with serve_receiver(Receiver(secrets=[secret], statuses=[204, 500, 410, 302])) as receiver:
            kinds = []
            for _ in range(4):
                outcome = await sender.send(receiver.url, BODY, signed_headers("e1", "job.completed", [secret], BODY))
                kinds.append((outcome.kind, outcome.status))
            assert kinds == [("delivered", 204), ("retry", 500), ("gone", 410), ("retry", 302)]
            assert receiver.rejected == 0
            # Sent to the checked address, under the URL's own host name.
            local = receiver.url.replace("127.0.0.1", "localhost")
            assert (await sender.send(local, BODY, signed_headers("e1", "x", [secret], BODY))).kind == "retry"
            assert receiver.raw[-1][1]["host"] == local.split("/")[2]
            assert receiver.raw[-1][1]["deletion-webhook-id"] == "e1"
    finally:
        await sender.close()


async def test_a_dead_or_silent_endpoint_is_a_retry_within_the_timeout() -> None:
    sender = WebhookSender(timeout=0.5, allow_private=True)
    try:
        refused = await sender.send(f"http://127.0.0.1:{unused_port()}/hook", BODY, {})
        assert (refused.kind, refused.status) == ("retry", None)
        async with serve_receiver(Receiver(hang_until=time.monotonic() + 5)) as receiver:
            started = time.monotonic()
            silent = await sender.send(receiver.url, BODY, {})
            assert silent.kind == "retry"
            assert "no answer" in silent.detail
            assert time.monotonic() - started < 1.5
    finally:
        await sender.close()


async def test_private_destinations_are_refused_at_delivery_time() -> None:
    sender = WebhookSender(timeout=1, allow_private=False)
    try:
        async with serve_receiver(Receiver()) as receiver:
            outcome = await sender.send(receiver.url, BODY, {})
            assert outcome.kind == "refused"
            assert receiver.calls == 0
    finally:
        await sender.close()
