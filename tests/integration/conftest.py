"""The integration tests' shared fixture: ``stack``, one running local stack per module,
started as the module's ``pytest.mark.stack(...)`` says (its keywords are those of
tests/support/stack_kit.py ``started``) and stopped after the module's last test.

Shared helpers are in tests/support/ (``assert_problem`` in problems.py); the
``needs_nginx`` mark is tests/conftest.py's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dmr_appliance.local.stack import Stack
from tests.support.stack_kit import started


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stack(relays=1, rooms=None, certificates=(), env=None): the module's "
        "`stack` fixture (tests/support/stack_kit.py started)",
    )


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    marker = request.node.get_closest_marker("stack")
    name = request.module.__name__.rpartition(".")[2]
    with started(
        tmp_path_factory.mktemp(name) / "state", **(marker.kwargs if marker else {})
    ) as running:
        yield running
