"""Which stored bundles are in force: each is verified again, from its stored bytes, every time it is used.

A bundle stops being used, without being deleted, when its key is removed from trust or when it expires;
`platform bundles` shows it with the reason. Re-verifying also catches a database edited behind our back.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from vetohash.bundle import Bundle, read_bundle
from vetohash.errors import BundleError, BundleExpiredError

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
    """A stored bundle with its status; `bundle` is the freshly verified bundle when the status is ACTIVE."""

    row: BundleRow
    status: Status
    reason: str
    bundle: Bundle | None


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
            bundle = read_bundle(row.data, trusted, now=now)
        except BundleExpiredError as error:
            out.append(StoredBundle(row, Status.EXPIRED, str(error), None))
        except BundleError as error:
            out.append(StoredBundle(row, Status.INVALID, f"stored bytes fail verification: {error}", None))
        else:
            out.append(StoredBundle(row, Status.ACTIVE, "", bundle))
    return out
