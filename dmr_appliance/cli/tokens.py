"""`dmr token issue|revoke` and `dmr card get`: credentials signed by home (admin)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmr_appliance import pki
from dmr_appliance.cli import _home_client
from dmr_appliance.cli._home_client import group, leaf, show


def register(sub: argparse._SubParsersAction) -> None:
    verbs = group(sub, "token", "issue or revoke access tokens (admin)")
    issue = leaf(verbs, "issue", run_issue, "issue an access token for a participant")
    issue.add_argument("participant")
    bound = issue.add_mutually_exclusive_group(required=True)
    bound.add_argument("--for-cert", type=Path, help="the participant's certificate (PEM)")
    bound.add_argument("--thumbprint", help="or its x5t#S256 thumbprint")
    issue.add_argument("--lifetime", type=int, help="seconds (up to tokens.access_max_ttl)")
    leaf(verbs, "revoke", run_revoke, "revoke an access token by its id").add_argument("jti")

    card_verbs = group(sub, "card", "address cards (admin)")
    leaf(card_verbs, "get", run_card, "get a participant's address card").add_argument("id")


def run_issue(args: argparse.Namespace) -> int:
    thumbprint = args.thumbprint
    if args.for_cert is not None:
        thumbprint = pki.cert_thumbprint(pki.load_certificate(args.for_cert.read_bytes()))
    home = _home_client.client_from_args(args)
    return show(args, home.issue_token(participant=args.participant,
                                       cert_thumbprint=thumbprint, lifetime=args.lifetime))


def run_revoke(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).revoke_token(args.jti))


def run_card(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).get_card(args.id))
