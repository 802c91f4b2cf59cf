"""gunicorn settings for the relay: the shared ones, plus the sync agent's lifecycle.

The master starts the one sync agent when it is ready to serve, and stops it on exit. gunicorn reads
every public name here as a setting (``config`` is one), hence the private aliases.
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

_process = None


def when_ready(server: object) -> None:
    global _process
    cfg = _config.load(_config.RelayConfig, _os.environ.get("DMR_CONFIG"))
    _process = _agent.start(cfg)


def on_exit(server: object) -> None:
    _agent.stop(_process)
