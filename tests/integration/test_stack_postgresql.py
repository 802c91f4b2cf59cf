"""``dmr up --home-instances 2 --store postgresql``: the local stack with two home
instances on a PostgreSQL it starts itself; SQLite stays the default."""

from __future__ import annotations

import pytest

from dmr_appliance import config
from dmr_appliance.home import store_pg
from dmr_appliance.local import postgres
from dmr_appliance.local.layout import StackError
from dmr_appliance.local.processes import group_alive
from dmr_appliance.local.stack import Stack
from dmr_appliance.wire.home import HomeClient
from tests.support.home import postgresql_missing
from tests.support.recipient import received
from tests.support.stack_kit import ensure_participant, sender

pytestmark = [pytest.mark.slow, pytest.mark.needs_nginx, pytest.mark.once]


def two_homes_on_postgresql(tmp_path) -> Stack:
    """The stack of ``dmr up --home-instances 2 --store postgresql`` (not started)."""
    try:
        postgres.bin_dir()
    except postgres.PostgresMissing as exc:
        postgresql_missing(str(exc))
    if store_pg.psycopg is None:
        postgresql_missing(store_pg.INSTALL)
    return Stack(tmp_path / "state", relays=1, port=0, homes=2, store="postgresql")


def test_several_homes_need_postgresql(tmp_path):
    with pytest.raises(StackError, match="--store postgresql"):
        Stack(tmp_path / "state", relays=1, homes=2)


def test_two_home_instances_on_postgresql_serve_alike(tmp_path):
    stack = two_homes_on_postgresql(tmp_path)
    try:
        with stack:
            base = stack.postgres.base
            second = config.load(config.HomeConfig, stack.config_dir / "home-2.toml")
            assert second.store.url == stack.store_url
            assert stack.store_url.startswith("postgresql://")
            admin = stack.session()
            body = {"id": "alice", "rooms": ["demo"], "endpoint": stack.endpoint("alice")}
            created = admin.post(f"{stack.home_url}/participants", json=body, timeout=10)
            assert created.status_code == 201, created.text  # through the router: home
            direct = f"https://127.0.0.1:{stack.ports['home-2']}/v1/participants"
            listed = admin.get(direct, timeout=10).json()["participants"]
            assert [p["id"] for p in listed] == ["alice"]  # home-2 reads what home wrote
            groups = stack.process_groups()
        assert not [g for g in groups if group_alive(g)]
        assert (base / "data" / "PG_VERSION").exists()  # kept for the next run
    finally:
        postgres.LocalPostgres(base).stop()


def test_a_stopped_home_instance_is_served_by_the_other_through_the_router(tmp_path):
    """The router lists both homes: with ``home`` stopped, admin calls and a sender's
    token and card go through the router to home-2, and the message is delivered."""
    stack = two_homes_on_postgresql(tmp_path)
    base = None
    try:
        with stack:
            base = stack.postgres.base
            routed = config.load(config.RouterConfig, stack.config_dir / "router.toml")
            assert routed.home == [f"127.0.0.1:{stack.ports[n]}" for n in ("home", "home-2")]
            for pid in ("alice", "bob"):
                ensure_participant(stack, pid, stack.endpoint(pid), ["ha"])
            stack.stop_service("home")
            admin = stack.admin_client()  # the router's URL
            for n in range(5):
                ensure_participant(stack, f"p{n}", stack.endpoint(f"p{n}"), ["ha"])
                assert {"alice", "bob"} <= {p["id"] for p in admin.list_participants()}
            cert, key = stack.cert("participant", "alice")
            alice = HomeClient(stack.home_url, cert=cert, key=key, ca=stack.ca)
            assert alice.issue_token()["access_token"]
            assert alice.get_card("bob")["card"]
            # A new sender: its token and bob's card come through the router from home-2.
            sent = sender(stack).send("ha", ["bob"], {"text": "home-1 is down"})
            assert sent.ok, sent
            assert sent.message_id in {r["id"] for r in received(stack.recipient_log)}
            groups = stack.process_groups()
        assert not [g for g in groups if group_alive(g)]
    finally:
        if base is not None:
            postgres.LocalPostgres(base).stop()
