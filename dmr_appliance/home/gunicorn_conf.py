"""gunicorn settings for home: the shared ones, plus releasing long polls on shutdown.

A long poll holds a worker thread for up to ``sync.max_wait`` seconds; without this a
stopping worker would wait for every one of them (SIGTERM) or hang at interpreter exit
(SIGINT). Public names here are gunicorn settings, hence the private aliases.
"""

import signal as _signal

from dmr_appliance.gunicorn_conf import (  # noqa: F401  (gunicorn settings)
    child_exit,
    control_socket_disable,
    logconfig_dict,
    logger_class,
)
from dmr_appliance.home import sync as _sync


def post_worker_init(worker: object) -> None:
    # Chain onto the worker's own SIGTERM handler (graceful stop), set just before this.
    previous = _signal.getsignal(_signal.SIGTERM)

    def on_term(signum: int, frame: object) -> None:
        _sync.release_waiters()
        if callable(previous):
            previous(signum, frame)

    _signal.signal(_signal.SIGTERM, on_term)


def worker_int(worker: object) -> None:  # SIGINT / SIGQUIT: quick shutdown
    _sync.release_waiters()
