"""`deletion-worker webhooks`: subscriptions and secrets from the command line; `test`
sends a signed delivery the receiver verifies, also across a rotation."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from tests.cli.conftest import Invoke
from tests.webhook_receiver import Receiver, serve_receiver
from worker.ops.exitcodes import ExitCode
from worker.settings import Settings


async def test_add_list_test_rotate_remove(
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    make_project: Callable[..., Awaitable[tuple[int, str]]],
) -> None:
    settings = make_settings()
    _, key = await make_project()
    refused = await invoke(settings, "webhooks", "add", "--project", key, "--url", "http://127.0.0.1:9/hook")
    assert refused.exit_code == ExitCode.USAGE
    assert "loopback" in refused.output
    monkeypatch.setenv("DELETION_WEBHOOK_ALLOW_PRIVATE", "true")  # the receiver listens on 127.0.0.1

    async with serve_receiver(Receiver()) as receiver:
        added = await invoke(
            settings, "webhooks", "add", "--project", key, "--url", receiver.url, "--event", "job.*", "--event", "*"
        )
        assert added.exit_code == 0, added.output
        created = json.loads(added.output)
        old_secret = created["secret"]
        assert created["eventTypes"] == ["job.*", "*"]
        listed = await invoke(settings, "webhooks", "list", "--project", key, "--json")
        assert [json.loads(line)["webhookId"] for line in listed.output.splitlines()] == [created["webhookId"]]
        assert old_secret not in listed.output

        receiver.secrets = [old_secret]
        tested = await invoke(settings, "webhooks", "test", created["webhookId"])
        assert tested.exit_code == 0, tested.output
        assert json.loads(tested.output)["status"] == 200
        assert receiver.events[-1]["type"] == "webhook.test"

        rotated = await invoke(settings, "webhooks", "rotate", created["webhookId"])
        new_secret = json.loads(rotated.output)["secret"]
        assert json.loads(rotated.output)["activeSecrets"] == 2
        # During the rotation a receiver holding either secret accepts the deliveries.
        assert (await invoke(settings, "webhooks", "test", created["webhookId"])).exit_code == 0
        receiver.secrets = [new_secret]
        assert (await invoke(settings, "webhooks", "test", created["webhookId"])).exit_code == 0
        retired = await invoke(settings, "webhooks", "rotate", created["webhookId"], "--retire-old")
        assert json.loads(retired.output)["activeSecrets"] == 1
        receiver.secrets = [old_secret]  # a receiver that never switched is refused from now on
        failed = await invoke(settings, "webhooks", "test", created["webhookId"])
        assert failed.exit_code == ExitCode.FAILURE
        assert receiver.rejected == 1

        assert (await invoke(settings, "webhooks", "remove", created["webhookId"])).exit_code == 0
        gone = await invoke(settings, "webhooks", "remove", created["webhookId"])
        assert gone.exit_code == ExitCode.NOT_FOUND


async def test_callback_secret(
    invoke: Invoke, make_settings: Callable[..., Settings], make_project: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    settings = make_settings()
    _, key = await make_project()
    made = await invoke(settings, "webhooks", "callback-secret", key)
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["secret"].startswith("whsec_")
    again = await invoke(settings, "webhooks", "callback-secret", key)
    assert again.exit_code == ExitCode.REFUSED
    assert "--rotate" in again.output
    rotated = await invoke(settings, "webhooks", "callback-secret", key, "--rotate")
    assert json.loads(rotated.output)["activeSecrets"] == 2
    missing = await invoke(settings, "webhooks", "callback-secret", "no-such-project")
    assert missing.exit_code == ExitCode.NOT_FOUND
