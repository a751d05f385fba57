"""Encryption of secrets stored in the database (the API keys of private variants).

Fernet (AES-128-CBC with HMAC-SHA256) under `settings.FIELD_ENCRYPTION_KEY`: a list of keys, the
first encrypts and every one decrypts, so a key is rotated by putting the new one first and
keeping the old one until every token has been rewritten.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


def derived_key(secret: str) -> str:
    """A Fernet key derived from SECRET_KEY: the development default, never used in production."""
    digest = hashlib.sha256(b"arena.field-encryption:" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def available() -> bool:
    """Whether secrets can be stored: production must set FIELD_ENCRYPTION_KEY for that."""
    return bool(settings.FIELD_ENCRYPTION_KEY)


def _fernet() -> MultiFernet:
    # Built per call: cheap, and a settings override (tests, a rotation) applies at once.
    return MultiFernet([Fernet(key) for key in settings.FIELD_ENCRYPTION_KEY])


def encrypt(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    """The plain text; raises InvalidToken if no configured key opens it, ValueError without keys."""
    return _fernet().decrypt(token.encode()).decode()
