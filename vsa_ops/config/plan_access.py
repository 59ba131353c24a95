"""The plan identity: a non-root account on each host whose SSH key can do one thing, run the
installed state reader in plan mode (read-only, no secret content). CI plans with it; it can never
deploy. Its keys are public keys from configuration (group_data, committed)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from .base import AbsPath, Model

# One key a line, as ssh-keygen writes it: TYPE BASE64 [COMMENT]. No options: vsa-ops sets them.
_PUBLIC_KEY = re.compile(r"(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
                         r"sk-ecdsa-sha2-nistp256@openssh\.com|ssh-rsa) [A-Za-z0-9+/]+={0,3}( [\x21-\x7e ]*)?")
_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class PlanIdentity(Model):
    """Design addition (issue 12): the account plans log in as. ``authorized_keys`` empty: the account
    and its sudo rule exist, and no key lets anyone in."""

    user: str = "vsa-plan"
    # Debian's range for system ids allocated on demand (60000-64999), like the secret readers'.
    uid: int = Field(default=64910, ge=100, le=64999)
    home: AbsPath = "/var/lib/vsa-plan"
    authorized_keys: list[str] = []

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _NAME.fullmatch(value) or value == "root":
            raise ValueError("must be an account name (lower case letters, digits, '_' and '-'; not root)")
        return value

    @field_validator("authorized_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if not _PUBLIC_KEY.fullmatch(key.strip()):
                raise ValueError("each entry must be one OpenSSH public key (TYPE BASE64 [COMMENT]), "
                                 "without options: vsa-ops adds them")
        return [key.strip() for key in value]

    @field_validator("home")
    @classmethod
    def _home(cls, value: str) -> str:
        if value == "/":
            raise ValueError("must be a folder of its own, not /")
        return value
