"""Signing keys sealed at rest: AES-256-GCM under a key-encryption key read from a file.

With several home instances on one database the private keys live in the store, so that
every instance signs with the same current key; the database holds them only sealed. The
key-encryption key (``[store] key_file``: 32 random bytes, raw or base64, 0600, the same
file on every home host, or a Kubernetes Secret) never enters the database. Each sealed
key is ``nonce (12 bytes) || ciphertext+tag``; the key id is the associated data, so a
sealed key copied onto another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dmr_appliance.errors import ConfigError

KEY_BYTES = 32
NONCE_BYTES = 12


class SealError(ConfigError):
    """The key-encryption key is missing or wrong, or a sealed key was altered."""


class Sealer:
    def __init__(self, kek: bytes) -> None:
        if len(kek) != KEY_BYTES:
            raise SealError(f"a key-encryption key is {KEY_BYTES} bytes, not {len(kek)}")
        self._aead = AESGCM(kek)

    @classmethod
    def from_file(cls, path: Path | str) -> Sealer:
        """The key in ``path``: 32 raw bytes, or their base64 (one line)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise SealError(f"cannot read the key-encryption key {path}: {exc.strerror}") from exc
        if len(data) != KEY_BYTES:
            try:
                data = base64.b64decode(data.strip(), validate=True)
            except binascii.Error:
                raise SealError(f"{path}: not 32 bytes nor their base64") from None
        return cls(data)

    def seal(self, kid: str, private_pem: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, private_pem, kid.encode())

    def open(self, kid: str, sealed: bytes) -> bytes:
        sealed = bytes(sealed)
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], kid.encode())
        except InvalidTag:
            raise SealError(
                f"signing key {kid} does not open with this key-encryption key "
                "(another key_file than the one that sealed it?)"
            ) from None


def new_key_file(path: Path | str) -> Path:
    """Write a new random key-encryption key (base64, 0600); never replaces a file."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
    finally:
        os.close(fd)
    return path
