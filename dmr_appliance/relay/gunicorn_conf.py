"""gunicorn settings for the relay: the shared ones, plus the sync agent's lifecycle.

The master creates the instance's shared counters before it forks any worker, starts
the one sync agent when it is ready to serve, and stops it on exit. gunicorn reads
every public name here as a setting (``config`` is one), hence the private aliases.
"""

import os as _os

from dmr_appliance import config as _config
from dmr_appliance.gunicorn_conf import (  # noqa: F401  (gunicorn settings)
    control_socket_disable,
    logconfig_dict,
    logger_class,
)
from dmr_appliance.relay import agent as _agent
from dmr_appliance.relay import counters as _counters

_process = None


def on_starting(server: object) -> None:
    _counters.share()


def when_ready(server: object) -> None:
    global _process
    cfg = _config.load(_config.RelayConfig, _os.environ.get("DMR_CONFIG"))
    _process = _agent.start(cfg, _counters.shared())


def on_exit(server: object) -> None:
    _agent.stop(_process)
