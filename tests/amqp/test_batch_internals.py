"""The aiormq and pamqp internals the batched publisher (worker/amqp/_batch.py) writes
through, checked by name, type and signature. When an upgrade changes any of them this
fails here, by name, instead of the publisher quietly falling back to one basic_publish
per message (three times the CPU) or, worse, writing into bookkeeping nobody reads."""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiormq
import pamqp.frame
import pytest
from aiormq.abc import ChannelFrame
from packaging.requirements import Requirement
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from tests.support import Services
from worker.amqp import _batch

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.fixture
async def channel(services: Services) -> AsyncIterator[aiormq.Channel]:
    connection = await aiormq.connect(services.amqp_url)
    try:
        opened = await connection.channel(publisher_confirms=True)
        assert isinstance(opened, aiormq.Channel)
        yield opened
    finally:
        await connection.close()


def parameters(function: Callable[..., object]) -> list[str]:
    return list(inspect.signature(function).parameters)


async def test_a_confirm_channel_has_everything_a_batch_writes_to(channel: aiormq.Channel) -> None:
    assert _batch.supports(channel), "aiormq changed: the batched publisher would fall back to basic_publish"
    assert channel.publisher_confirms is True
    assert isinstance(channel.number, int)
    assert isinstance(channel.delivery_tag, int)
    assert isinstance(channel.max_content_size, int)
    # Tag → future: the reader settles a batch's confirmations by popping them from here.
    assert isinstance(channel.confirmations, dict)
    # Message id → tag: how the reader matches a returned (unroutable) message.
    assert isinstance(channel.message_id_delivery_tag, dict)
    assert isinstance(channel.write_queue, asyncio.Queue)
    assert channel.write_queue.maxsize > 0  # a batch waits for room when it is full
    async with channel.lock:  # an async context manager that refuses a closed channel
        pass
    future = channel.create_future()  # no arguments; rejected by the channel when it closes
    assert isinstance(future, asyncio.Future)
    future.cancel()


def test_the_frames_a_batch_marshals_are_built_as_it_builds_them() -> None:
    assert parameters(pamqp.frame.marshal)[:2] == ["frame_value", "channel_id"]
    assert {"payload", "should_close"} <= set(parameters(ChannelFrame))
    required = [
        name
        for name, parameter in inspect.signature(ChannelFrame).parameters.items()
        if parameter.default is inspect.Parameter.empty
    ]
    assert set(required) <= {"payload", "should_close"}, required
    assert {"properties", "body_size"} <= set(parameters(ContentHeader))
    assert parameters(ContentBody)[:1] == ["value"]
    assert {"exchange", "routing_key", "mandatory"} <= set(parameters(spec.Basic.Publish))
    # One marshalled publish round-trips, so the bytes are what a broker expects.
    frame = pamqp.frame.marshal(spec.Basic.Publish(exchange="x", routing_key="k", mandatory=True), 1)
    _, channel_number, unmarshalled = pamqp.frame.unmarshal(frame)
    assert channel_number == 1
    assert isinstance(unmarshalled, spec.Basic.Publish)
    assert unmarshalled.routing_key == "k"


@pytest.mark.parametrize(
    ("handler", "reads"),
    [
        ("_on_confirm_frame", "self.confirmations"),
        ("_confirm_delivery", "self.confirmations"),
        ("_on_return_frame", "self.message_id_delivery_tag"),
        ("basic_publish", "self.message_id_delivery_tag"),
    ],
)
def test_the_channel_reader_settles_through_the_same_bookkeeping(handler: str, reads: str) -> None:
    """A batch registers its confirmations where basic_publish does; it is only settled
    if the reader's handlers still look there."""
    source = inspect.getsource(getattr(aiormq.Channel, handler))
    assert reads in source, f"aiormq.Channel.{handler} no longer reads {reads}"


def test_the_upper_bounds_that_guard_these_internals_stay() -> None:
    dependencies = [Requirement(line) for line in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]]
    bounds = {requirement.name: requirement.specifier for requirement in dependencies}
    for name in ("aiormq", "pamqp", "aio-pika"):
        assert any(specifier.operator == "<" for specifier in bounds[name]), f"{name} lost its upper bound"
