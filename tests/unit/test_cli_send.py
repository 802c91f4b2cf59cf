"""``dmr send``: who sends."""

from __future__ import annotations

import pytest

from dmr_appliance.cli import main

# -- dmr send: who sends ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("alice", "pki/participant/alice.pem does not exist"),
        ("../alice", "--as '../alice': invalid name"),
    ],
)
def test_dmr_send_finds_the_participant_in_the_pki_layout(tmp_path, capsys, name, said):
    code = main(
        [
            "send",
            "--pki",
            str(tmp_path / "pki"),
            "--as",
            name,
            "--room",
            "ops",
            "--to",
            "bob",
            "--data",
            "1",
        ]
    )
    assert code == 2
    assert said in capsys.readouterr().err
