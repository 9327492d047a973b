"""The gap watcher: a run of missing seqs seen on two checks is asked for once across ingesters,
clipped, retried later, and never before a device's first stored event; on both backends."""

from __future__ import annotations

import pytest

from edgesiam.dashboard.gaps import GapWatcher, ReplayPolicy
from tests.support.dashboard import OpenHistory, event_payload


@pytest.fixture(params=["sqlite", "postgresql"])
def history_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Asked(list[tuple[str, int, int]]):
    def __call__(self, device: str, first: int, last: int) -> bool:
        self.append((device, first, last))
        return True


def _store(history: object, device: str, *seqs: int) -> None:
    for seq in seqs:
        history.add_event(event_payload(device, seq))  # type: ignore[attr-defined]


def test_a_gap_seen_twice_is_asked_for_once_then_retried(open_history: OpenHistory) -> None:
    h = open_history()
    _store(h, "a", 1, 2, 3, 6, 7, 8)
    _store(h, "b", 50, 51)  # its first stored event: nothing before it is asked for
    asked = Asked()
    watcher = GapWatcher(h, asked, ReplayPolicy(retry_after_s=3600))
    assert watcher.check() == []  # seen once: maybe still in another ingester's transaction
    assert watcher.check() == [("a", 4, 5)]
    assert watcher.check() == []  # asked already; again after retry_after_s
    _store(h, "a", 4, 5)  # the replay arrived
    watcher.check()
    _store(h, "a", 9, 10)
    assert watcher.check() == [] and watcher.check() == []
    assert asked == [("a", 4, 5)] and watcher.requested == 1
    assert h.replay_requests("a")[0]["tries"] == 1
    watcher_retrying = GapWatcher(h, asked, ReplayPolicy(retry_after_s=0, max_tries=2))
    _store(h, "a", 13)
    watcher_retrying.check()
    assert watcher_retrying.check() == [("a", 11, 12)]
    assert watcher_retrying.check() == [("a", 11, 12)]  # retried: still missing
    assert watcher_retrying.check() == []  # max_tries reached
    h.close()


def test_two_ingesters_ask_once_and_long_gaps_are_clipped(open_history: OpenHistory) -> None:
    h = open_history()
    _store(h, "a", 1, 5000)
    first, second = Asked(), Asked()
    policy = ReplayPolicy(max_span=1000, retry_after_s=3600)
    watchers = [GapWatcher(h, first, policy), GapWatcher(h, second, policy)]
    for _ in range(2):
        for watcher in watchers:
            watcher.check()
    assert first + second == [("a", 2, 1001)]  # one request, across both
    h.close()
