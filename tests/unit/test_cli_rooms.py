"""`dmr rooms list|show|set` (issue 26, room policy): the admin CLI through the real
``HomeClient`` to an in-process home (falcon.testing behind a requests adapter, as the
admin through the router). Errors are one line, never a traceback."""

from __future__ import annotations

import json

import pytest
import requests

from dmr_appliance import cli
from dmr_appliance.cli import _home_client
from dmr_appliance.wire.home import HomeClient
from tests.support.home import InProcess, home_under_test

BASE = "https://home.test/v1"


@pytest.fixture
def dmr(tmp_path, pki, monkeypatch, capsys):
    home = home_under_test(tmp_path, pki, rooms={"lobby": ("alice", "bob"), "ops": ("alice",)})
    session = requests.Session()
    session.mount("https://", InProcess(home.admin))
    monkeypatch.setattr(
        _home_client, "client_from_args", lambda args: HomeClient(BASE, session=session)
    )

    def run(*argv: str, code: int = 0) -> str:
        capsys.readouterr()
        assert cli.main(["rooms", *argv]) == code
        out = capsys.readouterr()
        return out.out if code == 0 else out.err

    return run


def test_set_show_and_list(dmr):
    shown = dmr("set", "ops", "--signed")
    assert "signed      True" in shown and "members     1" in shown
    table = dmr("list").splitlines()
    assert table[0].split() == ["ROOM", "SIGNED", "MEMBERS", "UPDATED_AT"]
    assert [line.split()[:3] for line in table[1:]] == [
        ["lobby", "False", "2"],
        ["ops", "True", "1"],
    ]
    assert table[1].split()[3] == "-"  # never set
    listed = json.loads(dmr("list", "--json"))
    assert [(r["room"], r["signed"]) for r in listed] == [("lobby", False), ("ops", True)]
    assert json.loads(dmr("set", "ops", "--unsigned", "--json"))["signed"] is False
    assert json.loads(dmr("show", "ops", "--json"))["signed"] is False


def test_a_room_without_members_can_be_marked(dmr):
    assert json.loads(dmr("set", "audit", "--signed", "--json"))["members"] == 0
    assert "audit" in dmr("list")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("show", "nowhere"), "dmr: no room 'nowhere'"),
        (("set", "Bad_Room", "--signed"), "dmr: a room name must be"),
    ],
)
def test_a_refusal_is_one_line(dmr, argv, said):
    err = dmr(*argv, code=1)
    assert err.startswith(said) and err.count("\n") == 1, err


@pytest.mark.parametrize("flags", [(), ("--signed", "--unsigned")])
def test_set_takes_exactly_one_policy(dmr, capsys, flags):
    with pytest.raises(SystemExit) as exited:
        cli.main(["rooms", "set", "ops", *flags])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1, err
    assert "--signed" in err


def test_missing_tls_files_say_so(tmp_path, capsys):
    missing = str(tmp_path / "admin.pem")
    assert cli.main(["rooms", "list", "--cert", missing]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"dmr: {missing} does not exist") and err.count("\n") == 1
