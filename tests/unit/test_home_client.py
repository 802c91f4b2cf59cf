"""wire.home.HomeClient against real servers on loopback: every answer becomes a result or
a DmrError, failover passes on what the caller chose, and the relay's calls (the sync
long poll, heartbeats with a deadline) have the shape home takes."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest
import requests

from dmr_appliance.errors import DmrError
from dmr_appliance.local.processes import free_port
from dmr_appliance.wire.home import HomeClient, HomeRefused, SyncAnswer
from dmr_appliance.wire.outcome import transient
from tests.support.answering import Answer, AnsweringServer

WIRE = Path(__file__).resolve().parents[2] / "dmr_appliance" / "wire"


@pytest.fixture
def server():
    with AnsweringServer() as running:
        yield running


def plain(*urls: str, **kwargs) -> HomeClient:
    return HomeClient(list(urls), session=requests.Session(), **kwargs)


def down() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused


def test_a_json_answer_is_returned(server):
    server.answer = Answer(body=b'{"keys": [{"kid": "k1"}]}')
    assert plain(server.url).list_keys() == [{"kid": "k1"}]
    assert server.seen[0].method == "GET" and server.seen[0].path == "/v1/keys"


def test_a_problem_becomes_its_dmr_error(server):
    problem = {
        "type": "urn:dmr:problem:participant-not-found",
        "title": "Not found",
        "status": 404,
        "detail": "no participant 'x'",
    }
    server.answer = Answer(404, json.dumps(problem).encode())
    with pytest.raises(HomeRefused) as caught:
        plain(server.url).get_participant("x")
    assert (caught.value.code, caught.value.status) == ("participant-not-found", 404)
    assert caught.value.detail == "no participant 'x'" and not transient(caught.value)


def test_a_page_from_in_between_is_a_home_error_with_its_retry_after(server):
    server.answer = Answer(503, b"<html>busy</html>", {"Retry-After": "7"})
    with pytest.raises(HomeRefused) as caught:
        plain(server.url).list_instances()
    assert (caught.value.code, caught.value.retry_after) == ("home-error", 7.0)
    assert caught.value.detail == "home answered 503 Service Unavailable"
    assert transient(caught.value)


def test_a_success_without_json_is_a_transient_dmr_error(server):
    # A reporter retries or spools on a DmrError; anything else would lose the report.
    server.answer = Answer(body=b"<html>welcome to nginx</html>")
    with pytest.raises(DmrError) as caught:
        plain(server.url).report_failure({"message_id": "m"})
    assert caught.value.code == "home-bad-answer" and transient(caught.value)


def test_a_redirect_is_not_followed(server):
    # A client certificate is shown to home only: never to where a redirect points.
    server.answer = Answer(302, b"", {"Location": "https://elsewhere.example/"})
    with pytest.raises(HomeRefused) as caught:
        plain(server.url).list_keys()
    assert caught.value.status == 302 and len(server.seen) == 1


def test_an_unreachable_router_passes_the_call_to_the_next(server):
    server.answer = Answer(body=b'{"keys": []}')
    home = plain(down(), server.url)
    assert home.list_keys() == []
    assert home.base_url == server.url  # it keeps to the one that answered
    assert home.list_keys() == [] and len(server.seen) == 2


def test_every_router_unreachable_names_them_all():
    urls = [down(), down()]
    with pytest.raises(DmrError) as caught:
        plain(*urls).list_keys()
    assert caught.value.code == "home-unreachable" and transient(caught.value)
    assert all(u in caught.value.detail for u in urls)


def test_a_refusal_goes_to_the_next_url_only_when_every_failure_does(server):
    with AnsweringServer() as other:
        server.answer = Answer(502, b"")  # a router that cannot reach home
        other.answer = Answer(body=b'{"instances": []}')
        with pytest.raises(HomeRefused):  # the sender's and the CLI's: home's answer stands
            plain(server.url, other.url).list_instances()
        failed = []
        home = plain(
            server.url,
            other.url,
            any_failure_fails_over=True,
            on_failure=lambda call, url, exc: failed.append((call, url, exc.status)),
        )
        assert home.list_instances() == [] and home.base_url == other.url
        assert failed == [("instances", server.url, 502)]


def test_a_sync_long_poll_carries_the_etag_and_reads_beyond_its_wait(server):
    server.answer = Answer(
        body=b'{"version": 4}', headers={"ETag": '"4"', "X-DMR-Sync-Signature": "k1:sig"}, delay=1.2
    )
    home = plain(server.url, timeout=(1.0, 0.5))
    got = home.sync(etag='"3"', wait=1)  # answered after 1.2 s: within 0.5 + 1 s of reading
    assert got == SyncAnswer(b'{"version": 4}', '"4"', "k1:sig") and got.document["version"] == 4
    assert server.seen[0].path == "/v1/sync?wait=1"
    assert server.seen[0].headers["If-None-Match"] == '"3"'
    server.answer = Answer(304, b"")
    assert home.sync(etag='"4"', wait=1) is None
    assert home.sync(accept=lambda answer: pytest.fail("a 304 has nothing to accept")) is None


def test_what_accept_raises_fails_that_url_over(server):
    with AnsweringServer() as other:
        server.answer, other.answer = Answer(body=b'{"version": 1}'), Answer(body=b'{"version": 2}')

        def accept(answer: SyncAnswer) -> int:
            if answer.document["version"] < 2:
                raise ValueError("older")
            return answer.document["version"]

        home = plain(server.url, other.url, any_failure_fails_over=True)
        assert home.sync(accept=accept) == 2 and home.base_url == other.url


def test_a_heartbeat_sends_what_home_takes(server):
    home = plain(server.url)
    sent = home.heartbeat(
        instance="relay-1",
        address="10.0.0.5:8801",
        version="1.0",
        sync_version=3,
        counters={"messages": 2},
        sync_age=1.5,
    )
    assert (
        json.loads(server.seen[0].body)
        == sent
        == {
            "instance": "relay-1",
            "address": "10.0.0.5:8801",
            "version": "1.0",
            "sync_version": 3,
            "counters": {"messages": 2},
            "sync_age": 1.5,
        }
    )
    left = home.heartbeat(
        instance="relay-1", address="a", version="1.0", sync_version=3, leaving=True
    )
    assert left["leaving"] is True and "sync_age" not in left


def test_a_deadline_bounds_every_url_together(server):
    with AnsweringServer() as other:
        server.answer = other.answer = Answer(delay=5.0)  # both hang
        home = plain(server.url, other.url, any_failure_fails_over=True)
        started = time.monotonic()
        with pytest.raises(DmrError) as caught:
            home.heartbeat(
                instance="relay-1",
                address="a",
                version="1",
                sync_version=0,
                leaving=True,
                deadline=time.monotonic() + 0.5,
            )
        assert time.monotonic() - started < 1.0
        assert caught.value.code == "home-unreachable"


def test_missing_tls_files_say_so(tmp_path):
    home = HomeClient(
        down().replace("http:", "https:"),
        cert=tmp_path / "c.pem",
        key=tmp_path / "c.key",
        ca=tmp_path / "ca.pem",
    )
    with pytest.raises(DmrError) as caught:
        home.list_keys()
    assert caught.value.code == "tls-file-missing"


def test_wire_imports_nothing_above_it():
    above = (
        "dmr_appliance.client",
        "dmr_appliance.relay",
        "dmr_appliance.home",
        "dmr_appliance.cli",
        "dmr_appliance.local",
    )
    for path in WIRE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(above), f"{path.name}: {node.module}"
