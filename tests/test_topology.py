"""Queue names come from one helper; arguments are typed."""

from __future__ import annotations

from worker.topology import QueueNames, Topology, main_queue_arguments, retry_queue_arguments


def test_names_derive_from_prefix_and_products() -> None:
    topology = Topology("deletion", ("sessions", "crm"))
    assert topology.requests.main == "deletion.requests"
    assert topology.product("crm").all() == (
        "deletion.product.crm",
        "deletion.product.crm.retry",
        "deletion.product.crm.dead",
    )
    assert topology.acks.dead == "deletion.acks.dead"
    assert topology.products_exchange == "deletion.products"
    assert len(topology.all_queue_names()) == 4 * 3
    assert topology.find("deletion.product.sessions.dead") == QueueNames("deletion.product.sessions")
    assert topology.find("other") is None


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
    assert retry_queue_arguments(names).to_arguments() == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "p.requests",
    }
