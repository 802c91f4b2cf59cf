"""Verification: a message's access token and address card, cold vs through sync_state.py's cache.

Per message the relay verifies one access token (bound to the sender's certificate) and
one card per recipient (one here). Three ways, in alternating rounds:

  cold (tokens.verify_*)     the baseline: EdDSA signature and every claim checked, each time
  sync_state.py, first sight     SyncState on a token it has not seen: verify, then cache
  sync_state.py, cached      SyncState on a token it has seen (the hot path of a busy sender)

The sync document is a real one on disk, read by SyncState as a relay worker reads it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from _common import (
    Stats,
    figure,
    header,
    interleaved,
    make_pki,
    note,
    parser,
    scratch,
    thumbprint,
)

from dmr_appliance import tokens
from dmr_appliance.relay.sync_state import SYNC_FILE, SyncState

ISSUER = "dmr-bench"
ENDPOINT = "https://localhost:9443/inbox/bob"


def sync_document(key: tokens.SigningKey) -> bytes:
    """A sync document of home's shape, with a few revocations to look through."""
    return json.dumps(
        {
            "version": 7,
            "jwks": {"keys": [key.public_jwk()]},
            "revoked_participants": [f"gone-{i}" for i in range(50)],
            "suspended_participants": [f"away-{i}" for i in range(50)],
            "revoked_tokens": [
                {"jti": f"{i:032x}", "expires_at": "2099-01-01T00:00:00Z"} for i in range(200)
            ],
        }
    ).encode()


def credentials(key: tokens.SigningKey, cnf: str, count: int) -> Iterator[tuple[str, str]]:
    """``count`` distinct (access token, card) pairs, endlessly repeated."""
    pairs = [
        (
            tokens.issue_access_token(
                key,
                issuer=ISSUER,
                subject="alice",
                rooms=["bench"],
                cert_thumbprint=cnf,
                lifetime=3600,
            ),
            tokens.issue_card(
                key,
                issuer=ISSUER,
                subject=f"bob{i}",
                endpoint=ENDPOINT,
                rooms=["bench"],
                lifetime=3600,
            ),
        )
        for i in range(count)
    ]
    return itertools.cycle(pairs)


def variants(state_dir: Path, cnf: str, count: int) -> dict[str, Callable[[], None]]:
    key = tokens.SigningKey.generate()
    (state_dir / SYNC_FILE).write_bytes(sync_document(key))
    trust = SyncState.in_dir(state_dir, issuer=ISSUER, leeway=30)
    snapshot = trust.current()
    # More pairs than will be asked for (warm-up included): neither sees one twice.
    fresh_cold, fresh_trust = (credentials(key, cnf, count + 100) for _ in range(2))
    hot_token, hot_card = next(credentials(key, cnf, 1))

    def cold() -> None:
        token, card = next(fresh_cold)
        verdict = tokens.verify_access_token(
            token, snapshot.keys, issuer=ISSUER, cert_thumbprint=cnf, leeway=30
        )
        assert verdict.jti not in snapshot.revoked_tokens
        tokens.verify_card(card, snapshot.keys, issuer=ISSUER, leeway=30)

    def first_sight() -> None:
        token, card = next(fresh_trust)
        trust.access_token(token, trust.current(), cnf)
        trust.card(card, trust.current())

    def cached() -> None:
        current = trust.current()
        trust.access_token(hot_token, current, cnf)
        trust.card(hot_card, current)

    return {
        "cold (tokens.verify_*, baseline)": cold,
        "sync_state.py, first sight": first_sight,
        "sync_state.py, cached (hot path)": cached,
    }


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--messages", type=int, help="per variant (default 10000, quick 1000)")
    args = cli.parse_args()
    count = args.messages or (1000 if args.quick else 10000)
    rounds = 4 if args.quick else 10
    header("verify: access token + card per message, cold vs cached", messages=count, rounds=rounds)
    with scratch("verify") as tmp:
        deployment = make_pki(tmp / "pki")
        cnf = thumbprint(deployment.pair("participant", "alice")[0])
        calls = variants(tmp, cnf, count)
        samples = interleaved(calls, count, rounds)
    print("per message (one access token + one card):")
    stats = {name: Stats.of(s) for name, s in samples.items()}
    for name, s in stats.items():
        figure(name, s, extra=f"{s.count / sum(samples[name]):9.0f} messages/s")
    cold, hot = stats["cold (tokens.verify_*, baseline)"], stats["sync_state.py, cached (hot path)"]
    note(
        "cold - cached",
        f"median {(cold.median - hot.median) * 1e6:+8.1f} µs per message "
        f"({cold.median / hot.median:.0f}x faster when cached)",
    )


if __name__ == "__main__":
    main()
