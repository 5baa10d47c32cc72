"""Encryption at rest of datastore connection URLs (they carry passwords).

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) with a MultiFernet over the keys of
the ``CREDENTIAL_KEYS`` setting: the first key encrypts, every key decrypts. Rotation is adding
a new key in front, running ``manage.py rotate_credentials`` (re-encrypts every stored URL with
the first key), then removing the old key. See docs/security.md.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialsUnreadable(Exception):
    """A stored secret none of the configured keys decrypts (a key was removed too early)."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise CredentialsUnreadable("No CREDENTIAL_KEYS are configured.")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError:
        raise CredentialsUnreadable(
            "CREDENTIAL_KEYS holds a malformed key (each must be 32 url-safe base64-encoded "
            "bytes, as `manage.py rotate_credentials --new-key` prints)."
        ) from None


def fernet() -> MultiFernet:
    # Keyed on the current setting, so a changed setting (tests, a reload) takes effect.
    return _fernet(tuple(settings.CREDENTIAL_KEYS))


def encrypt(text: str) -> str:
    """Ciphertext of ``text``; the empty string stays empty (nothing to hide)."""
    if not text:
        return ""
    return fernet().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    return _unseal(token, rotate=False)


def rotate(token: str) -> str:
    """``token`` re-encrypted with the first key (unchanged if empty)."""
    return _unseal(token, rotate=True)


def _unseal(token: str, *, rotate: bool) -> str:
    if not token:
        return ""
    keys = fernet()
    try:
        result = keys.rotate(token.encode()) if rotate else keys.decrypt(token.encode())
    except InvalidToken:
        raise CredentialsUnreadable(
            "A stored datastore URL cannot be decrypted with the configured CREDENTIAL_KEYS."
        ) from None
    return result.decode()


def new_key() -> str:
    return Fernet.generate_key().decode()
