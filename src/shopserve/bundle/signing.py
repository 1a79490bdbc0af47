"""ed25519 keys and signatures for bundles (the adapter to ``cryptography``, build side only).

Checking a signature needs no dependency: ``install_script.verify_ed25519`` does it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from shopserve.errors import ConflictError, UsageError, require


def keygen(path: Path) -> tuple[Path, Path]:
    """Write a new private key to ``path`` (mode 0600) and its public key to ``path.pub``."""
    require("cryptography", "sign")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public_path = path.with_name(path.name + ".pub")
    for target in (path, public_path):
        if target.exists():
            raise ConflictError(f"{target} already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_text(f"ed25519 {raw_public.hex()}\n", encoding="ascii")
    return path, public_path


def sign(message: bytes, key_file: Path) -> dict[str, Any]:
    """The ``manifest.sig`` record of ``message``, signed with the private key in ``key_file``."""
    require("cryptography", "sign")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"{key_file}: not a readable unencrypted private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{key_file}: expected an ed25519 key, got {type(key).__name__}")
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return {"algorithm": "ed25519", "public_key": public.hex(),
            "signature": key.sign(message).hex()}


def signature_bytes(record: dict[str, Any]) -> bytes:
    return json.dumps(record, indent=2).encode("utf-8")
