"""Taking in a bundle: verify it against the trusted keys, refuse replays and rollbacks, store it atomically."""

from __future__ import annotations

import enum
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from vetohash.bundle import Bundle, read_bundle_file
from vetohash.errors import BundleError, BundleSignatureError

from .store import BundleRow, Store
from .trust import trusted_map


class BundleReplayError(BundleError):
    """A validly signed bundle whose sequence is not above the last one ingested for its authority and list."""


class Outcome(enum.Enum):
    """What `ingest_file` did."""

    ADDED = "added"  # the first bundle of its authority key and list
    REPLACED = "replaced"  # a newer sequence replaced the stored one
    UNCHANGED = "unchanged"  # these exact bytes were already ingested


@dataclass(frozen=True)
class Ingested:
    """The verified bundle, the SHA-256 of its bytes, what happened, and the sequence it replaced."""

    bundle: Bundle
    sha256: str
    outcome: Outcome
    previous_sequence: int | None


def ingest_file(store: Store, path: Path, now: float | None = None) -> Ingested:
    """Verify the bundle file and store it; raise a BundleError (and change nothing) if it is refused."""
    trusted = trusted_map(store)
    try:
        bundle, data = read_bundle_file(path, trusted, now=now)
    except BundleError as error:
        message = str(error) if str(path) in str(error) else f"{path}: {error}"
        if isinstance(error, BundleSignatureError) and not trusted:
            message += " (no authority key is trusted yet: add one with `platform trust add`)"
        raise type(error)(message) from None
    digest = hashlib.sha256(data).hexdigest()
    with store.transaction():
        previous = store.bundle(bundle.key_id, bundle.list_name)
        if previous is not None and previous.sha256 == digest:
            return Ingested(bundle, digest, Outcome.UNCHANGED, previous.sequence)
        if previous is not None and bundle.sequence <= previous.sequence:
            raise BundleReplayError(
                f"{path}: refused as a replay or rollback: sequence {bundle.sequence} of list "
                f"{bundle.list_name!r} from {bundle.authority!r} (key {bundle.key_id}) is not above "
                f"{previous.sequence}, the last one ingested")
        store.put_bundle(_row(bundle, data, digest))
    return Ingested(bundle, digest, Outcome.REPLACED if previous else Outcome.ADDED,
                    previous.sequence if previous else None)


def _row(bundle: Bundle, data: bytes, digest: str) -> BundleRow:
    calibration = bundle.calibration
    return BundleRow(
        key_id=bundle.key_id,
        list_name=bundle.list_name,
        authority=bundle.authority,
        sequence=bundle.sequence,
        sha256=digest,
        data=data,
        hash_count=len(bundle.hashes),
        threshold=bundle.threshold,
        model=bundle.spec.name,
        created=bundle.created,
        expires=bundle.expires,
        target_fpr=calibration.target_fpr if calibration else None,
        measured_fpr=calibration.measured_fpr if calibration else None,
        innocent_images=calibration.innocent_images if calibration else None,
        ingested=int(time.time()),
        decision=bundle.decision,
        dct_threshold=bundle.dct.threshold if bundle.dct else None,
        crops_threshold=bundle.crops.threshold if bundle.crops else None,
        crop_hashes=len(bundle.crops.hashes) if bundle.crops else 0,
    )
