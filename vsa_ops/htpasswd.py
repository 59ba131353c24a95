"""Basic-auth passwords as bcrypt hashes for NGINX's auth_basic.

Cost 10: NGINX runs crypt() inside its event loop on every request, and cost 12 takes about 0.6 s
each (reliability.md section 6.3). ``$2y$`` is Apache htpasswd's prefix; glibc's libxcrypt and musl
from 1.2.2 verify it. Passwords over 72 bytes are refused, never truncated.
"""

from __future__ import annotations

from passlib.hash import bcrypt

from .errors import VsaError

COST = 10
MAX_BYTES = 72


class PasswordError(VsaError):
    pass


def hash_password(password: str) -> str:
    if not password:
        raise PasswordError("password: must not be empty")
    if len(password.encode()) > MAX_BYTES:
        raise PasswordError(f"password: is longer than {MAX_BYTES} bytes (bcrypt would ignore the rest)")
    if any(ch in password for ch in "\n\r\0"):
        raise PasswordError("password: must not contain line breaks or NUL")
    return bcrypt.using(rounds=COST, ident="2y").hash(password)


def verify_password(password: str, digest: str) -> bool:
    return bcrypt.verify(password, digest)
