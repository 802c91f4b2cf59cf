"""`dmr relay serve`: run a relay instance (gunicorn, threaded workers, its sync agent)."""

from __future__ import annotations

import argparse

from dmr_appliance.cli._serve import register_serve


def register(sub: argparse._SubParsersAction) -> None:
    register_serve(sub, "relay", help_text="run a relay instance",
                   serve_help="serve POST /v1/messages under gunicorn (replaces this process)")
