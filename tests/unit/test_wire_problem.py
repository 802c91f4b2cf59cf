"""wire.problem.read_problem: our problem documents, foreign ones and none at all."""

from __future__ import annotations

import pytest

from dmr_appliance.wire.problem import read_problem


def test_our_problem_is_read_whole():
    body = (
        b'{"type": "urn:dmr:problem:card-expired", "title": "Token refused",'
        b' "detail": "the card expired", "field": "to[2]"}'
    )
    problem = read_problem(422, {"Retry-After": "3", "X-Request-Id": "r1"}, body)
    assert (problem.code, problem.title, problem.detail) == (
        "card-expired",
        "Token refused",
        "the card expired",
    )
    assert (problem.retry_after, problem.request_id, problem.field_index) == (3.0, "r1", 2)
    error = problem.error(default_code="home-error")
    assert (error.code, error.status, error.detail) == ("card-expired", 422, "the card expired")


@pytest.mark.parametrize(
    "body",
    [
        None,
        b"",
        b"<html>502 Bad Gateway</html>",
        b"[1, 2]",
        b'{"type": "https://example.org/other"}',
        b"\xff\xfe{",
    ],
)
def test_anything_else_reads_as_no_code(body):
    problem = read_problem(502, {}, body, reason="Bad Gateway")
    assert problem.code == ""
    assert problem.field_index is None
    error = problem.error(default_code="home-error")
    assert (error.code, error.status, error.detail) == (
        "home-error",
        502,
        "answered 502 Bad Gateway",
    )


def test_field_that_names_no_recipient():
    assert read_problem(400, {}, b'{"field": "room"}').field_index is None
    assert read_problem(400, {}, b'{"field": "to[x]"}').field_index is None
