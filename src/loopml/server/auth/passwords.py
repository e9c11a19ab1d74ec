"""Password hashes of the team server's users: scrypt from :mod:`hashlib`, salted.

A stored hash names its parameters, so they can be raised later without breaking older
hashes::

    >>> stored = hash_password("correct horse")
    >>> stored.split("$")[:4]
    ['scrypt', '32768', '8', '1']
    >>> verify_password("correct horse", stored), verify_password("wrong horse", stored)
    (True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from loopml.exceptions import InvalidInput

SCHEME = "scrypt"
# 2**15 × 8 × 128 bytes = 32 MiB and ~0.1 s per hash: slow for a guesser, and paid once per
# user and password by the server (it remembers a successful check, see access.py).
N, R, P = 2**15, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
MIN_LENGTH = 8
_MAXMEM = 64 * 1024 * 1024


def check_policy(password: str) -> str:
    """``password`` if it is acceptable (at least :data:`MIN_LENGTH` characters)."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise InvalidInput(f"A password needs at least {MIN_LENGTH} characters.")
    return password


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$<salt>$<key>`` (base64) for ``password``; never the password itself."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, N, R, P)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (compared in constant time)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(key)
        actual = _derive(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False  # a malformed stored hash matches nothing
    return hmac.compare_digest(actual, expected)


#: Checked against when the user does not exist, so that a wrong name takes as long as a
#: wrong password (the answer does not tell which users exist).
_DUMMY = f"{SCHEME}${N}${R}${P}${_b64(b'0' * SALT_BYTES)}${_b64(b'0' * KEY_BYTES)}"


def waste_time(password: str) -> None:
    """Spend what :func:`verify_password` spends, for a user that does not exist."""
    verify_password(password, _DUMMY)
