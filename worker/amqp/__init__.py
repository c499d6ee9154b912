"""Everything that talks to RabbitMQ. No other package imports aio-pika, aiormq or pamqp
(a test checks it): an aiormq release that changes what `_batch` relies on stays a
matter of this folder, and roles are tested against a fake `ConsumerChannel`."""

from worker.amqp.connection import BrokerConnectionError, Channel, Connection, connect, is_broker_failure
from worker.amqp.consumer import AmqpConsumerChannel, ConsumerChannel, Delivery
from worker.amqp.publisher import Outgoing, Publisher, PublishRefusedError
from worker.amqp.topology import QueueNames, Topology

__all__ = [
    "AmqpConsumerChannel",
    "BrokerConnectionError",
    "Channel",
    "Connection",
    "ConsumerChannel",
    "Delivery",
    "Outgoing",
    "PublishRefusedError",
    "Publisher",
    "QueueNames",
    "Topology",
    "connect",
    "is_broker_failure",
]
