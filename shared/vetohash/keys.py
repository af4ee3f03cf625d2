"""Ed25519 keys: the authority's private key file and the one-line public key that platforms trust.

The private key is PKCS8 PEM, created 0600 (never widened then narrowed) and optionally encrypted with a
passphrase. The public key travels as text, `vetohash-ed25519:` plus unpadded URL-safe base64 of its 32 raw
bytes, so it can be pasted into a config file or a chat without a file attachment.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import KeyFileError
from .files import make_folder, read_bounded, write_atomic

PUBLIC_PREFIX = "vetohash-ed25519:"
PRIVATE_KEY_NAME = "authority.key"
PUBLIC_KEY_NAME = "authority.pub"
MAX_KEY_FILE_BYTES = 64 * 1024  # far above any PEM key; refuses to slurp a wrong, huge file
KEY_FOLDER_MODE = 0o700  # a folder keygen creates holds the private key
_ENCRYPTED_PEM = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"  # PKCS#8 with a passphrase, as keygen writes it
_PUBLIC_BODY = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, unpadded URL-safe base64


@dataclass(frozen=True)
class PublicKey:
    """A raw 32-byte Ed25519 public key; `key_id` names it in bundles and messages."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise KeyFileError("an Ed25519 public key is exactly 32 bytes")

    @property
    def key_id(self) -> str:
        """First 16 hex digits of sha256(raw): short enough to read aloud, long enough not to collide."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def to_text(self) -> str:
        """The one-line text form, `vetohash-ed25519:<unpadded urlsafe base64>`."""
        return PUBLIC_PREFIX + base64.urlsafe_b64encode(self.raw).decode("ascii").rstrip("=")

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        """Parse the text form (surrounding whitespace allowed); anything else is a KeyFileError."""
        if not isinstance(text, str):
            raise KeyFileError(f"a public key must be text, not {type(text).__name__}")
        text = text.strip()
        body = text.removeprefix(PUBLIC_PREFIX)
        if body == text or not _PUBLIC_BODY.fullmatch(body):
            raise KeyFileError(f"not a vetohash public key (expected {PUBLIC_PREFIX}<43 base64 characters>): "
                               f"{text[:60]!r}")
        raw = base64.urlsafe_b64decode(body + "=")
        key = cls(raw)
        if key.to_text() != text:  # the last character carries unused bits; only one spelling is valid
            raise KeyFileError(f"public key text is not in canonical form: {text[:60]!r}")
        return key

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether `signature` is this key's Ed25519 signature of `message`."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 private key from the operating system's randomness."""
    return Ed25519PrivateKey.generate()


def public_key_of(key: Ed25519PrivateKey) -> PublicKey:
    """The public half of a private key."""
    return PublicKey(key.public_key().public_bytes_raw())


def write_keypair(out_dir: Path, key: Ed25519PrivateKey, passphrase: bytes | None = None) -> tuple[Path, Path]:
    """Write `authority.key` (PKCS8 PEM, mode 0600 from creation) and `authority.pub`; never overwrite a key."""
    if passphrase is not None and not passphrase:
        raise KeyFileError("the passphrase is empty; give a real one or none")
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key")
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    make_folder(out_dir, KeyFileError, KEY_FOLDER_MODE)
    # Linked into place, not renamed: a key that appeared since the check above is refused, never replaced.
    write_atomic(private_path, pem, KeyFileError, mode=0o600, overwrite=False)
    write_atomic(public_path, (public_key_of(key).to_text() + "\n").encode("ascii"), KeyFileError,
                 overwrite=False)
    return private_path, public_path


def is_encrypted(path: Path) -> bool:
    """Whether the private key file at `path` needs a passphrase; a KeyFileError if it cannot be read."""
    return _ENCRYPTED_PEM in _read_small(path, "private key")


def read_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Load an Ed25519 private key file; each way it can fail is its own KeyFileError."""
    data = _read_small(path, "private key")
    encrypted = _ENCRYPTED_PEM in data
    if encrypted and not passphrase:
        raise KeyFileError(f"{path} is encrypted; a passphrase is needed")
    if not encrypted and passphrase:
        raise KeyFileError(f"{path} is not encrypted, but a passphrase was given")
    try:
        key = serialization.load_pem_private_key(data, passphrase or None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        if encrypted:
            raise KeyFileError(f"wrong passphrase for {path} (or the file is damaged)") from None
        raise KeyFileError(f"{path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__.lstrip('_')}, not an Ed25519 key")
    return key


def read_public_key(source: str | Path) -> PublicKey:
    """A public key from its text form or from a file (such as `authority.pub`) that holds it."""
    if isinstance(source, str) and source.strip().startswith(PUBLIC_PREFIX):
        return PublicKey.from_text(source)
    path = Path(source)
    data = _read_small(path, "public key")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not a vetohash public key file") from None
    return PublicKey.from_text(text)


def _read_small(path: Path, what: str) -> bytes:
    """A key file's bytes, refusing missing, unreadable, odd and implausibly large files."""
    return read_bounded(path, MAX_KEY_FILE_BYTES, f"{what} file", KeyFileError)
