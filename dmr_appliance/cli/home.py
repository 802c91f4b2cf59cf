"""`dmr home serve`: run the home service under gunicorn (TLS, client certificates)."""

from __future__ import annotations

import argparse

from dmr_appliance.cli._serve import register_serve


def register(sub: argparse._SubParsersAction) -> None:
    register_serve(sub, "home", help_text="run the home service",
                   serve_help="serve home with gunicorn (replaces this process)")
