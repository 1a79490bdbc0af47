"""Signed bundles: keygen, the stdlib ed25519 check, trusted keys, tampered signatures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli, small_files, small_manifest, write_bundle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shopserve.bundle.install_script import verify_ed25519
from shopserve.bundle.signing import sign, signature_bytes


def test_stdlib_ed25519_agrees_with_cryptography() -> None:
    for size in (0, 1, 64, 1000):
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        message = os.urandom(size)
        signature = key.sign(message)
        assert verify_ed25519(public, message, signature)
        assert not verify_ed25519(public, message + b"x", signature)
        flipped = bytes([signature[0] ^ 1]) + signature[1:]
        assert not verify_ed25519(public, message, flipped)
        other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw,
                                                                      PublicFormat.Raw)
        assert not verify_ed25519(other, message, signature)
    assert not verify_ed25519(b"short", b"m", bytes(64))


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    result = run_cli("bundle", "keygen", str(tmp_path / "release.key"))
    assert result.returncode == 0, result.stderr
    private, public = tmp_path / "release.key", tmp_path / "release.key.pub"
    assert private.stat().st_mode & 0o077 == 0
    assert public.read_text().startswith("ed25519 ")
    return private, public


def signed_bundle(path: Path, key: Path, tamper_manifest: bool = False) -> Path:
    files = small_files()
    manifest = small_manifest(files)
    record = sign(manifest.to_json(), key)
    if tamper_manifest:  # sign one manifest, ship another
        manifest = small_manifest(files, version=2)
    return write_bundle(path, files, manifest, signature=signature_bytes(record))


def test_signed_bundle_verifies_with_its_trusted_key(tmp_path: Path,
                                                     keys: tuple[Path, Path]) -> None:
    private, public = keys
    bundle = signed_bundle(tmp_path / "signed.tar.gz", private)
    result = run_cli("bundle", "verify", str(bundle), "--trusted-key", str(public))
    assert result.returncode == 0, result.stderr
    assert public.read_text().split()[1] in result.stdout


def test_signature_over_another_manifest_is_refused(tmp_path: Path,
                                                    keys: tuple[Path, Path]) -> None:
    bundle = signed_bundle(tmp_path / "forged.tar.gz", keys[0], tamper_manifest=True)
    result = run_cli("bundle", "verify", str(bundle))
    assert result.returncode == 5
    assert "signature does not match manifest.json" in result.stderr
    prefix = tmp_path / "prefix"
    assert run_cli("bundle", "install", str(bundle), "--prefix", str(prefix)).returncode == 5
    assert not prefix.exists()


def test_other_key_and_unsigned_bundle_refused(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    other = run_cli("bundle", "keygen", str(tmp_path / "other.key"))
    assert other.returncode == 0, other.stderr
    bundle = signed_bundle(tmp_path / "signed.tar.gz", tmp_path / "other.key")
    result = run_cli("bundle", "verify", str(bundle), "--trusted-key", str(keys[1]))
    assert result.returncode == 5
    assert "not by the trusted key" in result.stderr
    unsigned = write_bundle(tmp_path / "unsigned.tar.gz", small_files())
    result = run_cli("bundle", "verify", str(unsigned), "--trusted-key", str(keys[1]))
    assert result.returncode == 5
    assert "not signed, but a trusted key was required" in result.stderr


def test_keygen_never_overwrites(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    before = keys[0].read_bytes()
    result = run_cli("bundle", "keygen", str(keys[0]))
    assert result.returncode == 4
    assert "already exists" in result.stderr
    assert keys[0].read_bytes() == before


def test_garbled_signature_record_is_named(tmp_path: Path) -> None:
    bad = json.dumps({"algorithm": "rsa", "public_key": "00", "signature": "00"}).encode()
    bundle = write_bundle(tmp_path / "rsa.tar.gz", small_files(), signature=bad)
    result = run_cli("bundle", "verify", str(bundle))
    assert result.returncode == 5
    assert "manifest.sig: unsupported algorithm 'rsa'" in result.stderr
