"""Which stored bundles are in force: each is verified again, from its stored bytes, every time it is used.

A bundle stops being used, without being deleted, when its key is removed from trust or when it expires;
`platform bundles` shows it with the reason. Re-verifying also catches a database edited behind our back.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from pathlib import Path

from vetohash.bundle import Bundle, read_bundle
from vetohash.chunked import Manifest, read_manifest
from vetohash.errors import BundleError, BundleExpiredError

from .biglist import generation_folder
from .store import BundleRow, Store
from .trust import trusted_map


class Status(enum.Enum):
    """Whether a stored bundle is used for screening, and if not, why."""

    ACTIVE = "active"
    EXPIRED = "expired"
    UNTRUSTED = "untrusted"  # its key was removed from trust
    INVALID = "invalid"  # its stored bytes no longer verify


@dataclass(frozen=True)
class StoredBundle:
    """A stored bundle with its status; when the status is ACTIVE, `bundle` is the freshly verified bundle of
    a version 1-3 row, `manifest` the freshly verified manifest of a version 4 list."""

    row: BundleRow
    status: Status
    reason: str
    bundle: Bundle | None
    manifest: Manifest | None = None
    folder: Path | None = None  # where a version 4 list's files are


def stored_bundles(store: Store, now: float | None = None) -> list[StoredBundle]:
    """Every stored bundle with its status at `now` (default: the current time)."""
    now = time.time() if now is None else now
    trusted = trusted_map(store)
    out = []
    for row in store.bundles():
        if row.key_id not in trusted:
            out.append(StoredBundle(row, Status.UNTRUSTED, f"key {row.key_id} was removed from trust", None))
            continue
        try:
            if row.chunked:
                out.append(StoredBundle(row, Status.ACTIVE, "", None, read_manifest(row.data, trusted, now=now),
                                        generation_folder(store, row.key_id, row.list_name, row.sequence)))
            else:
                out.append(StoredBundle(row, Status.ACTIVE, "", read_bundle(row.data, trusted, now=now)))
        except BundleExpiredError as error:
            out.append(StoredBundle(row, Status.EXPIRED, str(error), None))
        except BundleError as error:
            out.append(StoredBundle(row, Status.INVALID, f"stored bytes fail verification: {error}", None))
    return out
