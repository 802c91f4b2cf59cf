"""gunicorn's logger, without its access log: each app writes one access line itself
(``web.RequestContext``: request id, peer, ms), and gunicorn's own, once dropped by its
logger's level, still cost every request the building of its atoms (~4 % of a relay
worker's time under load, py-spy)."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger as _GunicornLogger


class Logger(_GunicornLogger):
    # gunicorn >= 23 asks this before it builds what access() would log.
    access_log_enabled = False

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
