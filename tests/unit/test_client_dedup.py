"""client/dedup.py: SeenIds, deduplication at recipients."""

from __future__ import annotations

import threading

from dmr_appliance.client.dedup import SeenIds

# -- SeenIds -------------------------------------------------------------------------------


def test_first_time_then_repeats():
    seen = SeenIds()
    assert seen.first_time("m1", now=100.0, expires_at=200.0)
    assert not seen.first_time("m1", now=150.0, expires_at=200.0)
    assert seen.first_time("m1", scope="/inbox/dave", now=150.0, expires_at=200.0)
    assert seen.first_time("m1", now=201.0, expires_at=300.0)  # expired: not a live copy


def test_ids_survive_a_restart(tmp_path):
    path = tmp_path / "seen.sqlite"
    first = SeenIds(path)
    assert first.first_time("m1", "2999-01-01T00:00:00Z")
    first.close()
    again = SeenIds(path)
    assert not again.first_time("m1", "2999-01-01T00:00:00Z")


def test_forget_lets_the_next_copy_through():
    seen = SeenIds()
    assert seen.first_time("m1")
    seen.forget("m1")
    assert seen.first_time("m1")


def test_the_store_is_bounded(caplog):
    seen = SeenIds(max_ids=3)
    for n in range(10):
        seen.first_time(f"m{n}", expires_at=1000.0 + n, now=0.0)
    seen.prune(now=0.0)
    assert len(seen) == 3
    assert not seen.first_time("m9", expires_at=1009.0, now=0.0)  # the newest are kept
    seen.prune(now=2000.0)
    assert len(seen) == 0


def test_concurrent_copies_are_processed_once():
    seen = SeenIds()
    wins: list[bool] = []
    threads = [threading.Thread(target=lambda: wins.append(seen.first_time("same")))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 15 + [True]
