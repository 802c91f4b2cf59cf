"""HomeClient: every answer becomes a result or a DmrError, never another exception."""

from __future__ import annotations

import json

import pytest
import requests

from dmr_appliance.client.home import HomeClient
from dmr_appliance.errors import DmrError
from dmr_appliance.wire.outcome import transient


class FakeSession(requests.Session):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__()
        self.answer = (status, body)

    def request(self, method, url, **kwargs):  # type: ignore[override]
        resp = requests.Response()
        resp.status_code, resp._content = self.answer
        resp.reason = "Reason"
        return resp


def client(status: int, body: bytes) -> HomeClient:
    return HomeClient("https://home.test/v1", cert="c.pem", key="c.key", ca="ca.pem",
                      session=FakeSession(status, body))


def test_a_json_answer_is_returned():
    assert client(200, b'{"keys": []}').list_keys() == []


def test_a_problem_becomes_its_dmr_error():
    problem = {"type": "urn:dmr:problem:participant-not-found", "title": "Not found",
               "status": 404, "detail": "no participant 'x'"}
    with pytest.raises(DmrError) as caught:
        client(404, json.dumps(problem).encode()).get_participant("x")
    assert (caught.value.code, caught.value.status) == ("participant-not-found", 404)


def test_a_success_without_json_is_a_transient_dmr_error():
    # A reporter retries or spools on a DmrError; anything else would lose the report.
    with pytest.raises(DmrError) as caught:
        client(200, b"<html>welcome to nginx</html>").report_failure({"message_id": "m"})
    assert caught.value.code == "home-bad-answer" and transient(caught.value)


@pytest.fixture
def keys_server():
    """A real HTTP server on loopback answering GET /v1/keys (how a router passes home on)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"keys": [{"kid": "k1"}]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_an_unreachable_router_passes_the_call_to_the_next(keys_server):
    from tests.support.processes import free_port

    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    home = HomeClient([down, keys_server], cert="c.pem", key="c.key", ca="ca.pem",
                      session=requests.Session())
    assert home.list_keys() == [{"kid": "k1"}]
    assert home.base_url == keys_server  # it keeps to the one that answered
    assert home.list_keys() == [{"kid": "k1"}]


def test_every_router_unreachable_names_them_all():
    from tests.support.processes import free_port

    urls = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    home = HomeClient(urls, cert="c.pem", key="c.key", ca="ca.pem", session=requests.Session())
    with pytest.raises(DmrError) as caught:
        home.list_keys()
    assert caught.value.code == "home-unreachable" and transient(caught.value)
    assert all(u in caught.value.detail for u in urls)
