"""C of relay_wrk.py: a Falcon app that answers every message 200 and does nothing else,
served by gunicorn with exactly the relay's settings (serving.gunicorn_argv)."""

from __future__ import annotations

import falcon


class _Accept:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.bounded_stream.read()  # the relay reads the whole envelope too
        resp.content_type = falcon.MEDIA_JSON
        resp.text = '{"outcome":"delivered"}'


app = falcon.App()
app.add_route("/v1/messages", _Accept())
