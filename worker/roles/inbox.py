"""What a consuming role holds, counted in bytes, and the prefetch window sized from it.

Deliveries are held in two places: the inbox (received, not yet taken) and in hand (taken
into a batch or a task, not yet settled). Both count against the role's byte budget. A
delivery on its way back to the queue (being handed back) is tracked too: no `multiple`
ack may cover it before its copy is confirmed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from worker.amqp import Delivery

# A first guess of message size, until some have been seen.
INITIAL_SIZE_GUESS = 16 * 1024
SIZES_REMEMBERED = 512
SMALLEST_SIZE = 512


class Inbox:
    def __init__(self) -> None:
        self.waiting: deque[Delivery] = deque()
        self.waiting_bytes = 0
        self.in_hand: list[Delivery] = []
        self.in_hand_bytes = 0
        self.handing_back: dict[int, Delivery] = {}
        self.handing_back_bytes = 0

    @property
    def held_bytes(self) -> int:
        return self.waiting_bytes + self.in_hand_bytes + self.handing_back_bytes

    @property
    def holds_any(self) -> bool:
        return bool(self.waiting or self.in_hand)

    def __len__(self) -> int:
        return len(self.waiting)

    def add(self, delivery: Delivery) -> None:
        self.waiting.append(delivery)
        self.waiting_bytes += delivery.size

    def take(self, max_count: int, max_bytes: int) -> list[Delivery]:
        """From the head: at most `max_count` deliveries and `max_bytes` (at least one)."""
        taken: list[Delivery] = []
        size = 0
        while self.waiting and len(taken) < max_count:
            delivery = self.waiting[0]
            if taken and size + delivery.size > max_bytes:
                break
            taken.append(self.waiting.popleft())
            size += delivery.size
        self.waiting_bytes -= size
        self.in_hand.extend(taken)
        self.in_hand_bytes += size
        return taken

    def take_all(self) -> list[Delivery]:
        return self.take(len(self.waiting), self.waiting_bytes + 1)

    def released(self, deliveries: Sequence[Delivery]) -> None:
        """These are settled: they no longer count against the budget."""
        tags = {d.delivery_tag for d in deliveries}
        self.in_hand = [d for d in self.in_hand if d.delivery_tag not in tags]
        self.in_hand_bytes = sum(d.size for d in self.in_hand)

    def handing_back_started(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            if delivery.delivery_tag not in self.handing_back:
                self.handing_back[delivery.delivery_tag] = delivery
                self.handing_back_bytes += delivery.size

    def handing_back_ended(self, deliveries: Sequence[Delivery]) -> None:
        """These are back on the queue (handed back, or requeued): released entirely."""
        for delivery in deliveries:
            if self.handing_back.pop(delivery.delivery_tag, None) is not None:
                self.handing_back_bytes -= delivery.size
        self.released(deliveries)

    def everything(self) -> list[Delivery]:
        """Every delivery held, in any state (what a lost session returns to the queue)."""
        return [*self.waiting, *self.in_hand, *self.handing_back.values()]

    def handed_back_before(self, tag: int) -> bool:
        """Is a delivery older than `tag` still on its way back to the queue?"""
        return any(other < tag for other in self.handing_back)


class Window:
    """The prefetch window: as many deliveries as the budget holds of the largest recent one."""

    def __init__(self, most: int, budget_bytes: int) -> None:
        self.most = most
        self.budget_bytes = budget_bytes
        self.sizes: deque[int] = deque(maxlen=SIZES_REMEMBERED)
        self.current = self.for_size(INITIAL_SIZE_GUESS)

    def for_size(self, largest: int) -> int:
        return max(1, min(self.most, self.budget_bytes // max(largest, SMALLEST_SIZE)))

    def seen(self, size: int) -> None:
        self.sizes.append(size)

    def next(self) -> int | None:
        """A new window when the recent sizes call for one (smaller, or over a quarter larger)."""
        window = self.for_size(max(self.sizes, default=INITIAL_SIZE_GUESS))
        if window < self.current or window > self.current * 1.25:
            self.current = window
            return window
        return None
