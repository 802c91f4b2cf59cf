"""What home's resources share: configuration, store, keys, token issuer, sync watcher."""

from __future__ import annotations

from dataclasses import dataclass

from dmr_appliance.config import HomeConfig
from dmr_appliance.home.credentials import CredentialSigner
from dmr_appliance.home.keyring import KeyRing
from dmr_appliance.home.metrics import HomeMetrics
from dmr_appliance.home.polls import PollLimits
from dmr_appliance.home.sealing import Sealer
from dmr_appliance.home.store import Store
from dmr_appliance.home.sync import ChangeWatcher


@dataclass(frozen=True)
class HomeDeps:
    config: HomeConfig
    store: Store
    keyring: KeyRing
    signer: CredentialSigner  # signs tokens and cards; its .issuer is the JWT iss
    watcher: ChangeWatcher
    metrics: HomeMetrics
    polls: PollLimits

    @classmethod
    def build(cls, config: HomeConfig, store: Store) -> HomeDeps:
        sealer = Sealer.from_file(config.store.key_file) if config.store.key_file else None
        keyring = KeyRing(store, config.keys_dir, retention=token_horizon(config), sealer=sealer)
        keyring.ensure_active()
        meters = HomeMetrics()
        return cls(
            config,
            store,
            keyring,
            CredentialSigner(keyring, config.issuer),
            ChangeWatcher(store, meters.sync_waiters),
            meters,
            PollLimits.for_config(config),
        )


def token_horizon(config: HomeConfig) -> int:
    """Longest a token or card issued now may be accepted: how long a retired key stays
    published and a deleted participant stays refused."""
    tokens = config.tokens
    return max(tokens.access_max_ttl, tokens.card_ttl) + tokens.leeway
