"""The authorities whose bundles this platform accepts: their Ed25519 public keys, each with an optional name."""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass

from vetohash.errors import VetohashError
from vetohash.keys import PublicKey, read_public_key

from .store import KeyRow, Store

MAX_NAME = 64
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class TrustError(VetohashError):
    """A trust change was refused: a clashing or malformed name, or no such key."""


class Change(enum.Enum):
    """What `add_key` did."""

    ADDED = "added"
    RENAMED = "renamed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class TrustedKey:
    """A trusted authority key, its optional local name and when it was added (unix seconds)."""

    key: PublicKey
    name: str | None
    added: int

    @property
    def key_id(self) -> str:
        """The key's short id, as bundles name it."""
        return self.key.key_id

    @property
    def label(self) -> str:
        """The name if there is one, else the key id."""
        return self.name or self.key_id


def trusted_keys(store: Store) -> list[TrustedKey]:
    """Every trusted key, oldest first."""
    return [TrustedKey(PublicKey.from_text(row.public_key), row.name, row.added) for row in store.keys()]


def trusted_map(store: Store) -> dict[str, PublicKey]:
    """Trusted keys by key id, the form the bundle reader takes."""
    return {trusted.key_id: trusted.key for trusted in trusted_keys(store)}


def add_key(store: Store, source: str, name: str | None = None) -> tuple[TrustedKey, Change]:
    """Trust the key given as its text form or a .pub file. Adding a trusted key again only renames it."""
    key = read_public_key(source)
    if name is not None:
        _check_name(name)
    with store.transaction():
        existing = {trusted.key_id: trusted for trusted in trusted_keys(store)}
        clash = next((t for t in existing.values() if name is not None and t.name == name), None)
        if clash is not None and clash.key_id != key.key_id:
            raise TrustError(f"the name {name!r} is already used by key {clash.key_id}")
        old = existing.get(key.key_id)
        if old is not None and (name is None or name == old.name):
            return old, Change.UNCHANGED
        trusted = TrustedKey(key, name, old.added if old else int(time.time()))
        store.put_key(KeyRow(key.key_id, name, key.to_text(), trusted.added))
    return trusted, Change.RENAMED if old else Change.ADDED


def remove_key(store: Store, key_id_or_name: str) -> TrustedKey:
    """Stop trusting a key, named by its key id or its local name. Its stored bundles stay, unused."""
    with store.transaction():
        for trusted in trusted_keys(store):
            if key_id_or_name in (trusted.key_id, trusted.name):
                store.delete_key(trusted.key_id)
                return trusted
    raise TrustError(f"no trusted key has the id or name {key_id_or_name!r} (see `platform trust list`)")


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME or not name.isprintable() or name != name.strip():
        raise TrustError(f"a key name must be 1 to {MAX_NAME} printable characters without surrounding spaces")
    if _KEY_ID.fullmatch(name):
        raise TrustError(f"the name {name!r} looks like a key id; choose a name that cannot be mistaken for one")
