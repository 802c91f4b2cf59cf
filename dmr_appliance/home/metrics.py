"""Prometheus text exposition (format 0.0.4) without a client library.

Request counters are per worker process (a scrape sees the worker that answered it,
labelled by ``pid``); the gauges are read from the shared store on each scrape.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Mapping

import falcon

from dmr_appliance import web

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Middleware counting responses by method and status; renders the exposition."""

    def __init__(self) -> None:
        self._requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self._lock = threading.Lock()

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, req_succeeded: bool) -> None:
        key = (req.method, web.status_code(resp.status))
        with self._lock:
            self._requests[key] += 1

    def requests(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._requests)


def family(name: str, kind: str, help_text: str,
           samples: Iterable[tuple[Mapping[str, object], float]]) -> list[str]:
    """One metric family: HELP, TYPE and a line per sample."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
