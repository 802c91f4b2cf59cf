"""gunicorn settings shared by home and relay: gunicorn's own log lines as JSON too."""

from dmr_appliance import metrics as _metrics
from dmr_appliance.logs import JsonFormatter  # noqa: F401  (referenced by name below)

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "dmr_appliance.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        },
    },
    # gunicorn merges this over its defaults, whose root logger names a "console" handler
    # that this dict replaces: the root must be restated. No handler here: the app's
    # logs.configure() installs the one JSON handler on the root.
    "root": {"level": "INFO", "handlers": []},
    "loggers": {
        "gunicorn.error": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}

# The apps log each response themselves: gunicorn's access log is off, not just dropped.
logger_class = "dmr_appliance.gunicorn_logger.Logger"

# gunicorn >= 24 opens a control socket under $HOME by default: every instance on a host
# would share one path, and the hardened units have no writable home. Older gunicorn
# ignores the unknown setting.
control_socket_disable = True


def child_exit(server: object, worker: object) -> None:
    # A worker's live gauges (deliveries in flight, long polls waiting) go with it.
    _metrics.process_exited(worker.pid)  # type: ignore[attr-defined]
