"""JSON-lines logging: shape of every line, field handling, request-id context."""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from dmr_appliance import logs
from dmr_appliance.errors import ConfigError

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict]:
        text = self.stream.getvalue()
        assert text.endswith("\n") or not text
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    cap = Captured()
    logs.configure("debug", instance="relay-1", stream=cap.stream)
    yield cap
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_event_line_has_fixed_fields_and_structured_fields(captured: Captured) -> None:
    log = logs.get_logger("dmr.test")
    logs.log_event(
        log, "delivery", message_id="m-1", room="ops", from_="alice", to=["bob"], status=200, ms=1.5
    )
    [line] = captured.lines()
    assert TS.match(line["ts"])
    assert (
        abs(datetime.fromisoformat(line["ts"].replace("Z", "+00:00")) - datetime.now(UTC)).seconds
        < 5
    )
    assert line["level"] == "info"
    assert line["event"] == "delivery"
    assert line["instance"] == "relay-1"
    assert line["from"] == "alice"
    assert line["to"] == ["bob"]
    assert (line["message_id"], line["room"], line["status"], line["ms"]) == (
        "m-1",
        "ops",
        200,
        1.5,
    )
    assert "msg" not in line


def test_none_fields_are_dropped_and_sender_means_from(captured: Captured) -> None:
    logs.log_event(logs.get_logger("t"), "retry", logging.WARNING, sender="bob", attempt=None)
    [line] = captured.lines()
    assert line["from"] == "bob"
    assert "attempt" not in line
    assert line["level"] == "warning"


def test_fields_cannot_overwrite_the_fixed_keys(captured: Captured) -> None:
    logs.log_event(logs.get_logger("t"), "sync", ts="yesterday", msg="m")
    [line] = captured.lines()
    assert TS.match(line["ts"])
    assert line["msg"] == "m"  # msg is fixed only for plain records


def test_a_field_may_name_another_instance(captured: Captured) -> None:
    logs.log_event(logs.get_logger("t"), "heartbeat", instance="relay-2")
    [line] = captured.lines()
    assert line["instance"] == "relay-2"


def test_plain_log_records_become_log_events(captured: Captured) -> None:
    logs.get_logger("somelib").warning("disk %s is %d%% full", "/var", 91)
    [line] = captured.lines()
    assert line["event"] == "log"
    assert line["msg"] == "disk /var is 91% full"
    assert line["logger"] == "somelib"
    assert line["level"] == "warning"


def test_exception_traceback_is_one_json_line(captured: Captured) -> None:
    try:
        raise RuntimeError("kaboom")
    except RuntimeError:
        logs.get_logger("t").exception("failed")
    text = captured.stream.getvalue()
    assert text.count("\n") == 1
    [line] = captured.lines()
    assert "Traceback" in line["exc"]
    assert "RuntimeError: kaboom" in line["exc"]


def test_log_event_passes_exc_info(captured: Captured) -> None:
    error = ValueError("bad value")
    logs.log_event(logs.get_logger("t"), "internal-error", logging.ERROR, exc_info=error)
    [line] = captured.lines()
    assert "ValueError: bad value" in line["exc"]


def test_odd_values_never_break_a_line(captured: Captured) -> None:
    circular: dict = {}
    circular["self"] = circular

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

        def __repr__(self) -> str:
            raise RuntimeError("no")

    log = logs.get_logger("t")
    logs.log_event(log, "a", when=datetime(2024, 1, 2, tzinfo=UTC), tags={"x"}, raw=b"\xff")
    logs.log_event(log, "b", loop=circular, nan=math.nan)
    logs.log_event(log, "c", thing=Unprintable())
    a, b, c = captured.lines()
    assert a["when"].startswith("2024-01-02")
    assert a["tags"] == "{'x'}"
    assert b["event"] == "b"
    assert b["nan"] == "nan"
    assert c["thing"] == "<unprintable Unprintable>"


def test_request_id_from_context_is_added_and_reset(captured: Captured) -> None:
    log = logs.get_logger("t")
    token = logs.set_request_id("abc123")
    try:
        logs.log_event(log, "inside")
        log.info("plain inside")
        logs.log_event(log, "explicit", request_id="other")
    finally:
        logs.reset_request_id(token)
    logs.log_event(log, "outside")
    inside, plain, explicit, outside = captured.lines()
    assert inside["request_id"] == plain["request_id"] == "abc123"
    assert explicit["request_id"] == "other"
    assert "request_id" not in outside
    assert logs.current_request_id() is None


def test_configure_is_idempotent_and_filters_by_level(captured: Captured) -> None:
    logs.configure("warning", stream=captured.stream)
    logs.configure("warning", stream=captured.stream)
    log = logs.get_logger("t")
    log.info("hidden")
    logs.log_event(log, "hidden")
    log.warning("shown")
    [line] = captured.lines()
    assert line["msg"] == "shown"
    assert "instance" not in line  # the second configure() replaced the first


def test_configure_refuses_unknown_level() -> None:
    with pytest.raises(ConfigError, match="verbose"):
        logs.configure("verbose")


def test_queued_lines_are_the_same_lines_written_by_the_listener(captured: Captured) -> None:
    import threading

    logs.configure("debug", instance="relay-1", stream=captured.stream, queued=True)
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, logs._DmrQueueHandler)]
    log = logs.get_logger("t")
    writers: set[str] = set()
    captured.stream.write = _recording(captured.stream.write, writers)  # type: ignore[method-assign]
    token = logs.set_request_id("abc123")
    try:
        logs.log_event(log, "inside", to="bob")
        log.info("plain inside")
        logs.log_event(log, "explicit", request_id="other")
    finally:
        logs.reset_request_id(token)
    logs.log_event(log, "outside")
    handler.close()  # drains the queue, then stops the listener
    inside, plain, explicit, outside = captured.lines()
    assert (inside["event"], inside["to"], inside["instance"]) == ("inside", "bob", "relay-1")
    assert inside["request_id"] == plain["request_id"] == "abc123"
    assert plain["msg"] == "plain inside"
    assert explicit["request_id"] == "other"
    assert "request_id" not in outside
    assert writers and threading.current_thread().name not in writers  # not on this thread


def _recording(write, names: set[str]):
    import threading

    def wrapper(text: str) -> int:
        names.add(threading.current_thread().name)
        return write(text)

    return wrapper


@pytest.mark.parametrize(
    "created",
    [0.0, 1.0005, 1_765_000_000.9994996, 1_765_000_000.9999996, 449_293_040.5739999]
    + [i * 7_919.123456789 for i in range(1, 200)],
)
def test_the_timestamp_is_what_isoformat_gives(created: float) -> None:
    # Formatted once per second and the milliseconds added: the same text as before.
    expected = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
    assert logs._timestamp(created) == expected.replace("+00:00", "Z")
