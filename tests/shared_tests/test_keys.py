"""Authority keys: secret files are 0600 from creation, passphrases work, public keys have one text form."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vetohash.errors import KeyFileError
from vetohash.keys import (
    PublicKey,
    generate_private_key,
    is_encrypted,
    public_key_of,
    read_private_key,
    read_public_key,
    write_keypair,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = public_key_of(KEY)
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _non_canonical(text: str) -> str:
    """The same 32 bytes spelled with one of the last character's two unused bits set."""
    return text[:-1] + _B64[_B64.index(text[-1]) ^ 1]


def test_public_key_text_round_trip() -> None:
    """to_text is one line with the prefix; from_text reads it back, ignoring surrounding whitespace."""
    text = PUB.to_text()
    assert text.startswith("vetohash-ed25519:") and "\n" not in text and "=" not in text
    assert PublicKey.from_text(text) == PUB
    assert PublicKey.from_text(f"  {text}\n") == PUB


def test_key_id_is_a_sha256_prefix() -> None:
    """key_id is the first 16 hex digits of sha256 of the raw key."""
    assert PUB.key_id == hashlib.sha256(PUB.raw).hexdigest()[:16]


@pytest.mark.parametrize("text", [
    "",
    "vetohash-ed25519:",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    PUB.to_text()[:-1],  # 42 characters
    PUB.to_text() + "A",  # 44 characters
    PUB.to_text() + "=",  # padding
    _non_canonical(PUB.to_text()),
    PUB.to_text().replace("vetohash-ed25519:", "vetohash-ed448:"),
    PUB.to_text()[:20] + "+" + PUB.to_text()[21:],  # standard, not URL-safe, base64
    PUB.to_text()[:20] + " " + PUB.to_text()[21:],
])
def test_garbage_public_key_text_is_refused(text: str) -> None:
    """Anything but the exact text form is a KeyFileError, never a decoding exception."""
    with pytest.raises(KeyFileError):
        PublicKey.from_text(text)


def test_public_key_must_be_32_bytes() -> None:
    """A PublicKey cannot hold a raw key of the wrong length or type."""
    with pytest.raises(KeyFileError):
        PublicKey(b"\x00" * 31)
    with pytest.raises(KeyFileError):
        PublicKey.from_text(b"vetohash-ed25519:")  # type: ignore[arg-type]


def test_verify() -> None:
    """verify is True only for this key's signature of this exact message."""
    signature = KEY.sign(b"message")
    assert PUB.verify(signature, b"message")
    assert not PUB.verify(signature, b"messagf")
    assert not PUB.verify(signature[:-1], b"message")
    assert not public_key_of(generate_private_key()).verify(signature, b"message")


def test_modes_are_explicit_under_umask_0_and_key_bytes_never_sit_in_a_wider_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under umask 0 the folders keygen creates are 0700, authority.pub 0644 and authority.key 0600 (was: 0777
    and 0666 for the first two); every mode is set while the file is still empty, so no byte of the key is
    ever readable by others, not even for a moment."""
    real_fchmod = os.fchmod

    def fchmod_of_empty_files_only(fd: int, mode: int) -> None:
        assert os.fstat(fd).st_size == 0, "a mode was changed after bytes were written"
        real_fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", fchmod_of_empty_files_only)
    old = os.umask(0)
    try:
        private, public = write_keypair(tmp_path / "new" / "dir", KEY)
    finally:
        os.umask(old)
    assert private.name == "authority.key" and public.name == "authority.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "new" / "dir").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert sorted(p.name for p in private.parent.iterdir()) == ["authority.key", "authority.pub"]
    assert public.read_text() == PUB.to_text() + "\n"
    assert read_public_key(public) == PUB
    assert read_private_key(private).private_bytes_raw() == KEY.private_bytes_raw()


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    """write_keypair refuses when either file exists and leaves the old key untouched."""
    private, _ = write_keypair(tmp_path, KEY)
    before = private.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        write_keypair(tmp_path, generate_private_key())
    assert private.read_bytes() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "authority.pub").write_text("x")
    with pytest.raises(KeyFileError, match="already exists"):
        write_keypair(tmp_path / "other", KEY)
    assert not (tmp_path / "other" / "authority.key").exists()


def test_passphrase_round_trip(tmp_path: Path) -> None:
    """An encrypted key reads back with its passphrase; without it, or with a wrong one, the error says so."""
    private, _ = write_keypair(tmp_path, KEY, passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in private.read_bytes() and is_encrypted(private)
    assert not is_encrypted(write_keypair(tmp_path / "plain", KEY)[0])
    assert read_private_key(private, b"correct horse").private_bytes_raw() == KEY.private_bytes_raw()
    with pytest.raises(KeyFileError, match="passphrase is needed"):
        read_private_key(private)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        read_private_key(private, b"battery staple")


def test_passphrase_for_an_unencrypted_key_is_refused(tmp_path: Path) -> None:
    """Giving a passphrase for a plain key is an error, not silently ignored (the user expected encryption)."""
    private, _ = write_keypair(tmp_path, KEY)
    with pytest.raises(KeyFileError, match="not encrypted"):
        read_private_key(private, b"secret")


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    """An empty passphrase would look like encryption without being any; it is refused before writing."""
    with pytest.raises(KeyFileError, match="empty"):
        write_keypair(tmp_path, KEY, passphrase=b"")
    assert not (tmp_path / "authority.key").exists()


def test_unreadable_private_keys(tmp_path: Path) -> None:
    """Missing, non-key, huge, folder, FIFO and non-Ed25519 key files each give their own KeyFileError."""
    with pytest.raises(KeyFileError, match="no such private key file"):
        read_private_key(tmp_path / "missing.key")
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"\x00\xff not a key")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        read_private_key(garbage)
    huge = tmp_path / "huge.key"
    huge.write_bytes(b"-" * 100_000)
    with pytest.raises(KeyFileError, match="over the 65536-byte limit for private key files"):
        read_private_key(huge)
    with pytest.raises(KeyFileError, match="a folder, not a regular file"):
        read_private_key(tmp_path)
    os.mkfifo(tmp_path / "fifo.key")  # a plain open() would wait for a writer forever
    with pytest.raises(KeyFileError, match="a FIFO, not a regular file"):
        is_encrypted(tmp_path / "fifo.key")
    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        read_private_key(ec_key)
    public_pem = tmp_path / "public.pem"
    public_pem.write_bytes(KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        read_private_key(public_pem)


def test_read_public_key_from_text_or_file(tmp_path: Path) -> None:
    """read_public_key takes the text itself, or a path (as Path or str) to a file holding it."""
    path = tmp_path / "authority.pub"
    path.write_text(PUB.to_text() + "\n")
    assert read_public_key(PUB.to_text()) == PUB
    assert read_public_key(path) == PUB
    assert read_public_key(str(path)) == PUB
    with pytest.raises(KeyFileError, match="no such public key file"):
        read_public_key(tmp_path / "missing.pub")
    with pytest.raises(KeyFileError, match="no such public key file"):
        read_public_key("not-a-key-and-not-a-file")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(KeyFileError, match="not a vetohash public key"):
        read_public_key(path)
    path.write_text("vetohash-ed25519:short\n")
    with pytest.raises(KeyFileError, match="not a vetohash public key"):
        read_public_key(path)
