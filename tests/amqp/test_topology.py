"""Queue names come from one helper; arguments are typed; retry tiers cover the backoff."""

from __future__ import annotations

from worker.amqp.topology import QueueNames, Topology, main_queue_arguments, retry_tier_arguments, retry_tiers


def test_names_derive_from_prefix_and_products() -> None:
    topology = Topology("deletion", ("sessions", "crm"), retry_tiers(500, 4000))
    assert topology.requests.main == "deletion.requests"
    assert topology.product("crm").all() == ("deletion.product.crm", "deletion.product.crm.dead")
    assert topology.acks.dead == "deletion.acks.dead"
    assert topology.products_exchange == "deletion.products"
    assert topology.due_channel == "deletion.due"
    assert topology.retry_tier_names() == [
        "deletion.retry.500ms",
        "deletion.retry.1000ms",
        "deletion.retry.2000ms",
        "deletion.retry.4000ms",
    ]
    assert topology.webhooks.all() == ("deletion.webhooks", "deletion.webhooks.dead")
    assert len(topology.all_queue_names()) == 5 * 2 + 4
    assert topology.find("deletion.product.sessions.dead") == QueueNames("deletion.product.sessions")
    assert topology.find("other") is None


def test_retry_tiers_double_up_to_the_cap() -> None:
    assert retry_tiers(500, 300_000) == (500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000)
    assert retry_tiers(50, 400) == (50, 100, 200, 400)
    assert retry_tiers(1000, 1000) == (1000,)


def test_a_retry_waits_in_a_tier_between_an_eighth_of_its_bound_and_the_bound() -> None:
    topology = Topology("p", (), retry_tiers(500, 300_000))
    chosen = {topology.choose_retry_tier(8000) for _ in range(500)}
    assert chosen == {1000, 2000, 4000, 8000}  # jittered over the tiers within the bound
    assert topology.choose_retry_tier(100) == 500  # below the first tier: the first tier
    assert topology.choose_retry_tier(10**9) in {64000, 128000, 256000, 300000}


def test_queue_arguments() -> None:
    names = QueueNames("p.requests")
    main = main_queue_arguments(names, delivery_limit=20).to_arguments()
    assert main == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "p.requests.dead",
        "x-delivery-limit": 20,
        "x-overflow": "reject-publish",
        "x-dead-letter-strategy": "at-least-once",
    }
    # A tier sends an expired message back by its own routing key (its origin queue),
    # at least once.
    assert retry_tier_arguments(2000).to_arguments() == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-message-ttl": 2000,
        "x-overflow": "reject-publish",
        "x-dead-letter-strategy": "at-least-once",
    }
