"""HTTP basic auth against bcrypt hashes (`basic_auth_users` of the web config), with a
cache of successful checks so that scrapes do not pay a bcrypt each."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import bcrypt

#: Checked against when the user is unknown, so that timing does not tell which user
#: names exist; the password behind it is irrelevant (the answer is "no" regardless).
_DUMMY_HASH = b"$2b$10$uhop8l4TWev9HDdu3Z.c1uxu58B5vFZ168SuSOQymM7ZbzwGo.Ely"


AUTH_CACHE_SIZE = 1024


REALM = "alb-jobs-exporter"


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes, caching successes.

    bcrypt is slow on purpose; a scrape every 15 s must not pay for it each time. A
    successful (user, password, hash) is remembered as an HMAC under a per-process random
    key, so neither the password nor a fast unsalted hash of it is stored. Failures are
    not cached; their bcrypt checks run one at a time (as in the toolkit) so a flood of
    wrong passwords costs one CPU, not all of them.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        cache_size: int = AUTH_CACHE_SIZE,
        checkpw: Callable[[bytes, bytes], bool] = bcrypt.checkpw,
    ) -> None:
        self._users = dict(users)
        self._checkpw = checkpw
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._users)

    def __call__(self, environ: Mapping[str, Any]) -> bool:
        credentials = parse_basic(environ.get("HTTP_AUTHORIZATION"))
        return credentials is not None and self.check(*credentials)

    def check(self, user: str, password: str) -> bool:
        hashed = self._users.get(user)
        known = hashed is not None
        stored = hashed.encode() if hashed is not None else _DUMMY_HASH
        secret = password.encode("utf-8")
        key = hmac.digest(
            self._key, b"\0".join((user.encode("utf-8"), stored, secret)), hashlib.sha256
        )
        if known and self._cached(key):
            return True
        with self._bcrypt_lock:
            # Many scrapes with the same new credentials arrive together: one bcrypt.
            if known and self._cached(key):
                return True
            try:
                ok = self._checkpw(secret, stored)
            except ValueError:  # longer than bcrypt's 72 bytes: never valid
                ok = False
        if not (ok and known):
            return False
        with self._cache_lock:
            self._cache[key] = None
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return True

    def _cached(self, key: bytes) -> bool:
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
        return False


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` value, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
