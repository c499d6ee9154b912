"""Fixtures shared by the AMQP tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection

from tests.support import Services


@pytest.fixture
async def connection(services: Services) -> AsyncIterator[AbstractConnection]:
    """A plain (not robust) connection to the test broker, closed afterwards."""
    opened = await aio_pika.connect(services.amqp_url)
    try:
        yield opened
    finally:
        await opened.close()
