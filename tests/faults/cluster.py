"""A private three-node RabbitMQ cluster on this host: own node names, ports, data
directories and Erlang cookie, so that a test may kill its nodes without touching the
shared broker."""

from __future__ import annotations

import contextlib
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from tests.faults.services import PrivateRabbitMQ

NODES = 3


class RabbitCluster:
    def __init__(self) -> None:
        cookie = secrets.token_hex(16)
        tag = secrets.token_hex(2)
        self.nodes = [PrivateRabbitMQ(name=f"dw-test-{tag}-{n}", cookie=cookie) for n in range(1, NODES + 1)]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> None:
        """Boot every node at once (booting is most of the time), then join the others to
        the first, one at a time: two nodes joining at once can fail to start Mnesia
        (seen here, `{mnesia_app, start}` badmatch on start_app)."""
        with ThreadPoolExecutor(NODES) as pool:
            list(pool.map(PrivateRabbitMQ.start, self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self._join(node, first)
        running = first.ctl("eval", "length(rabbit_nodes:all_running()).").strip()
        assert running == str(NODES), f"cluster has {running} running nodes"

    @staticmethod
    def _join(node: PrivateRabbitMQ, first: PrivateRabbitMQ, attempts: int = 3) -> None:
        """stop_app, join_cluster, start_app; a join that fails is undone (reset) and tried again."""
        for attempt in range(1, attempts + 1):
            try:
                node.ctl("stop_app")
                node.ctl("join_cluster", first.node)
                node.ctl("start_app")
                return
            except RuntimeError:
                if attempt == attempts:
                    raise
                node.ctl("stop_app", check=False)
                node.ctl("reset", check=False)

    def node_named(self, name: str) -> PrivateRabbitMQ:
        return next(node for node in self.nodes if node.node == name)

    def running(self) -> PrivateRabbitMQ:
        return next(node for node in self.nodes if node.process is not None)

    def leaders(self, queues: list[str]) -> dict[str, str]:
        """Queue name → the node that leads it (quorum queues), asked of a running node."""
        table = self.running().ctl("list_queues", "name", "leader", "--quiet", "--no-table-headers")
        found = dict(line.split("\t")[:2] for line in table.splitlines() if "\t" in line)
        return {queue: found[queue] for queue in queues}

    def members(self, queue: str) -> list[str]:
        table = self.running().ctl("list_queues", "name", "members", "--quiet", "--no-table-headers")
        for line in table.splitlines():
            name, _, members = line.partition("\t")
            if name == queue:
                return [m.strip(" []'\"") for m in members.strip("[]").split(",") if m.strip()]
        raise KeyError(queue)

    def ensure_running(self) -> None:
        """Every node up again (a test that failed half-way may have left one down)."""
        for node in self.nodes:
            if node.process is None:
                self.restart(node)

    def restart(self, node: PrivateRabbitMQ) -> None:
        node.start()
        node.ctl("await_startup", timeout=120)

    def wait_for_quorum_members(self, queues: list[str], online: int, timeout: float = 60) -> None:
        """Until each queue's Raft group has `online` members running again (a restarted
        node catches up on its own; this is only the wait)."""
        deadline = time.monotonic() + timeout
        while True:
            status = {
                queue: self.running().ctl("quorum_status", queue, tool="rabbitmq-queues", check=False)
                for queue in queues
            }
            if all(text.count("follower") + text.count("leader") >= online for text in status.values()):
                return
            assert time.monotonic() < deadline, f"quorum members not back: {status}"
            time.sleep(1)

    @staticmethod
    def wait_for_alarm(node: PrivateRabbitMQ, timeout: float = 20) -> None:
        """Until the node has raised its memory alarm (checked every second by the node)."""
        deadline = time.monotonic() + timeout
        while "memory" not in node.ctl("eval", "rabbit_alarm:get_alarms()."):
            assert time.monotonic() < deadline, "the memory alarm was never raised"
            time.sleep(0.2)

    def remove(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.kill9()
            node.remove()
