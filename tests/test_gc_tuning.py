"""The collector of a service process: start-up frozen, the young generation collected less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from worker.gc_tuning import YOUNG_THRESHOLD, tune_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_start_up_is_frozen_and_young_collections_are_rarer() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    Cycle()  # garbage from start-up: collected before the freeze, not kept for ever
    _, middle, old = gc.get_threshold()

    tune_collector()

    assert gc.get_freeze_count() > 0
    assert not any(isinstance(o, Cycle) for o in gc.get_objects())
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    cycle = Cycle()
    del cycle
    assert gc.collect() >= 1  # cycles made later are still found


@pytest.mark.usefixtures("restored_collector")
def test_every_service_command_tunes_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.cli import api, service  # noqa: PLC0415 - the modules whose names are patched

    tuned: list[str] = []
    for module in (api, service):
        monkeypatch.setattr(module, "tune_collector", lambda m=module.__name__: tuned.append(m))
        monkeypatch.setattr(module.common, "run", lambda coroutine: coroutine.close())
    monkeypatch.setattr(service, "_start_metrics", lambda _settings: None)

    service.run_command.callback(roles=())  # type: ignore[misc]
    service.up.callback(no_api=True)  # type: ignore[misc]
    api.api_command.callback(host=None, port=None)  # type: ignore[misc]

    assert tuned == ["worker.cli.service", "worker.cli.service", "worker.cli.api"]
