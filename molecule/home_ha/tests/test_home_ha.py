"""Home without a single point of failure (issue 25, item 5): two home instances on one
PostgreSQL under Patroni (two members, one etcd), one router, one relay and the recipient,
converged by playbooks/site.yml; then, in this order (each step leaves the site whole):

0. the tier as converged: one Patroni leader and one streaming replica, etcd, HAProxy on
   each home host, both homes ready on PostgreSQL;
1. a participant revoked through home-1 (its own gate) while the router reaches home-2
   only, so that home-2 holds the relay's long poll: the relay sees it within 1 s;
2. home-1 stopped while alice sends 200 messages with tokens that expire every 20 s: every
   message delivered, every token and card renewed through home-2, and 0 failed admin
   calls through the router after its first success;
3. the PostgreSQL primary stopped (Patroni and PostgreSQL) under the same load and admin
   writes: Patroni promotes the standby, home reconnects by itself, the time from the stop
   to the first acknowledged write is printed (target under 30 s), and every acknowledged
   write, participants and failures, is still there afterwards; the old primary comes back
   as a replica;
4. the signing keys rotated through home-2 while the router reaches home-1 only (home-1
   signs every token): every message's token verifies at the relay.

Each step prints one line "home_ha: STEP: {figures}" (molecule verify runs pytest with -s).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "molecule"))
import remote  # noqa: E402
from remote import host, ok, put, wait_until  # noqa: E402

# Host names no other scenario uses: scripts/molecule.sh runs this one beside others.
HOME_1, HOME_2 = "ha-home-1", "ha-home-2"
HOMES = (HOME_1, HOME_2)
DATABASES = ("ha-db-1", "ha-db-2")
ETCD, ROUTER, RELAY, RECIPIENT = "ha-etcd-1", "ha-router", "ha-relay", "ha-recipient"
ROUTERS = [f"https://{ROUTER}:8443"]
RECEIVED = "/var/lib/dmr-test-recipient/received.jsonl"
ENDPOINT = f"https://{RECIPIENT}:9443/inbox"
FILES = Path(__file__).parent / "files"
SITE_FILES = ROOT / "molecule" / "site" / "tests" / "files"
HOME_UNITS = "dmr-home.service dmr-home-gate.service"
PATRONI = "patronictl -c /etc/patroni/config.yml"
# An admin call at a home instance's own gate, from that host (its admin certificate).
OWN_HOME = "https://localhost:8700/v1"


figures = remote.figures_of("home_ha")
units = remote.Units("dmr-ha", timeout=180)
start_unit, wait_unit_done = units.start, units.wait_done


def put_file(h, name: str) -> str:
    """files/NAME (watch_sync.py: the site scenario's) copied to the host's /root."""
    source = FILES / name
    return remote.put_file(h, source if source.exists() else SITE_FILES / name)


def jsonl(h, path: str) -> list[dict]:
    f = h.file(path)
    text = f.content_string if f.exists else ""
    return [json.loads(x) for x in text.splitlines() if x.strip().startswith("{")]


def admin(*args: str) -> str:
    return ok(host(ROUTER), "dmr " + " ".join(shlex.quote(a) for a in args))


def received() -> list[dict]:
    return jsonl(host(RECIPIENT), RECEIVED)


def reconcile(results: list[dict]) -> dict:
    """The sender's results against what the recipient processed; a result the sender did
    not count as delivered is named with its attempts (the figure says why)."""
    ids = [r["id"] for r in results]
    seen = received()
    processed = Counter(r["id"] for r in seen if not r["duplicate"] and 200 <= r["status"] < 300)
    not_ok = [r for r in results if not r["ok"]]
    return {
        "sent": len(ids),
        "delivered": sum(1 for i in ids if processed[i] >= 1),
        "processed_twice": sum(1 for i in ids if processed[i] > 1),
        "missing": [i for i in ids if not processed[i]][:5],
        "not_ok": len(not_ok),
        "not_ok_first": [
            {"id": r["id"], "attempts": [(a["status"], a["detail"][:120]) for a in r["attempts"]]}
            for r in not_ok[:2]
        ],
    }


def failure_reports() -> set[tuple]:
    """Every failure report home holds (open and resolved, no cap per sender)."""
    listed = admin("failures", "list", "--status", "all", "--per-sender", "0", "--json")
    return {(f.get("id"), f.get("from")) for f in json.loads(listed)}


def members() -> dict[str, dict]:
    """Patroni's members as the first database host sees them: {name: {Role, State, ...}}."""
    listed = json.loads(ok(host(DATABASES[0]), f"{PATRONI} list -f json"))
    return {m["Member"]: m for m in listed}


def leader() -> str | None:
    return next((n for n, m in members().items() if m["Role"] == "Leader"), None)


def replica_streaming(name: str) -> bool:
    m = members().get(name, {})
    return m.get("Role") in ("Replica", "Sync Standby") and m.get("State") in (
        "streaming",
        "running",
    )


def home_counts(name: str) -> dict[str, int]:
    return json.loads(ok(host(name), f"python3 {put_file(host(name), 'home_metrics.py')}"))


def block_home(router: str, home: str):
    """The router's connections to one home instance refused (an nft table of the test's
    own, output chain, TCP reset): the router passes every call to the other instance."""
    address = host(home).interface("eth0").addresses[0]
    rules = (
        "table inet dmr_ha_test {\n chain output {\n"
        "  type filter hook output priority 0;\n"
        f"  ip daddr {address} tcp dport 8700 counter reject with tcp reset\n }}\n}}"
    )
    put(host(router), "/root/dmr_ha_test.nft", rules)
    ok(host(router), "nft -f /root/dmr_ha_test.nft")


def unblock(router: str) -> str:
    h = host(router)
    counters = h.run("nft list table inet dmr_ha_test").stdout
    h.run("nft delete table inet dmr_ha_test")
    return counters


def send_count(count: int, rate: float, step: str) -> list[dict]:
    """alice sends COUNT messages at RATE a second (files/send_count.py, one Sender)."""
    sender = host(RECIPIENT)
    out = f"/root/send-{step}.jsonl"
    start_unit(
        sender,
        f"send-{step}",
        f"python3 {put_file(sender, 'send_count.py')} {count} {rate:g} {out} {' '.join(ROUTERS)}",
        clean=out,
    )
    wait_unit_done(sender, f"send-{step}", f"{count} messages sent", timeout=count / rate + 180)
    return jsonl(sender, out)


def writes_prefix(step: str) -> str:
    return f"ha-{step}"


def start_writes(step: str) -> str:
    router = host(ROUTER)
    out = f"/root/writes-{step}.jsonl"
    start_unit(
        router,
        f"writes-{step}",
        f"python3 {put_file(router, 'writes.py')} {out} /root/writes.stop {writes_prefix(step)}",
        clean=f"{out} /root/writes.stop",
    )
    return out


def stop_writes(step: str, out: str) -> list[dict]:
    router = host(ROUTER)
    ok(router, "touch /root/writes.stop")
    wait_unit_done(router, f"writes-{step}", "the admin calls ended")
    return jsonl(router, out)


# --- 0. the tier as converged ---------------------------------------------------------------


def test_the_tier_runs():
    for name in DATABASES:
        assert host(name).service("patroni").is_running, name
    assert host(ETCD).service("etcd").is_running
    wait_until(lambda: leader() is not None, 120, "a Patroni leader")
    lead = leader()
    other = next(n for n in DATABASES if n != lead)
    wait_until(lambda: replica_streaming(other), 120, f"{other} streaming")
    for name in HOMES:
        h = host(name)
        for unit in ("dmr-home", "dmr-home-gate", "haproxy"):
            assert h.service(unit).is_running, f"{name}: {unit}"
        assert 'url = "postgresql://' in h.file("/etc/dmr-appliance/home.toml").content_string
        ok(h, "dmr home probe /readyz --config /etc/dmr-appliance/home.toml")
    for pid in ("alice", "bob", "mallory"):
        done = host(ROUTER).run(
            f"dmr participants add {pid} --endpoint {ENDPOINT}/{pid} --room lobby"
        )
        assert done.rc == 0 or "exists" in done.stdout + done.stderr, done.stderr
    relay_ok = "dmr relay probe /readyz --config /etc/dmr-appliance/relay.toml"
    wait_until(lambda: host(RELAY).run(relay_ok).rc == 0, 60, "relay ready")
    figures("0 tier", leader=lead, replica=other, members=members())


# --- 1. a change through home-1, the long poll on home-2 ---------------------------------------


def test_a_revocation_through_home_1_reaches_the_relay_polling_home_2_within_1_s():
    relay = host(RELAY)
    block_home(ROUTER, HOME_1)
    try:
        time.sleep(3)  # the relay's poll, reset on home-1, is now held by home-2
        state = ok(relay, "dmr relay probe /readyz --config /etc/dmr-appliance/relay.toml")
        version = json.loads(state.split(" ", 3)[3])["sync_version"]
        start_unit(
            relay,
            "watch",
            f"python3 {put_file(relay, 'watch_sync.py')} {version}",
            clean="/root/watch.out",
            stdout="/root/watch.out",
        )
        time.sleep(1)
        home1 = host(HOME_1)
        answer = ok(home1, f"python3 {put_file(home1, 'home_call.py')} {OWN_HOME} revoke mallory")
        revoked_at = float(answer.split()[0])
        out = wait_until(
            lambda: (
                relay.file("/root/watch.out").content_string.strip()
                if relay.file("/root/watch.out").exists
                else ""
            ),
            15,
            "the relay saw the revocation",
        )
    finally:
        counters = unblock(ROUTER)
    ms = round((float(out.split()[-1]) - revoked_at) * 1000)
    refused = counters.count("reject")  # the rule was there; its packets below
    figures(
        "1 revocation via home-1, poll on home-2",
        ms=ms,
        router_to_home_1_reset=" ".join(
            w for w in counters.split() if w.isdigit() or w == "packets"
        ),
        rule=bool(refused),
    )
    assert ms < 1000, ms


# --- 2. home-1 stopped under load ---------------------------------------------------------------


def test_home_1_stopped_200_messages_every_token_renewed_through_home_2():
    home1 = host(HOME_1)
    before = home_counts(HOME_2)
    ok(home1, f"systemctl stop {HOME_UNITS}")
    writes_out = start_writes("home-down")
    try:
        began = time.monotonic()
        results = send_count(200, 8, "home-down")
        took = time.monotonic() - began
    finally:
        calls = stop_writes("home-down", writes_out)
        ok(home1, f"systemctl start {HOME_UNITS}")
    after = home_counts(HOME_2)
    counts = reconcile(results)
    first_ok = next((i for i, c in enumerate(calls) if c["ok"]), len(calls))
    failed_after = [c for c in calls[first_ok:] if not c["ok"]]
    figures(
        "2 home-1 stopped",
        **counts,
        seconds=round(took, 1),
        tokens_by_home_2=after["tokens"] - before["tokens"],
        cards_by_home_2=after["cards"] - before["cards"],
        admin_calls=len(calls),
        admin_failed_before_failover=first_ok,
        admin_failed_after_failover=len(failed_after),
    )
    assert len(results) == 200 and counts["not_ok"] == 0, counts
    assert counts["delivered"] == 200 and counts["processed_twice"] == 0, counts
    assert took > 20  # longer than a token's lifetime: renewed during the run
    assert after["tokens"] - before["tokens"] >= 2
    assert after["cards"] - before["cards"] >= 2  # fetched, then renewed (card_ttl 75 s)
    assert failed_after == [], failed_after[:3]
    # Type=exec: started is not ready (its gunicorn socket comes later on a loaded machine)
    home_ready = "dmr home probe /readyz --config /etc/dmr-appliance/home.toml"
    wait_until(lambda: home1.run(home_ready).rc == 0, 60, f"{HOME_1} ready again")


# --- 3. the PostgreSQL primary stopped under load -----------------------------------------------


def test_the_primary_stopped_patroni_promotes_home_reconnects_nothing_acknowledged_lost():
    old = leader()
    assert old, members()
    new = next(n for n in DATABASES if n != old)
    failures_before = failure_reports()
    writes_out = start_writes("primary-down")
    sender = host(RECIPIENT)
    out = "/root/send-primary-down.jsonl"
    start_unit(
        sender,
        "send-primary-down",
        f"python3 {put_file(sender, 'send_count.py')} 200 8 {out} {' '.join(ROUTERS)}",
        clean=out,
    )
    try:
        time.sleep(5)
        stopped_at = time.time()
        ok(host(old), "systemctl stop patroni")
        down_at = time.time()  # its PostgreSQL has stopped: no write can reach it now
        wait_until(lambda: leader() == new, 60, f"{new} promoted", every=0.2)
        promoted_at = time.time()
        wait_unit_done(sender, "send-primary-down", "200 messages sent", timeout=300)
    finally:
        calls = stop_writes("primary-down", writes_out)
        ok(host(old), "systemctl start patroni")
    results = jsonl(sender, out)
    writes = [c for c in calls if c["what"] == "write"]
    # The first acknowledged write that began once the old primary was down: on the new one.
    first_write = next((c["t"] for c in writes if c["ok"] and c["started"] >= down_at), None)
    acknowledged = {f"{writes_prefix('primary-down')}-{c['n']}" for c in writes if c["ok"]}
    present = {p["id"] for p in json.loads(admin("participants", "list", "--json"))}
    failures_after = failure_reports()
    counts = reconcile(results)
    wait_until(lambda: replica_streaming(old), 120, f"{old} back as a replica")
    figures(
        "3 primary stopped",
        old_primary=old,
        new_primary=new,
        stop_s=round(down_at - stopped_at, 1),
        promoted_s=round(promoted_at - stopped_at, 1),
        stop_to_first_write_s=None if first_write is None else round(first_write - stopped_at, 1),
        writes_acknowledged=len(acknowledged),
        writes_failed=sum(1 for c in writes if not c["ok"]),
        writes_failed_first=[c["error"] for c in writes if not c["ok"]][:2],
        acknowledged_lost=len(acknowledged - present),
        failures_lost=len(failures_before - failures_after),
        **counts,
        old_primary_back_as="replica",
    )
    assert first_write is not None and first_write - stopped_at < 30
    assert acknowledged - present == set()
    assert failures_before <= failures_after
    assert counts["delivered"] == 200 and counts["not_ok"] == 0, counts


# --- 4. a rotation through home-2 while home-1 signs --------------------------------------------


def test_keys_rotated_through_home_2_while_home_1_signs_every_token_verifies_at_the_relay():
    home2 = host(HOME_2)
    call = put_file(home2, "home_call.py")
    keys_before = json.loads(ok(home2, f"python3 {call} {OWN_HOME} keys").splitlines()[1])
    block_home(ROUTER, HOME_2)  # every token through the router: signed by home-1
    try:
        rotated = json.loads(ok(home2, f"python3 {call} {OWN_HOME} rotate").splitlines()[1])
        results = send_count(100, 10, "rotation")
    finally:
        unblock(ROUTER)
    home1 = host(HOME_1)
    keys_home_1 = json.loads(
        ok(home1, f"python3 {put_file(home1, 'home_call.py')} {OWN_HOME} keys").splitlines()[1]
    )
    counts = reconcile(results)
    refused = Counter(a["status"] for r in results for a in r["attempts"] if a["status"] >= 400)
    figures(
        "4 rotation via home-2, home-1 signing",
        **counts,
        keys_before=len(keys_before),
        keys_after_seen_by_home_1=len(keys_home_1),
        rotated=rotated["active"],
        refusals=dict(refused),
    )
    assert counts["delivered"] == 100 and counts["not_ok"] == 0, counts
    assert not any(s in (401, 403) for s in refused), refused
    active_at_home_1 = [k["kid"] for k in keys_home_1 if k["status"] == "active"]
    assert active_at_home_1 == [rotated["active"]], keys_home_1
    assert rotated["active"] not in {k["kid"] for k in keys_before}
