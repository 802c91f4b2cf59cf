"""The local stack's start-up errors, without starting any process."""

from __future__ import annotations

import pytest

from dmr_appliance.cli import main
from dmr_appliance.local.stack import Stack, StackError


def test_a_state_dir_it_cannot_make_is_a_stack_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StackError, match="could not start the stack"):
        Stack(tmp_path / "file" / "state").start()


@pytest.mark.parametrize("command", ["up", "demo"])
def test_dmr_up_and_demo_say_so_in_one_line(tmp_path, capsys, command):
    (tmp_path / "file").write_text("")
    assert main([command, "--state-dir", str(tmp_path / "file" / "state")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dmr: could not start the stack: ")
    assert err.count("\n") == 1
