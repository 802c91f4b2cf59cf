"""Operations on a running local stack: metrics scraped under load, the router's exporter,
the status page in headless Chromium, and failed messages re-sent once the recipient is
back. One stack for the module (two relays, real gunicorn, nginx and TLS)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dmr_appliance.client.resend import retry_failed
from dmr_appliance.wire.retry import RetryPolicy
from tests.support import stack_kit
from tests.support.monitoring import named_metrics

pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs_nginx,
    pytest.mark.stack(relays=2, rooms={"ops": ("alice", "bob")}),
]

CHROMIUM = shutil.which("chromium")
OUTPUT = Path(
    os.environ.get("DMR_TEST_OUTPUT") or Path(__file__).parents[2] / "build" / "test-output"
)
FAST = RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.1)


def scrape(session, url: str) -> dict[tuple, float]:
    resp = session.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def total(samples: dict[tuple, float], name: str, **labels: str) -> float:
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == x for k, x in labels.items())
    )


def check_histograms(samples: dict[tuple, float]) -> int:
    """Every histogram series: buckets never fall, +Inf is the count. Returns the series."""
    series: dict[tuple, list[tuple[float, float]]] = {}
    for (name, labels), value in samples.items():
        if name.endswith("_bucket"):
            rest = tuple(kv for kv in labels if kv[0] != "le")
            le = float(dict(labels)["le"])
            series.setdefault((name.removesuffix("_bucket"), rest), []).append((le, value))
    for (base, rest), buckets in series.items():
        counts = [v for _, v in sorted(buckets)]
        assert counts == sorted(counts), (base, rest, buckets)
        assert counts[-1] == samples[(base + "_count", rest)], (base, rest)
    return len(series)


def test_scrapes_under_load_count_every_request(stack):
    admin = stack.session()
    targets = {name: stack.relay_url(name) + "/metrics" for name in stack.relay_names}
    # Home as Prometheus reaches it: at its gate (the router's rate limit is for people).
    home = f"https://127.0.0.1:{stack.ports['home']}"
    targets["home"] = home + "/metrics"
    before = {name: scrape(admin, url) for name, url in targets.items()}

    stop, scrapes = threading.Event(), Counter()

    def keep_scraping() -> None:  # every app, all through the load, parsed each time
        session = stack.session()
        while not stop.is_set():
            for name, url in targets.items():
                scrape(session, url)
                scrapes[name] += 1

    scraper = threading.Thread(target=keep_scraping)
    scraper.start()
    try:
        with stack_kit.sender(stack) as alice, ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: alice.send("ops", ["bob"], {"n": i}), range(150)))
            home_gets = list(
                pool.map(
                    lambda _: admin.get(home + "/v1/participants", timeout=10).status_code,
                    range(40),
                )
            )
    finally:
        stop.set()
        scraper.join()
    assert all(r.ok for r in results) and home_gets == [200] * 40
    assert min(scrapes.values()) >= 3, scrapes

    after = {name: scrape(admin, url) for name, url in targets.items()}
    tries = sum(len(r.attempts) for r in results)
    # a try the router's rate limit refused (429) never reached a relay
    relayed = sum(a.status != 429 for r in results for a in r.attempts)
    relays = stack.relay_names

    def delta(name: str, metric: str, **labels: str) -> float:
        return total(after[name], metric, **labels) - total(before[name], metric, **labels)

    assert sum(delta(r, "dmr_relay_messages_total", outcome="delivered") for r in relays) == 150
    assert sum(delta(r, "dmr_relay_deliveries_total", outcome="delivered") for r in relays) == 150
    assert (
        sum(
            delta(r, "dmr_relay_delivery_duration_seconds_count", outcome="delivered")
            for r in relays
        )
        == 150
    )
    assert (
        sum(
            delta(
                r, "dmr_relay_request_duration_seconds_count", route="/v1/messages", method="POST"
            )
            for r in relays
        )
        == relayed
    )
    assert all(delta(r, "dmr_relay_messages_total") > 0 for r in relays)  # both carried some
    assert (
        delta(
            "home",
            "dmr_home_request_duration_seconds_count",
            route="/v1/participants",
            method="GET",
            code="200",
        )
        == 40
    )
    for name in targets:
        assert check_histograms(after[name]) >= 2
    for r in relays:
        assert total(after[r], "dmr_relay_deliveries_in_flight") == 0
        assert total(after[r], "dmr_relay_ready") == 1
        assert 0 <= total(after[r], "dmr_relay_sync_age_seconds") < 60
    assert total(after["home"], "dmr_home_instances", health="healthy") == 2
    print(
        f"\nscraped {dict(scrapes)} times during 150 messages ({tries} tries) and 40 home "
        f"requests; every count matched"
    )


@pytest.mark.skipif(
    not shutil.which("prometheus-nginx-exporter"), reason="needs Debian's prometheus-nginx-exporter"
)
def test_router_figures_come_through_the_nginx_exporter(stack):
    assert stack.exporter_url is not None
    admin = stack.session()
    first = scrape(admin, stack.exporter_url)
    assert first[("nginx_up", ())] == 1
    for _ in range(5):
        admin.get(stack.router_url + "/.well-known/jwks.json", timeout=5)
    second = scrape(admin, stack.exporter_url)
    assert second[("nginx_http_requests_total", ())] >= first[("nginx_http_requests_total", ())] + 5


def test_rules_and_dashboard_name_only_metrics_the_stack_exports(stack):
    admin = stack.session()
    refused = admin.post(stack.relay_url("relay-1") + "/v1/messages", json={}, timeout=5)
    assert refused.status_code == 403  # not a participant: a refusal, its family now exported
    exported: set[str] = set()
    urls = [stack.relay_url(r) + "/metrics" for r in stack.relay_names]
    urls += [f"https://127.0.0.1:{stack.ports['home']}/metrics"]
    urls += [stack.exporter_url] if stack.exporter_url else []
    for url in urls:
        exported |= {name for name, _ in scrape(admin, url)}
    wanted = named_metrics()
    if not stack.exporter_url:  # the router's names need Debian's exporter
        wanted = {n for n in wanted if not n.startswith("nginx_")}
    assert wanted - exported == set()
    print(f"\n{len(wanted)} metric names in the rules and the dashboard, all exported")


def test_a_failed_message_is_resent_once_the_recipient_is_back(stack):
    with stack_kit.sender(stack, policy=FAST) as alice:
        stack.stop_service("recipient")
        try:
            down = [alice.send("ops", ["bob"], {"while": "down", "n": i}) for i in range(2)]
        finally:
            stack.start_service("recipient")
        assert [r.failed for r in down] == [["bob"], ["bob"]] and all(r.reported for r in down)
        first, second = (r.message_id for r in down)

        resent = retry_failed(alice)  # every open failure of alice's, oldest first
    assert [r.message_id for r in resent] == [first, second]
    assert all(r.ok and r.resent and r.resolved for r in resent)
    admin = stack.admin_client()
    for mid in (first, second):
        shown = admin.get_failure(mid)
        assert shown["status"] == "resolved" and shown["resolved_by"] == "participant:alice"
        assert "delivered to bob" in shown["note"]
    received = [json.loads(x) for x in stack.recipient_log.read_text().splitlines()]
    for mid in (first, second):
        processed = [
            e for e in received if e["id"] == mid and e["status"] == 200 and not e["duplicate"]
        ]
        assert len(processed) == 1, processed  # delivered, once
    with stack_kit.sender(stack) as alice:
        assert retry_failed(alice) == []  # nothing open any more


def test_dmr_send_retry_failed(stack):
    with stack_kit.sender(stack, policy=FAST) as alice:
        stack.stop_service("recipient")
        try:
            failed = alice.send("ops", ["bob"], {"while": "down"})
        finally:
            stack.start_service("recipient")
    assert failed.failed == ["bob"]
    proc = stack_kit.dmr_send(stack, "--retry-failed", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [doc] = [json.loads(x) for x in proc.stdout.splitlines()]
    assert (doc["id"], doc["ok"], doc["resent"], doc["resolved"]) == (
        failed.message_id,
        True,
        True,
        True,
    )
    plain = stack_kit.dmr_send(stack, "--retry-failed")
    assert plain.returncode == 0
    assert b"0 open failure(s) of alice re-sent: 0 delivered and resolved" in plain.stdout


# --- the status page, in headless Chromium -----------------------------------------------


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium as TESTBED.md runs it (no network of its own), console to stderr."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_console_check_catches_a_broken_page(tmp_path):
    """The check below must be able to fail: a script error and a missing asset show."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><title>x</title><img src="missing.png"><script>nosuch()</script>'
    )
    run = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile")
    found = console_messages(run.stderr)
    assert any("nosuch is not defined" in m for m in found), run.stderr[-2000:]


@pytest.mark.once
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_status_page_renders_traffic_in_chromium(stack, tmp_path):
    with stack_kit.sender(stack) as alice:
        for i in range(30):
            assert alice.send("ops", ["bob"], {"n": i}).ok
    with stack_kit.sender(stack, policy=FAST, name="bob") as bob:  # one open failure
        stack.stop_service("recipient")
        try:
            assert bob.send("ops", ["alice"], {"marker": "payload-zq9"}).reported
        finally:
            stack.start_service("recipient")
    admin = stack.session()
    deadline = time.monotonic() + 30  # the next heartbeat of each relay carries the counts
    while True:
        html = admin.get(stack.status_url, timeout=10).text
        if html.count('class="delivered"') >= 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page = OUTPUT / "status-page.html"
    page.write_text(html)
    shot = OUTPUT / "status-page.png"
    shot.unlink(missing_ok=True)

    rendered = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "p1")
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = rendered.stdout
    assert dom.count("<svg") == len(stack.relay_names) and "<polyline" in dom
    assert dom.count('class="delivered"') >= 2, "the chart has no delivered bar"
    assert "<table>" in dom and "relay-1" in dom and "relay-2" in dom
    assert "payload-zq9" not in dom  # payloads never show; the failure's row does
    assert "bob" in dom and "sync age" in dom
    assert console_messages(rendered.stderr) == []

    drawn = chromium(
        f"--screenshot={shot}", "--window-size=1280,1400", page.as_uri(), profile=tmp_path / "p2"
    )
    assert drawn.returncode == 0 and shot.stat().st_size > 10_000, drawn.stderr[-2000:]
    assert console_messages(drawn.stderr) == []
    print(
        f"\nstatus page: {page} ({len(html)} bytes), screenshot: {shot} "
        f"({shot.stat().st_size} bytes)"
    )
