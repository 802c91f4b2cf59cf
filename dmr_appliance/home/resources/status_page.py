"""``/``: the status page for people (admin certificate). Links are relative, because
the router serves it at /home/ and maps /home/<rest> to home's /<rest>."""

from __future__ import annotations

from typing import Any

import falcon
import jinja2

from dmr_appliance.home import chart, failures, instances, participants, traffic
from dmr_appliance.home.access import ADMIN, allow
from dmr_appliance.home.deps import HomeDeps
from dmr_appliance.timefmt import now, parse_time, rfc3339

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("dmr_appliance", "templates/home"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

REFRESH_SECONDS = 10
# The page is one HTML document with an inline <style>, style attributes and inline SVG:
# no script, no image, font or frame of its own, and nothing to embed it.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The newest open failures of each sender, so no sender's reports push another's off the
# page; every sender with open failures is counted above them.
FAILURES_PER_SENDER = 5
FAILURES_SHOWN = 500


@falcon.before(allow(ADMIN))
class StatusPage:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        home = self.home
        resp.content_type = falcon.MEDIA_HTML
        resp.set_headers(HEADERS)
        moment = now()
        relays = instances.listing(home.store, home.config.heartbeats)
        resp.text = _templates.get_template("status.html").render(
            instance=home.config.instance,
            generated_at=rfc3339(moment),
            refresh=REFRESH_SECONDS,
            sync_version=home.store.version(),
            instances=relays,
            traffic=[relay_traffic(home, relay["instance"], moment) for relay in relays],
            participants=participants.counts(home.store),
            failures=[
                open_failure(f, moment)
                for f in failures.listing(
                    home.store,
                    status="open",
                    room=None,
                    sender=None,
                    limit=FAILURES_SHOWN,
                    per_sender=FAILURES_PER_SENDER,
                )
            ],
            failure_counts=[c for c in failures.counts(home.store) if c["open"]],
            failures_per_sender=FAILURES_PER_SENDER,
        )


def relay_traffic(home: HomeDeps, name: str, moment: float) -> dict[str, Any]:
    """A relay's last hour: the chart, and its totals by outcome."""
    minutes = traffic.per_minute(home.store, name, moment)
    totals = {k: sum(m.counts[k] for m in minutes) for k in traffic.SERIES}
    return {
        "instance": name,
        "chart": chart.traffic_svg(minutes, f"{name} traffic"),
        "totals": totals,
        "this_minute": minutes[-1].counts["messages"],
    }


def open_failure(failure: dict[str, Any], moment: float) -> dict[str, Any]:
    """What the page shows of an open failure: who, what, the last error, how long ago."""
    attempts = failure["attempts"]
    last = attempts[-1] if attempts else {}
    error = last.get("detail") or str(last.get("status") or "-")  # the detail has the status
    first = parse_time(failure["first_reported_at"]).timestamp()
    return {**failure, "last_error": error, "age": age(moment - first)}


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
