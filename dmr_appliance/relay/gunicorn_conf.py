"""gunicorn settings for the relay: the shared ones, plus the sync agent's lifecycle.

The master clears a drain flag left by the previous run (a restarted, e.g. upgraded, relay
takes messages again), starts the one sync agent when it is ready to serve, and stops it
on exit. gunicorn reads every public name here as a setting (``config`` is one), hence
the private aliases.
"""

import os as _os

from dmr_appliance import config as _config
from dmr_appliance.gunicorn_conf import (  # noqa: F401  (gunicorn settings)
    child_exit,
    control_socket_disable,
    logconfig_dict,
    logger_class,
)
from dmr_appliance.relay import agent as _agent
from dmr_appliance.relay import draining as _draining

_process = None


def _settings() -> _config.RelayConfig:
    return _config.load(_config.RelayConfig, _os.environ.get("DMR_CONFIG"))


def on_starting(server: object) -> None:
    if _draining.stop(_settings().gate.socket):  # the master's log: gunicorn's JSON lines
        server.log.info("drain-cleared: a new run of the relay takes messages")  # type: ignore[attr-defined]


def when_ready(server: object) -> None:
    global _process
    _process = _agent.start(_settings())


def on_exit(server: object) -> None:
    _agent.stop(_process)
