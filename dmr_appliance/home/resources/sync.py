"""/v1/sync: the relays' document, with ETag and long poll (``wait`` seconds)."""

from __future__ import annotations

import json
import re
import time

import falcon

from dmr_appliance import sync_signature
from dmr_appliance.home import sync
from dmr_appliance.home.access import ADMIN, RELAY, allow
from dmr_appliance.home.deps import HomeDeps

_ETAG = re.compile(r'\s*(?:W/)?"(\d{1,18})"')


@falcon.before(allow(RELAY, ADMIN))
class Sync:
    def __init__(self, home: HomeDeps) -> None:
        self.home = home

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        wait = req.get_param_as_int("wait", min_value=0, max_value=3600) or 0
        deadline = time.monotonic() + min(wait, self.home.config.sync.max_wait)
        known = _known_version(req.get_header("If-None-Match"))
        store = self.home.store
        version = store.version()
        if version == known and wait and not self.home.watcher.closing:
            # Only a poll that waits holds a thread: that is what the caps count.
            caller = req.context.caller
            with self.home.polls.hold(f"{caller.kind} {caller.name}"):
                version = self._wait(known, deadline)
        resp.cache_control = ["no-cache"]
        if version == known:
            resp.etag = f'"{known}"'
            resp.status = falcon.HTTP_304
            return
        doc = sync.document(store, self.home.keyring, self.home.config)
        resp.etag = f'"{doc["version"]}"'
        # Relays install only these exact bytes, signed by a key they already trust.
        resp.content_type = falcon.MEDIA_JSON
        resp.data = json.dumps(doc).encode()
        resp.set_header(sync_signature.HEADER, sync.signature(resp.data, store, self.home.keyring))

    def _wait(self, known: int | None, deadline: float) -> int:
        # Wait only while the caller already holds the current document (and the worker
        # is not stopping: then the relay gets its 304 now and polls again elsewhere).
        # Only the version is read until there is something new to send.
        store, watcher = self.home.store, self.home.watcher
        version = store.version()
        while (
            version == known and not watcher.closing and (left := deadline - time.monotonic()) > 0
        ):
            watcher.wait_beyond(known, left)
            version = store.version()
        return version


def _known_version(header: str | None) -> int | None:
    match = _ETAG.match(header or "")
    return int(match.group(1)) if match else None
