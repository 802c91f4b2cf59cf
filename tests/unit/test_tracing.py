"""``dmr trace``: lines about a message found across files, linked by request id."""

from __future__ import annotations

import gzip
import json

import pytest

from dmr_appliance import cli, tracing

MID = "01JDMRTRACE0000000000000AB"
RID_1, RID_2 = "a" * 32, "b" * 32  # two tries of the message: two router request ids
OTHER = "01JDMRTRACE0000000000000ZZ"


def line(**fields) -> str:
    return json.dumps(fields)


@pytest.fixture
def log_host(tmp_path):
    """A log host's tree, as dmr_logging writes it: HOST/PROGRAM.log, rotations beside."""
    root = tmp_path / "dmr"
    files = {
        "router-1/nginx.log": [
            # a syslog prefix before the JSON object, as a collector may leave it
            "Dec  2 23:00:00 router-1 nginx: "
            + line(
                ts="2026-12-02T23:00:00.105+00:00",
                event="router.access",
                request_id=RID_1,
                status=502,
                request_time=0.1,
                uri="/v1/messages",
            ),
            line(
                ts="2026-12-02T23:00:01.210+00:00",
                event="router.access",
                request_id=RID_2,
                status=200,
                request_time=0.01,
            ),
            line(
                ts="2026-12-02T23:00:02.000+00:00",
                event="router.access",
                request_id="c" * 32,
                status=200,
                request_time=0.01,
            ),
            "not json at all",
        ],
        "relay-1/dmr-relay.log.1": [  # rotated: still searched
            line(  # the relay's one line per message: every recipient's delivery in it
                ts="2026-12-02T23:00:00.100Z",
                event="response",
                message_id=MID,
                request_id=RID_1,
                status=502,
                outcome="failed",
                ms=99.0,
                to=["bob"],
                deliveries=[
                    {"to": "bob", "outcome": "failed", "status": None, "ms": 98.5, "error": "E"}
                ],
            ),
        ],
        "relay-1/dmr-relay.log": [
            line(
                ts="2026-12-02T23:00:01.200Z",
                event="response",
                message_id=MID,
                request_id=RID_2,
                status=200,
                outcome="delivered",
                ms=4.0,
                to=["bob"],
                deliveries=[{"to": "bob", "outcome": "delivered", "status": 200, "ms": 3.0}],
            ),
            line(  # another request on the same try's connection: linked by request id
                ts="2026-12-02T23:00:01.201Z",
                event="agent",
                request_id=RID_2,
            ),
            line(
                ts="2026-12-02T23:00:02.000Z",
                event="response",
                message_id=OTHER,
                request_id="c" * 32,
                outcome="delivered",
            ),
        ],
        "sender/dmr-send.log": [
            line(
                ts="2026-12-02T23:00:00.110Z",
                event="send.attempt",
                message_id=MID,
                request_id=RID_1,
                status=502,
            ),
            line(
                ts="2026-12-02T23:00:01.220Z",
                event="send.attempt",
                message_id=MID,
                request_id=RID_2,
                status=200,
            ),
        ],
    }
    for name, lines in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    with gzip.open(root / "relay-1" / "dmr-relay.log.2.gz", "wt") as fh:  # not read
        fh.write(line(ts="2026-12-02T22:00:00Z", event="response", message_id=MID) + "\n")
    return root


def test_a_message_is_traced_through_every_host_in_time_order(log_host):
    entries = tracing.trace(MID, tracing.log_dir_sources(log_host))
    assert [(e.source.host, e.event, e.record.get("request_id")) for e in entries] == [
        ("relay-1", "response", RID_1),
        ("router-1", "router.access", RID_1),
        ("sender", "send.attempt", RID_1),
        ("relay-1", "response", RID_2),
        ("relay-1", "agent", RID_2),
        ("router-1", "router.access", RID_2),
        ("sender", "send.attempt", RID_2),
    ]
    assert entries[1].ms == 100.0 and entries[1].status == 502  # nginx's seconds, in ms
    assert entries[0].source.component == "dmr-relay"


def test_a_request_id_gives_that_try_only(log_host):
    entries = tracing.trace(RID_2, tracing.log_dir_sources(log_host))
    assert {e.record["request_id"] for e in entries} == {RID_2}
    assert len(entries) == 4


def test_cli_prints_a_timeline_or_json_and_says_when_nothing_is_found(log_host, capsys):
    assert cli.main(["trace", MID, "--log-dir", str(log_host)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["time", "(UTC", "2026-12-02)"]
    assert len(out) == 8 and out[1].startswith("23:00:00.100") and "outcome=failed" in out[1]
    assert "to=bob bob:failed/-/98.5ms(E)" in out[1] and "bob:delivered/200/3.0ms" in out[4]
    assert cli.main(["trace", MID, "--log-dir", str(log_host), "--json"]) == 0
    docs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["host"] for d in docs][:2] == ["relay-1", "router-1"]
    assert docs[0]["line"]["deliveries"][0]["to"] == "bob"

    assert cli.main(["trace", "01JDMRTRACE0000000000000XX", "--log-dir", str(log_host)]) == 1
    assert "nothing about 01JDMRTRACE0000000000000XX in 4 files" in capsys.readouterr().err


def test_files_on_the_command_line(log_host, capsys):
    relay = log_host / "relay-1" / "dmr-relay.log"
    assert cli.main(["trace", MID, str(relay)]) == 0
    # the header, the message's line, the line linked by its request id
    assert len(capsys.readouterr().out.splitlines()) == 1 + 2


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["trace", "not an id!"], "is not a message or request id"),
        (["trace", MID, "/no/such/file.log"], "no such file: /no/such/file.log"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
