"""The whole site converged by playbooks/site.yml, then the faults the design promises to
survive, in this order (pytest keeps the file's order; each step leaves the site whole):

1. a message sent through router 1 is delivered;
2. relay 1 stopped: 50 messages through both routers, all delivered, none twice;
3. router 1 stopped: the sender fails over to router 2, all delivered;
4. a participant revoked at home is refused by every relay within 1 s;
5. both relays' heartbeats at home; one relay stopped cleanly shows left at once, then,
   killed (a crash), stale, then down;
6. the log host holds the router's, a relay's and home's lines for one message, joined by
   its request id (dmr trace on the log host's tree), and kept a minute's outage;
7. the firewall: the recipient host cannot reach a relay's or home's port, a router and
   the monitoring network (this control node) can, and a reload keeps an established
   connection;
8. upgrade.yml to a rebuilt version while a sender keeps sending 10 messages/s: every
   message delivered (reconciled by id at the recipient), every host on the new version;
9. a relay setting changed (its log level) and playbooks/relays.yml run under the same load:
   each relay drained, restarted and ready again before the next one's turn (their restarts
   in the journal do not overlap), every message delivered, none twice.

Each step prints one line "site: STEP: {figures}" (molecule verify runs pytest with -s).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "molecule"))
import helpers  # noqa: E402
import remote  # noqa: E402
from remote import host, ok, put, wait_until  # noqa: E402

PKI = "/etc/dmr-appliance/pki"
ROUTERS = ["https://router-1:8443", "https://router-2:8443"]
RECEIVED = "/var/lib/dmr-test-recipient/received.jsonl"
ENDPOINT = "https://recipient:9443/inbox"
FILES = Path(__file__).parent / "files"
RELAY_UNITS = "dmr-relay.service dmr-relay-gate.service"
RELAYS = ("relay-1", "relay-2")


figures = remote.figures_of("site")
units = remote.Units("dmr-site")
start_unit, wait_unit_done = units.start, units.wait_done


def put_file(h, name: str) -> str:
    """tests/files/NAME copied to the host's /root; its path there."""
    return remote.put_file(h, FILES / name)


def admin(*args: str) -> str:
    """dmr's admin CLI on router 1 (its admin certificate; home through its own nginx)."""
    return ok(host("router-1"), "dmr " + " ".join(shlex.quote(a) for a in args))


def send(*args: str, routers=ROUTERS, who: str = "alice") -> list[dict]:
    """dmr send on the recipient host (the participants' host); one result per message."""
    argv = [
        "dmr",
        "send",
        "--as",
        who,
        "--room",
        "lobby",
        "--to",
        "bob",
        "--json",
        *[a for r in routers for a in ("--router", r)],
        *args,
    ]
    done = host("recipient").run("timeout 300 " + " ".join(shlex.quote(a) for a in argv))
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert results, f"dmr send printed no result:\n{done.stdout}\n{done.stderr}"
    return results


def received() -> list[dict]:
    text = host("recipient").file(RECEIVED).content_string
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def reconcile(ids: list[str]) -> dict:
    """How the recipient saw these ids: processed once, twice, duplicates absorbed, missing."""
    seen = received()
    processed = Counter(r["id"] for r in seen if not r["duplicate"] and 200 <= r["status"] < 300)
    absorbed = Counter(r["id"] for r in seen if r["duplicate"])
    return {
        "sent": len(ids),
        "delivered": sum(1 for i in ids if processed[i] >= 1),
        "processed_twice": sum(1 for i in ids if processed[i] > 1),
        "duplicates_absorbed": sum(absorbed[i] for i in ids),
        "missing": [i for i in ids if not processed[i]],
    }


def batch(count: int, step: str) -> str:
    path = f"/root/batch-{step}.jsonl"
    put(
        host("recipient"),
        path,
        "\n".join(json.dumps({"payload": {"step": step, "n": n}}) for n in range(count)),
    )
    return path


def relay_ready(name: str) -> bool:
    return host(name).run("dmr relay probe /readyz --config /etc/dmr-appliance/relay.toml").rc == 0


def instances() -> dict[str, dict]:
    return {i["instance"]: i for i in json.loads(admin("instances", "--json"))}


def under_load(play, rate: float = 10):
    """PLAY() (a playbook run) while alice sends RATE messages a second through both routers
    (files/load.py, from 3 s before to 3 s after): PLAY's result, the seconds it took, and
    one result per message sent."""
    sender = host("recipient")
    start_unit(
        sender,
        "load",
        f"python3 {put_file(sender, 'load.py')} --rate {rate:g} "
        f"--out /root/load.jsonl --stop /root/load.stop {' '.join(ROUTERS)}",
        clean="/root/load.jsonl /root/load.stop",
    )
    try:
        time.sleep(3)
        began = time.monotonic()
        done = play()
        took = time.monotonic() - began
        time.sleep(3)
    finally:
        ok(sender, "touch /root/load.stop")
    wait_unit_done(sender, "load", "the sender finished")
    results = [
        json.loads(x)
        for x in sender.file("/root/load.jsonl").content_string.splitlines()
        if x.strip()
    ]
    return done, took, results


# --- 0. the site as converged ---------------------------------------------------------------


def test_the_site_runs():
    for name in ("relay-1", "relay-2"):
        for unit in ("dmr-relay", "dmr-relay-gate", "rsyslog", "nftables"):
            assert host(name).service(unit).is_running, f"{name}: {unit}"
    for unit in ("dmr-home", "dmr-home-gate"):
        assert host("home-1").service(unit).is_running
    for name in ("router-1", "router-2"):
        assert host(name).service("nginx").is_running
    assert host("logs-1").socket("tcp://0.0.0.0:6514").is_listening
    for pid in ("alice", "bob", "mallory"):
        done = host("router-1").run(
            f"dmr participants add {pid} --endpoint {ENDPOINT}/{pid} --room lobby"
        )
        assert done.rc == 0 or "exists" in done.stdout + done.stderr, done.stderr
    wait_until(lambda: relay_ready("relay-1") and relay_ready("relay-2"), 60, "relays ready")


# --- 1. through router 1 ----------------------------------------------------------------------


def test_a_message_through_router_1_is_delivered():
    [result] = send("--data", '{"step": 1}', routers=ROUTERS[:1])
    assert result["ok"], result
    figures("1 router-1", **reconcile([result["id"]]), attempts=len(result["attempts"]))
    assert reconcile([result["id"]])["delivered"] == 1


# --- 2. a relay down --------------------------------------------------------------------------


def test_relay_1_stopped_50_messages_all_delivered_none_twice():
    relay = host("relay-1")
    ok(relay, f"systemctl stop {RELAY_UNITS}")
    try:
        results = send("--batch", batch(50, "relay-down"), "--parallel", "4")
    finally:
        ok(relay, f"systemctl start {RELAY_UNITS}")
    counts = reconcile([r["id"] for r in results])
    relays = Counter(r["relay"] for r in received() if r["id"] in {x["id"] for x in results})
    figures(
        "2 relay-1 stopped",
        **counts,
        by_relay=dict(relays),
        tries=sum(len(r["attempts"]) for r in results),
    )
    assert all(r["ok"] for r in results) and len(results) == 50
    assert counts["delivered"] == 50 and counts["processed_twice"] == 0, counts
    assert set(relays) == {"relay-2"}, relays
    wait_until(lambda: relay_ready("relay-1"), 60, "relay-1 ready again")


# --- 3. a router down -------------------------------------------------------------------------


def test_router_1_stopped_the_sender_fails_over_to_router_2():
    router = host("router-1")
    ok(router, "systemctl stop nginx")
    try:
        results = send("--batch", batch(20, "router-down"), "--parallel", "4")
    finally:
        ok(router, "systemctl start nginx")
    counts = reconcile([r["id"] for r in results])
    targets = Counter(a["target"].split("/v1")[0] for r in results for a in r["attempts"])
    figures("3 router-1 stopped", **counts, tries_by_router=dict(targets))
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:2]
    assert counts["delivered"] == 20 and counts["processed_twice"] == 0, counts
    assert targets["https://router-2:8443"] >= 20, targets


# --- 4. revocation ----------------------------------------------------------------------------


def test_a_revoked_participant_is_refused_by_every_relay_within_1_s():
    # mallory's sender holds a token and bob's card from before: what it sends afterwards
    # reaches the relays, which alone can refuse it (a new sender is refused by home).
    sender = host("recipient")
    script = put_file(sender, "stale_sender.py")
    start_unit(
        sender,
        "stale",
        f"python3 {script} 20 /root/stale.ready /root/stale.go "
        f"/root/stale.jsonl {' '.join(ROUTERS)}",
        clean="/root/stale.ready /root/stale.go /root/stale.jsonl",
    )
    before = json.loads(
        wait_until(
            lambda: (
                sender.file("/root/stale.ready").exists
                and sender.file("/root/stale.ready").content_string
            ),
            60,
            "mallory's first message",
        )
    )
    assert before["ok"], before
    versions = {
        n: json.loads(
            ok(host(n), "dmr relay probe /readyz --config /etc/dmr-appliance/relay.toml").split(
                " ", 3
            )[3]
        )["sync_version"]
        for n in RELAYS
    }
    for name, version in versions.items():
        relay = host(name)
        start_unit(
            relay,
            "watch",
            f"python3 {put_file(relay, 'watch_sync.py')} {version}",
            clean="/root/watch.out",
            stdout="/root/watch.out",
        )
    time.sleep(1)  # the watchers are polling
    revoke = put_file(host("router-1"), "revoke.py")
    revoked_at = float(ok(host("router-1"), f"python3 {revoke} mallory").split()[-1])
    seen = {}
    for name in versions:
        out = wait_until(
            lambda n=name: (
                host(n).file("/root/watch.out").content_string.strip()
                if host(n).file("/root/watch.out").exists
                else ""
            ),
            15,
            f"{name} saw the revocation",
        )
        seen[name] = round((float(out.split()[-1]) - revoked_at) * 1000)
    ok(sender, "touch /root/stale.go")
    wait_unit_done(sender, "stale", "mallory's sender finished")
    refused = [
        json.loads(x)
        for x in sender.file("/root/stale.jsonl").content_string.splitlines()
        if x.strip()
    ]
    statuses = Counter(a["status"] for r in refused for a in r["attempts"])
    by_relay = refusals_logged(revoked_at, len(refused))
    figures(
        "4 revocation",
        ms_by_relay=seen,
        sent=len(refused),
        refused=sum(not r["ok"] for r in refused),
        statuses=dict(statuses),
        refused_by_relay=by_relay,
        first_detail=next((a.get("detail") for r in refused for a in r["attempts"]), None),
    )
    assert all(ms <= 1000 for ms in seen.values()), seen
    assert len(refused) == 20 and not any(r["ok"] for r in refused), refused[:1]
    assert set(statuses) == {403}, statuses
    assert all(by_relay.values()) and sum(by_relay.values()) >= 20, by_relay


def refusals_logged(since: float, expected: int, timeout: float = 15) -> dict[str, int]:
    """Each relay's count of refusals, once journald has every line (it may lag behind the
    answers under load), or as it stands when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {n: refusals(n, since) for n in RELAYS}
        if (
            all(counts.values()) and sum(counts.values()) >= expected
        ) or time.monotonic() > deadline:
            return counts
        time.sleep(1)


def refusals(relay: str, since: float) -> int:
    """The relay's own log: messages it refused as from a revoked sender since then."""
    text = ok(host(relay), f"journalctl -u dmr-relay.service --since @{since:.0f} -o cat")
    lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    return sum(
        1 for x in lines if x.get("outcome") == "refused" and x.get("code") == "sender-revoked"
    )


# --- 5. heartbeats ----------------------------------------------------------------------------


# A runtime drop-in, removed afterwards: the killed relay stays dead, as a crashed host's
# would, rather than systemd restarting it (Restart=on-failure).
NO_RESTART = "/run/systemd/system/dmr-relay.service.d/zz-site-no-restart.conf"


def setting(name: str, kind: str, path: str) -> int:
    """A setting as the service on that host reads it (its file, else the default)."""
    code = (
        f"from dmr_appliance import config; print(config.load(config.KINDS[{kind!r}], "
        f"'/etc/dmr-appliance/{kind}.toml').{path})"
    )
    return int(ok(host(name), f"python3 -c {shlex.quote(code)}").strip())


def test_heartbeats_at_home_a_stopped_relay_left_a_killed_one_stale_then_down():
    # The example's settings (the defaults unless it sets others): a killed relay's last
    # beat is at most one interval old, so it is stale within stale_after and down within
    # down_after of the kill; the waits allow that and a few seconds more.
    stale_after = setting("home-1", "home", "heartbeats.stale_after")
    down_after = setting("home-1", "home", "heartbeats.down_after")
    interval = setting("relay-2", "relay", "sync.heartbeat_interval")
    slack = 10
    known = wait_until(
        lambda: (
            lambda i: (
                i
                if {"relay-1", "relay-2"} <= set(i)
                and all(i[n]["health"] == "healthy" for n in ("relay-1", "relay-2"))
                else None
            )
        )(instances()),
        30,
        "both relays healthy at home",
    )
    relay = host("relay-2")
    # A clean stop (SIGTERM): the agent's last beat says so before the unit is stopped.
    ok(relay, "systemctl stop dmr-relay.service")
    try:
        left = instances()["relay-2"]["health"]
    finally:
        ok(relay, f"systemctl start {RELAY_UNITS}")
    wait_until(lambda: instances()["relay-2"]["health"] == "healthy", 60, "relay-2 back")
    # A crash: SIGKILL to every process of the unit (gunicorn, its workers, the agent).
    ok(relay, f"mkdir -p {Path(NO_RESTART).parent}")
    put(relay, NO_RESTART, "[Service]\nRestart=no")
    ok(relay, "systemctl daemon-reload")
    ok(relay, "systemctl kill --signal=SIGKILL dmr-relay.service")
    killed = time.monotonic()
    try:
        wait_until(
            lambda: instances()["relay-2"]["health"] == "stale",
            stale_after + slack,
            "relay-2 stale",
            every=1,
        )
        stale_s = time.monotonic() - killed
        wait_until(
            lambda: instances()["relay-2"]["health"] == "down",
            down_after + slack - stale_s,
            "relay-2 down",
            every=1,
        )
        down_s = time.monotonic() - killed
    finally:
        ok(relay, f"rm -f {NO_RESTART}")
        ok(relay, "systemctl daemon-reload")
        relay.run("systemctl reset-failed dmr-relay.service")
        ok(relay, f"systemctl start {RELAY_UNITS}")
    figures(
        "5 heartbeats",
        healthy=sorted(known),
        stopped=left,
        stale_after_s=round(stale_s, 1),
        down_after_s=round(down_s, 1),
        settings={
            "stale_after": stale_after,
            "down_after": down_after,
            "heartbeat_interval": interval,
        },
    )
    assert left == "left", left
    assert stale_after - interval - 2 <= stale_s and down_after - interval - 2 <= down_s, (
        "judged before its settings",
        stale_s,
        down_s,
    )
    wait_until(lambda: instances()["relay-2"]["health"] == "healthy", 60, "relay-2 back")


# --- 6. central logging -----------------------------------------------------------------------


def test_the_log_host_holds_every_tiers_lines_for_a_failed_message_then_its_resend():
    """A message that fails (its recipient is down) touches every tier: the routers and a
    relay carry it, home records its failure report. The log host holds all their lines,
    joined by request ids; once the recipient is back, --retry-failed delivers it."""
    recipient, logs = host("recipient"), host("logs-1")
    ok(recipient, "systemctl stop dmr-test-recipient")
    try:
        [failed] = send("--data", '{"step": 6}', "--attempts", "1")
    finally:
        ok(recipient, "systemctl start dmr-test-recipient")
    assert not failed["ok"] and failed["reported"], failed
    mid = failed["id"]

    def traced():
        out = logs.run(f"dmr trace {mid} --log-dir /var/log/dmr --json").stdout
        lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        hosts = {x["host"] for x in lines}
        whole = (
            "home-1" in hosts
            and any(h.startswith("router") for h in hosts)
            and any(h.startswith("relay") for h in hosts)
        )
        return lines if whole else None

    lines = wait_until(traced, 30, "the message's lines from every tier on the log host")
    events = Counter(f"{x['host']}:{x['event']}" for x in lines)
    request_ids = {x["line"].get("request_id") for x in lines} - {None}
    assert any(e.startswith("home-1:failure-reported") for e in events), events
    one = logs.run("head -c 2 /var/log/dmr/home-1/dmr-home.log").stdout
    assert one.startswith("{"), "a line must be the JSON object, without a syslog prefix"

    ok(
        recipient,
        "timeout 30 bash -c 'until (exec 3<>/dev/tcp/127.0.0.1/9443); do sleep 0.2; done'",
    )
    resent = send("--retry-failed", routers=ROUTERS)
    mine = [r for r in resent if r["id"] == mid]
    counts = reconcile([mid])
    figures(
        "6 central logging",
        lines=len(lines),
        events=dict(events),
        request_ids=len(request_ids),
        resent=len(mine),
        resolved=sum(r.get("resolved", False) for r in mine),
        **counts,
    )
    assert mine and mine[0]["ok"] and mine[0]["resolved"], resent
    assert counts["delivered"] == 1 and counts["processed_twice"] == 0, counts


def test_a_log_host_outage_of_a_minute_loses_nothing():
    logs, relay = host("logs-1"), host("relay-1")
    ok(logs, "systemctl stop rsyslog")
    marks = [f"outage-{time.time_ns()}-{n}" for n in range(30)]
    try:
        for n, mark in enumerate(marks):  # lines from a dmr program, spread over the minute
            relay.run(f"logger -t dmr-outage-test {mark}")
            if n < len(marks) - 1:
                time.sleep(2)
    finally:
        ok(logs, "systemctl start rsyslog")
    path = "/var/log/dmr/relay-1/dmr-outage-test.log"
    got = wait_until(
        lambda: (lambda t: t if all(m in t for m in marks) else None)(
            logs.file(path).content_string if logs.file(path).exists else ""
        ),
        60,
        "the backlog delivered",
    )
    figures(
        "6 log host outage",
        outage_s=2 * (len(marks) - 1),
        lines=len(marks),
        delivered=sum(m in got for m in marks),
    )


# --- 7. firewall ------------------------------------------------------------------------------


def can_connect(h, target: str, port: int) -> bool:
    return h.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{target}/{port}'").rc == 0


def reachable_from_here(name: str, port: int) -> bool:
    """This control node (the Docker network's gateway: the scenario's monitoring network)
    to the host's address on that network."""
    address = ok(host(name), "hostname -I").split()[0]
    try:
        socket.create_connection((address, port), timeout=3).close()
    except OSError:
        return False
    return True


def test_the_firewall_lets_only_the_site_through():
    outside, router = host("recipient"), host("router-1")
    found = {
        "monitoring->relay-1:8801": reachable_from_here("relay-1", 8801),
        "monitoring->home-1:8700": reachable_from_here("home-1", 8700),
        "recipient->relay-1:8801": can_connect(outside, "relay-1", 8801),
        "recipient->home-1:8700": can_connect(outside, "home-1", 8700),
        "recipient->logs-1:6514": can_connect(outside, "logs-1", 6514),
        "recipient->router-1:8443": can_connect(outside, "router-1", 8443),
        "router-1->relay-1:8801": can_connect(router, "relay-1", 8801),
        "router-1->home-1:8700": can_connect(router, "home-1", 8700),
        "relay-1->home-1:8700": can_connect(host("relay-1"), "home-1", 8700),
    }
    figures("7 firewall", **found)
    assert found == {
        "monitoring->relay-1:8801": True,
        "monitoring->home-1:8700": True,
        "recipient->relay-1:8801": False,
        "recipient->home-1:8700": False,
        "recipient->logs-1:6514": False,
        "recipient->router-1:8443": True,
        "router-1->relay-1:8801": True,
        "router-1->home-1:8700": True,
        "relay-1->home-1:8700": True,
    }


def test_the_firewall_kept_debians_nftables_conf_and_left_9113_closed():
    router = host("router-1")
    assert "flush ruleset" in router.file("/etc/nftables.conf.dmr-orig").content_string
    assert "dmr_firewall" in router.file("/etc/nftables.conf").content_string
    assert "9113" not in ok(router, "nft list table inet dmr_filter")


def test_a_firewall_reload_keeps_an_established_connection():
    router, relay = host("router-1"), host("relay-1")
    # A plain request on the TLS port after a pause: nginx answers it (400) on the same
    # connection only if the connection survived the reload in between.
    start_unit(
        router,
        "held",
        'bash -c "exec 3<>/dev/tcp/relay-1/8801; sleep 4; printf '
        "'GET / HTTP/1.0\\r\\n\\r\\n' >&3; timeout 5 cat <&3\"",
        clean="/root/held.out",
        stdout="/root/held.out",
    )
    time.sleep(1.5)
    ok(relay, "systemctl reload nftables")
    answer = wait_until(
        lambda: (
            router.file("/root/held.out").content_string
            if router.file("/root/held.out").exists
            and "HTTP/" in router.file("/root/held.out").content_string
            else ""
        ),
        15,
        "an answer on the held connection",
    )
    figures("7 firewall reload", answer=answer.splitlines()[0])
    assert answer.startswith("HTTP/1.1 400")


# --- 8. rolling upgrade -----------------------------------------------------------------------


def test_a_rolling_upgrade_under_load_loses_no_message():
    deb = os.environ.get("DMR_MOLECULE_DEB_NEXT")
    assert deb and Path(deb).is_file(), "DMR_MOLECULE_DEB_NEXT: the rebuilt .deb to upgrade to"
    version = Path(deb).name.split("_")[1]
    upgrade, took, results = under_load(
        lambda: helpers.playbook(
            playbook=ROOT / "playbooks/upgrade.yml",
            extra_vars={"dmr_package_deb": deb},
            timeout=1200,
        )
    )
    assert upgrade.returncode == 0, helpers.tail(upgrade, 120)
    counts = reconcile([r["id"] for r in results])
    failed = [r for r in results if not r["ok"]]
    versions = {
        n: host(n).run("dmr --version").stdout.split()[-1]
        for n in ("home-1", "relay-1", "relay-2", "router-1", "router-2", "logs-1")
    }
    figures(
        "8 rolling upgrade",
        **{k: v for k, v in counts.items() if k != "missing"},
        failed=len(failed),
        unaccounted=len(counts["missing"]),
        upgrade_s=round(took, 1),
        version=version,
        hosts=versions,
    )
    assert len(results) >= 10 * took * 0.5, f"the sender sent too little: {len(results)}"
    assert not failed and not counts["missing"] and counts["processed_twice"] == 0, (
        failed[:2],
        counts,
    )
    assert set(versions.values()) == {version}, versions


# --- 9. a relay config change, one relay at a time --------------------------------------------

# systemd's own journal lines for a unit's jobs (systemd.catalog): a stop job began, a
# start job finished.
STOPPING, STARTED = "de5b426a63be47a7b6ac3eaac82e2f6f", "39f53479d3a045ac8e11786248231fbf"
DRAINED = "RUNNING HANDLER [dmr_service : Drain the relay]"


def restarts(name: str, since: float) -> list[tuple[float, float]]:
    """dmr-relay.service's restarts on the host since then: (stop began, start done), s."""
    out = ok(
        host(name),
        f"journalctl -u dmr-relay.service --since @{since:.0f} -o json --output-fields MESSAGE_ID",
    )
    jobs = [
        (int(x["__REALTIME_TIMESTAMP"]) / 1e6, x.get("MESSAGE_ID"))
        for x in map(json.loads, out.splitlines())
        if x.get("MESSAGE_ID") in (STOPPING, STARTED)
    ]
    spans, began = [], None
    for at, kind in sorted(jobs):
        if kind == STOPPING and began is None:
            began = at
        elif kind == STARTED and began is not None:
            spans.append((began, at))
            began = None
    return spans


def test_a_relay_config_change_restarts_one_relay_at_a_time_under_load_losing_no_message():
    since = time.time() - 1
    # A harmless, real change of relay.toml (the role's dmr_relay_log_level; info before).
    # The package stays as installed (step 8 upgraded it).
    play, took, results = under_load(
        lambda: helpers.playbook(
            "--skip-tags",
            "package",
            playbook=ROOT / "playbooks/relays.yml",
            extra_vars={"dmr_relay_log_level": "warning"},
            timeout=600,
        )
    )
    assert play.returncode == 0, helpers.tail(play, 120)
    counts = reconcile([r["id"] for r in results])
    failed = [r for r in results if not r["ok"]]
    spans = {n: restarts(n, since) for n in RELAYS}
    lines = play.stdout.splitlines()
    drained = [
        y.split("[")[-1].rstrip("]")
        for i, x in enumerate(lines)
        if x.startswith(DRAINED)
        for y in lines[i + 1 : i + 3]
        if y.startswith("changed: [")
    ]
    figures(
        "9 relay config change",
        **{k: v for k, v in counts.items() if k != "missing"},
        failed=len(failed),
        unaccounted=len(counts["missing"]),
        play_s=round(took, 1),
        drained=drained,
        restarts={
            n: [[round(a - since, 1), round(b - since, 1)] for a, b in s] for n, s in spans.items()
        },
    )
    for name in RELAYS:
        assert "warning" in ok(host(name), "grep '^log_level' /etc/dmr-appliance/relay.toml")
        assert len(spans[name]) == 1, spans
    assert sorted(drained) == sorted(RELAYS), drained
    first, second = sorted(span for name in RELAYS for span in spans[name])
    assert first[1] < second[0], f"the relays' restarts overlap: {spans}"
    assert len(results) >= 10 * took * 0.5, f"the sender sent too little: {len(results)}"
    assert not failed and not counts["missing"] and counts["processed_twice"] == 0, (
        failed[:2],
        counts,
    )
    wait_until(lambda: relay_ready("relay-1") and relay_ready("relay-2"), 60, "relays ready")
