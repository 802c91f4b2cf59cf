"""HomeClient: every answer becomes a result or a DmrError, never another exception."""

from __future__ import annotations

import json

import pytest
import requests

from dmr_appliance.client.credentials import transient
from dmr_appliance.client.home import HomeClient
from dmr_appliance.errors import DmrError


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
