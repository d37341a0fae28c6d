"""Password hashing: argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile).

Only hashes are stored. ``verify`` costs the same whether or not the account exists
(``verify_unknown`` spends one verification on a fixed hash), so response times do not
tell an attacker which emails have accounts.
"""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's; rehash on login."""
    return _HASHER.check_needs_rehash(stored_hash)


def verify_unknown(password: str) -> None:
    """Spend the time of one verification, for sign-ins of accounts that do not exist."""
    verify_password(_dummy_hash(), password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash("loom: no account has this password")
