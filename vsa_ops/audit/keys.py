"""The controller's audit key: an Ed25519 key pair that signs every record this controller appends.
The private key lives only on the controller (``$XDG_CONFIG_HOME/vsa-ops/audit-ed25519``, 0600, made
on first use); a host stores signatures it cannot forge, so root there can edit or re-chain records
but cannot sign them again. ``audit-keys.pub`` in the project pins the public keys of every controller
whose records ``audit verify`` accepts (OpenSSH format, one a line); this controller's own key is
always trusted."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .records import AuditError, canonical

KEY_NAME = "audit-ed25519"
PINNED_FILE = "audit-keys.pub"


def config_folder() -> Path:
    """The controller's vsa-ops configuration folder (XDG base directories)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vsa-ops"


def controller_key(create: bool = True) -> Ed25519PrivateKey | None:
    """This controller's signing key; made (0600, in a 0700 folder) when missing and ``create``."""
    path = config_folder() / KEY_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
        return _create(path)
    except OSError as error:
        raise AuditError(f"audit: cannot read the controller key {path}: {error.strerror}") from None
    if path.stat().st_mode & 0o077:
        raise AuditError(f"audit: the controller key {path} is readable by others: chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        raise AuditError(f"audit: {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"audit: {path} is not an Ed25519 key")
    return key


def _create(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # O_EXCL: two commands starting at once never overwrite each other's new key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return controller_key(create=False)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def public_line(key: Ed25519PrivateKey | Ed25519PublicKey, comment: str = "") -> str:
    """A public key as one OpenSSH line, as ``audit-keys.pub`` holds it."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    text = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{text} {comment}".rstrip()


def pinned_keys(root: Path) -> list[Ed25519PublicKey]:
    """The keys ``audit-keys.pub`` in the project pins (none when there is no such file)."""
    path = root / PINNED_FILE
    if not path.is_file():
        return []
    keys = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            key = serialization.load_ssh_public_key(" ".join(line.split()[:2]).encode())
        except (ValueError, TypeError):
            raise AuditError(f"audit: {path} line {number} is not an OpenSSH public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise AuditError(f"audit: {path} line {number} is not an ssh-ed25519 key")
        keys.append(key)
    return keys


def trusted_keys(root: Path) -> list[Ed25519PublicKey]:
    """The keys whose signatures verify: the pinned ones and this controller's own (if it has one)."""
    own = controller_key(create=False)
    return pinned_keys(root) + ([own.public_key()] if own else [])


def _signed_bytes(record: dict) -> bytes:
    return canonical({k: v for k, v in record.items() if k != "sig"}).encode("utf-8")


def sign(record: dict, key: Ed25519PrivateKey) -> dict:
    """The record with its ``sig``: Ed25519 over the canonical JSON of everything else (hash included)."""
    return record | {"sig": base64.b64encode(key.sign(_signed_bytes(record))).decode("ascii")}


def signature_valid(record: dict, keys: list[Ed25519PublicKey]) -> bool:
    """Whether the record's ``sig`` verifies with one of ``keys``."""
    try:
        signature = base64.b64decode(record.get("sig") or "", validate=True)
    except (ValueError, TypeError):
        return False
    data = _signed_bytes(record)
    for key in keys:
        try:
            key.verify(signature, data)
            return True
        except InvalidSignature:
            continue
    return False
