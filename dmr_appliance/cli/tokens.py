"""`dmr token issue|revoke` and `dmr card get`: credentials signed by home (admin)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmr_appliance import pki
from dmr_appliance.cli import _home_client
from dmr_appliance.cli._home_client import group, leaf, show
from dmr_appliance.errors import PkiError


def register(sub: argparse._SubParsersAction) -> None:
    verbs = group(sub, "token", "issue or revoke access tokens (admin)")
    issue = leaf(verbs, "issue", run_issue, "issue an access token for a participant")
    issue.add_argument("participant")
    issue.add_argument(
        "--for-cert",
        type=Path,
        required=True,
        help="the participant's certificate (PEM): the token is bound to it",
    )
    issue.add_argument("--lifetime", type=int, help="seconds (up to tokens.access_max_ttl)")
    leaf(verbs, "revoke", run_revoke, "revoke an access token by its id").add_argument("jti")

    card_verbs = group(sub, "card", "address cards (admin)")
    leaf(card_verbs, "get", run_card, "get a participant's address card").add_argument("id")


def run_issue(args: argparse.Namespace) -> int:
    try:
        pem = args.for_cert.read_text()
    except (OSError, UnicodeError) as exc:
        raise PkiError(f"--for-cert {args.for_cert}: cannot read it ({exc})") from exc
    pki.load_certificate(pem)  # a file that is no certificate fails here, in one line
    home = _home_client.client_from_args(args)
    return show(
        args,
        home.issue_token(participant=args.participant, certificate=pem, lifetime=args.lifetime),
    )


def run_revoke(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).revoke_token(args.jti))


def run_card(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).get_card(args.id))
