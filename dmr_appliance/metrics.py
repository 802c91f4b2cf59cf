"""Prometheus metrics for both apps, from prometheus_client.

Under gunicorn the client runs in its multiprocess mode: ``dmr home|relay serve`` empties
the instance's metrics directory and names it in ``PROMETHEUS_MULTIPROC_DIR`` before
gunicorn starts, so every worker (and the relay's sync agent) writes its values to its own
memory-mapped files there. A scrape merges those files; it reads them without taking any
writer's lock, so scraping never blocks the request path. Without that variable (tests,
one process) each app's metrics live in its own registry.

Label values are bounded: routes are URI templates, never paths; codes are HTTP statuses
and problem codes; no participant or message id is ever a label.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import falcon
from prometheus_client import CollectorRegistry, Histogram, exposition, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

from dmr_appliance import pki, web
from dmr_appliance.errors import PkiError
from dmr_appliance.pki import certs

ENV = "PROMETHEUS_MULTIPROC_DIR"
# The text format every Prometheus reads (Debian 12's 2.42 included); newer clients would
# announce 1.0.0, which only matters for names outside [a-zA-Z_:][a-zA-Z0-9_:]*.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds. Up to a minute: home's long polls (GET /v1/sync) last up to sync.max_wait.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
UNMATCHED = "unmatched"  # the route label of a request no route took (404)
# Any other method a client makes up is counted as "other": a label never takes a value
# from the client unbounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess_dir() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def directory(socket: Path) -> Path:
    """An app's metrics directory: beside its gunicorn socket, in its runtime directory
    (memory on a host, an emptyDir in a pod), never where state is kept."""
    return socket.parent / "metrics"


def prepare_directory(path: Path) -> dict[str, str]:
    """Empty ``path`` for a new gunicorn master; the environment that names it.

    Called before gunicorn starts: files a previous run left would add its counts to
    this one's, and a dead process' live gauges would never go away.
    """
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)
    return {ENV: str(path)}


def read_directory(path: Path) -> list[Metric]:
    """Every process' values as written to the metrics directory ``path``: what a scrape
    merges, and what another process (``dmr relay drain``) can read of a running one."""
    return list(multiprocess.MultiProcessCollector(None, path=str(path)).collect())


def process_exited(pid: int) -> None:
    """gunicorn's ``child_exit``: drop the live gauges (in flight, waiters) of ``pid``."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


class Exposition:
    """``GET /metrics``: every process' values, then the figures read at scrape time.

    ``live`` is given the collected families (the relay's sync age is computed from the
    time its agent last heard from home) and yields families of its own.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        live: Callable[[list[Metric]], Iterable[Metric]] | None = None,
    ) -> None:
        self.registry = registry
        self.live = live

    def collect(self) -> list[Metric]:
        shared = multiprocess_dir()
        families = read_directory(shared) if shared else list(self.registry.collect())
        if self.live is not None:
            families += self.live(families)
        return families

    def render(self) -> bytes:
        return exposition.generate_latest(_Collected(self.collect()))  # type: ignore[arg-type]

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE
        resp.data = self.render()


class _Collected:
    """What ``generate_latest`` asks of a registry: ``collect()``."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def sample_values(families: Iterable[Metric], name: str, label: str) -> dict[str, float]:
    """The samples named ``name`` (a full sample name: ``x_total``), by one label's value."""
    found: dict[str, float] = {}
    for family in families:
        for s in family.samples:
            if s.name == name:
                key = s.labels.get(label, "")
                found[key] = found.get(key, 0.0) + s.value
    return found


class RequestMetrics:
    """Middleware: one histogram observation per response, by route, method and status.

    Its count is the requests by route and status; ``web.RequestContext`` (earlier in the
    middleware list) set the start time.
    """

    def __init__(self, prefix: str, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            f"{prefix}_request_duration_seconds",
            "Time from the request's arrival to its response, by route, method and status.",
            ("route", "method", "code"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "started", None)
        if started is None:
            return
        route = req.uri_template or UNMATCHED
        code = str(web.status_code(resp.status))
        method = req.method if req.method in METHODS else "other"
        self.duration.labels(route, method, code).observe(time.perf_counter() - started)


def gauge(name: str, help_text: str, value: float, **labels: str) -> GaugeMetricFamily:
    """A gauge read at scrape time (for a live collector)."""
    family = GaugeMetricFamily(name, help_text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def gauges(name: str, help_text: str, label: str, values: dict[str, Any]) -> GaugeMetricFamily:
    """A gauge with one sample per value of ``label``."""
    family = GaugeMetricFamily(name, help_text, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def certificate_expiry(tls: Any) -> Iterable[Metric]:
    """When the app's own certificate and the deployment CA stop being valid, and when the
    CRL must be replaced by: what the expiry alerts watch. Unreadable files are left out
    (the app would not be serving with them)."""
    expiry = GaugeMetricFamily(
        "dmr_certificate_expiry_timestamp_seconds",
        "When the certificate stops being valid, in Unix time.",
        labels=["certificate"],
    )
    for label, path in (("service", tls.cert), ("ca", tls.ca)):
        moment = _not_after(Path(path), _read_not_after)
        if moment is not None:
            expiry.add_metric([label], moment)
    yield expiry
    # A gauge of its own: the CRL is re-signed 10 days before its end by design, which the
    # certificates' 14-day alert would call an expiry.
    next_update = _not_after(Path(tls.crl), _read_next_update) if tls.crl else None
    if next_update is not None:
        yield gauge(
            "dmr_crl_next_update_timestamp_seconds",
            "When the CRL this service checks must be replaced by (its nextUpdate; "
            "nginx then refuses every client), in Unix time.",
            next_update,
        )


@functools.lru_cache(maxsize=16)
def _read_not_after(path: Path, mtime_ns: int) -> float | None:
    try:
        return certs.cert_not_after(certs.load_certificate(path.read_bytes())).timestamp()
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=4)
def _read_next_update(path: Path, mtime_ns: int) -> float | None:
    try:
        return pki.crl_file_next_update(path).timestamp()
    except PkiError:
        return None


def _not_after(path: Path, read: Callable[[Path, int], float | None]) -> float | None:
    try:
        return read(path, path.stat().st_mtime_ns)  # read again when replaced
    except OSError:
        return None
