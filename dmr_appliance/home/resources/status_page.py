"""``/``: the status page for people (admin certificate). Links are relative, because
the router serves it at /home/ and maps /home/<rest> to home's /<rest>."""

from __future__ import annotations

import falcon
import jinja2

from dmr_appliance.home import failures, instances, participants
from dmr_appliance.home.access import ADMIN, allow
from dmr_appliance.home.deps import HomeDeps
from dmr_appliance.timefmt import now, rfc3339

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("dmr_appliance", "templates/home"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

REFRESH_SECONDS = 10


@falcon.before(allow(ADMIN))
class StatusPage:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        home = self.home
        resp.content_type = falcon.MEDIA_HTML
        resp.text = _templates.get_template("status.html").render(
            instance=home.config.instance,
            generated_at=rfc3339(now()),
            refresh=REFRESH_SECONDS,
            sync_version=home.store.version(),
            instances=instances.listing(home.store, home.config.heartbeats),
            participants=participants.counts(home.store),
            failures=failures.listing(home.store, status="open", room=None, sender=None,
                                      limit=50),
        )
