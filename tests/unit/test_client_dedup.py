"""client/dedup.py: SeenIds, deduplication at recipients."""

from __future__ import annotations

import sqlite3
import threading

from dmr_appliance.client.dedup import SeenIds

# -- SeenIds -------------------------------------------------------------------------------


def test_first_time_then_repeats():
    seen = SeenIds()
    assert seen.first_time("m1", now=100.0, expires_at=200.0, sender="bob")
    assert not seen.first_time("m1", now=150.0, expires_at=200.0, sender="bob")
    assert seen.first_time("m1", scope="/inbox/dave", now=150.0, expires_at=200.0, sender="bob")
    assert seen.first_time("m1", now=201.0, expires_at=300.0, sender="bob")  # expired


def test_an_id_another_sender_used_is_never_a_duplicate():
    """alice sends her own message with the id of bob's (still failing) message: bob's
    copy is still processed, and each one's repeat is still a repeat."""
    seen = SeenIds()
    assert seen.first_time("X", "2999-01-01T00:00:00Z", sender="alice", scope="/inbox/hank")
    assert seen.first_time("X", "2999-01-01T00:00:00Z", sender="bob", scope="/inbox/hank")
    assert not seen.first_time("X", "2999-01-01T00:00:00Z", sender="bob", scope="/inbox/hank")
    assert not seen.first_time("X", "2999-01-01T00:00:00Z", sender="alice", scope="/inbox/hank")
    seen.forget("X", sender="alice", scope="/inbox/hank")  # forgets alice's only
    assert not seen.first_time("X", "2999-01-01T00:00:00Z", sender="bob", scope="/inbox/hank")


def test_ids_survive_a_restart(tmp_path):
    path = tmp_path / "seen.sqlite"
    first = SeenIds(path)
    assert first.first_time("m1", "2999-01-01T00:00:00Z", sender="bob")
    first.close()
    again = SeenIds(path)
    assert not again.first_time("m1", "2999-01-01T00:00:00Z", sender="bob")


def test_a_store_from_before_senders_is_migrated_and_its_ids_still_hold(tmp_path):
    path = tmp_path / "seen.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE seen (scope TEXT NOT NULL, message_id TEXT NOT NULL,
            expires_at REAL NOT NULL, PRIMARY KEY (scope, message_id)) WITHOUT ROWID;
        CREATE INDEX seen_expiry ON seen (expires_at);
        INSERT INTO seen VALUES ('/inbox/bob', 'old-live', 1000.0),
                                ('/inbox/bob', 'old-gone', 10.0);
    """)
    old.close()
    seen = SeenIds(path)
    assert len(seen) == 2
    # A copy of an id processed before the upgrade (sender unknown then) stays a repeat...
    assert not seen.first_time("old-live", sender="alice", scope="/inbox/bob", now=500.0)
    # ... until it expires, as before; new ids are per sender.
    assert seen.first_time("old-gone", sender="alice", scope="/inbox/bob", now=500.0)
    assert seen.first_time("new", sender="alice", scope="/inbox/bob", now=500.0)
    assert seen.first_time("new", sender="bob", scope="/inbox/bob", now=500.0)
    seen.close()
    assert len(SeenIds(path)) == 4  # reopening finds the new schema: nothing to redo


def test_forget_lets_the_next_copy_through():
    seen = SeenIds()
    assert seen.first_time("m1", sender="bob")
    seen.forget("m1", sender="bob")
    assert seen.first_time("m1", sender="bob")


def test_the_store_is_bounded(caplog):
    seen = SeenIds(max_ids=3)
    for n in range(10):
        seen.first_time(f"m{n}", expires_at=1000.0 + n, now=0.0, sender="bob")
    seen.prune(now=0.0)
    assert len(seen) == 3
    assert not seen.first_time("m9", expires_at=1009.0, now=0.0, sender="bob")  # newest kept
    seen.prune(now=2000.0)
    assert len(seen) == 0


def test_concurrent_copies_are_processed_once():
    seen = SeenIds()
    wins: list[bool] = []
    threads = [
        threading.Thread(target=lambda: wins.append(seen.first_time("same", sender="b")))
        for _ in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 15 + [True]
