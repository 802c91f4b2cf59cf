"""The router in front of several home instances (router.toml's ``home`` as a list),
through a real nginx and ``FakeUpstream`` homes, as test_router.py shows the relays' pool:
the next home on a connection error or a 503 (POSTs too, as for the relays), never on a
timeout. The real homes behind the local stack's router: test_stack_postgresql.py."""

from __future__ import annotations

import pytest

from dmr_appliance import config
from tests.integration.test_router import dead_address, router, upstream  # noqa: F401

pytestmark = [pytest.mark.needs_nginx, pytest.mark.once]


def test_a_stopped_home_is_served_by_the_next(router, upstream):  # noqa: F811
    live = upstream("home-2", "server", "home")
    r = router([dead_address()], [dead_address(), live.address])
    admin = r.session("admin", "admin")
    for _ in range(3):
        got = admin.get(r.url + "/v1/home/participants", timeout=10)
        assert got.status_code == 200 and got.json()["upstream"] == "home-2"
        # Refused before anything was sent: a POST goes on too (a token's renewal).
        made = admin.post(r.url + "/v1/home/tokens", json={}, timeout=10)
        assert made.status_code == 200 and made.json()["upstream"] == "home-2"
    assert len(live.seen) == 6
    statuses = [e["upstream_status"] for e in r.access_log()]
    assert "502, 200" in statuses, statuses  # the refused home, then the next


def test_a_home_503_passes_a_get_to_the_next(router, upstream):  # noqa: F811
    busy = upstream("home-1", "server", "home")
    busy.set(503, type="urn:dmr:problem:unavailable")
    ready = upstream("home-2", "server", "home")
    r = router([dead_address()], [busy.address, ready.address])
    admin = r.session("admin", "admin")
    for path in ("/v1/home/participants", "/v1/home/sync", "/home/", "/.well-known/jwks.json"):
        got = admin.get(r.url + path, timeout=10)
        assert got.status_code == 200 and got.json()["upstream"] == "home-2", path
    assert busy.seen, "the busy home was asked first at least once"


def test_a_home_503_passes_a_post_to_the_next_but_not_a_timeout(router, upstream):  # noqa: F811
    busy = upstream("home-1", "server", "home")
    busy.set(503, type="urn:dmr:problem:not-ready")  # a gate whose home is down
    ready = upstream("home-2", "server", "home")
    r = router([dead_address()], [busy.address, ready.address])
    admin = r.session("admin", "admin")
    for _ in range(2):
        made = admin.post(r.url + "/v1/home/participants", json={}, timeout=10)
        assert made.status_code == 200 and made.json()["upstream"] == "home-2"
    assert busy.seen
    # A home that answers too late may have acted: its 504, never the next home.
    busy.set(200, delay=3)
    slow = router(
        [dead_address()], [busy.address, ready.address], upstream=config.Upstreams(home_timeout=1)
    )
    answers = [
        slow.session("admin", "admin").post(slow.url + "/v1/home/participants", json={}, timeout=10)
        for _ in range(2)
    ]
    timed_out = [a for a in answers if a.status_code == 504]
    assert len(timed_out) == 1, [a.status_code for a in answers]
    request_id = timed_out[0].headers["X-Request-Id"]
    assert request_id not in {s.headers["x-request-id"] for s in ready.seen}
