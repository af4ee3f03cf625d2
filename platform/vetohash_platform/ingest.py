"""Taking in a bundle: verify it against the trusted keys, refuse replays and rollbacks, store it atomically.

A version 4 (chunked) bundle is verified chunk by chunk while its list is built beside the database
(vetohash_platform.biglist); a delta is applied only on top of the sequence it names as its base.
"""

from __future__ import annotations

import enum
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from vetohash import signals
from vetohash.bundle import MAX_SEQUENCE_STEP, MAX_VALIDITY_S, Bundle, decision_of, read_bundle_file
from vetohash.chunked import IMAGES, REMOVED, Manifest, open_chunked, read_manifest
from vetohash.errors import BundleError, BundleSignatureError
from vetohash.files import folder_aside, make_folder, place_folder

from .biglist import BigList, DeltaBaseError, build_generation, generation_folder, prune
from .store import STORE_FOLDER_MODE, BundleRow, ChainRow, SignalRow, Store, StoreError
from .trust import trusted_map


class BundleReplayError(BundleError):
    """A validly signed bundle whose sequence is not above the last one ingested for its authority and list."""


class BundleLimitError(BundleError):
    """A validly signed bundle beyond this platform's limits: valid for too long, or a sequence too far ahead."""


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
        raise _located(error, path, bool(trusted)) from None
    digest = hashlib.sha256(data).hexdigest()
    with store.transaction():
        previous = store.bundle(bundle.key_id, bundle.list_name)
        if previous is not None and previous.sha256 == digest:
            return Ingested(bundle, digest, Outcome.UNCHANGED, previous.sequence)
        _check_limits(f"{path}: refused: list {bundle.list_name!r} from {bundle.authority!r} (key {bundle.key_id})",
                      bundle.expires, bundle.sequence, previous.sequence if previous else None, now)
        if previous is not None and bundle.sequence <= previous.sequence:
            raise BundleReplayError(
                f"{path}: refused as a replay or rollback: sequence {bundle.sequence} of list "
                f"{bundle.list_name!r} from {bundle.authority!r} (key {bundle.key_id}) is not above "
                f"{previous.sequence}, the last one ingested")
        store.put_bundle(_row(bundle, data, digest))
    return Ingested(bundle, digest, Outcome.REPLACED if previous else Outcome.ADDED,
                    previous.sequence if previous else None)


@dataclass(frozen=True)
class IngestedList:
    """A version 4 list taken in: its verified manifest, the manifest's SHA-256, what happened, and the
    sequence it replaced (a delta's base)."""

    manifest: Manifest
    sha256: str
    outcome: Outcome
    previous_sequence: int | None


def ingest_chunked(store: Store, path: Path, now: float | None = None) -> IngestedList:
    """Verify a version 4 bundle's folder chunk by chunk, build its list (a whole list, or a delta on the
    sequence it names as base) and put it in force atomically; raise a BundleError, changing nothing, if it
    is refused."""
    trusted = trusted_map(store)
    try:
        chunked = open_chunked(path, trusted, now=now)
        m = chunked.manifest
        previous = store.bundle(m.key_id, m.list_name)
        if previous is not None and previous.sha256 == chunked.sha256:
            return IngestedList(m, chunked.sha256, Outcome.UNCHANGED, previous.sequence)
        _check_limits(f"refused: list {m.list_name!r} from {m.authority!r} (key {m.key_id})", m.expires, m.sequence,
                      previous.sequence if previous else None, now)
        if previous is not None and m.sequence <= previous.sequence:
            raise BundleReplayError(f"refused as a replay or rollback: sequence {m.sequence} of list "
                                    f"{m.list_name!r} from {m.authority!r} (key {m.key_id}) is not above "
                                    f"{previous.sequence}, the last one ingested")
        base = None
        if m.base is not None:
            if previous is None or not previous.chunked or previous.sequence != m.base:
                held = "nothing" if previous is None else f"sequence {previous.sequence}"
                raise DeltaBaseError(f"this delta applies to sequence {m.base} of list {m.list_name!r}, but this "
                                     f"platform holds {held} of it: ingest the missing sequences or a whole list")
            base = BigList(read_manifest(previous.data, trusted, now=now),
                           generation_folder(store, m.key_id, m.list_name, previous.sequence))
    except BundleError as error:
        raise _located(error, path, bool(trusted)) from None
    final = generation_folder(store, m.key_id, m.list_name, m.sequence)
    make_folder(final.parent, StoreError, STORE_FOLDER_MODE)
    try:
        with folder_aside(final, StoreError, mode=STORE_FOLDER_MODE) as temp:
            try:
                crop_hashes = build_generation(chunked, base, temp)
            except BundleError as error:
                raise _located(error, path, bool(trusted)) from None
            with store.transaction():
                if store.bundle(m.key_id, m.list_name) != previous:
                    raise BundleReplayError(f"{path}: list {m.list_name!r} changed while this bundle was built; "
                                            "ingest it again")
                # a folder already at `final` is the leftover of an interrupted ingest: never the one in force
                place_folder(temp, final, StoreError, mode=STORE_FOLDER_MODE, overwrite=True)
                base_crops = None if base is None or previous is None else previous.signal(signals.CROPS)
                crop_hashes += 0 if base_crops is None else base_crops.hashes
                store.put_bundle(_chunked_row(m, chunked.manifest_bytes, chunked.sha256, crop_hashes))
                store.add_chain(ChainRow(m.key_id, m.list_name, m.sequence, m.base, chunked.sha256, m.images,
                                         m.count(IMAGES), m.count(REMOVED), int(time.time())))
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        if not any(final.parent.iterdir()):
            final.parent.rmdir()  # the first bundle of this list was refused: leave no trace of it
        raise
    prune(store, m.key_id, m.list_name, keep=m.sequence)
    return IngestedList(m, chunked.sha256, Outcome.REPLACED if previous else Outcome.ADDED,
                        previous.sequence if previous else None)


def _check_limits(what: str, expires: int, sequence: int, previous: int | None, now: float | None) -> None:
    """BundleLimitError (its message starting with `what`) for a validly signed list beyond this platform's
    limits: valid for more than MAX_VALIDITY_S from now, or a sequence more than MAX_SEQUENCE_STEP above both
    the clock and the `previous` sequence ingested (one such bundle would freeze its list for good)."""
    now = time.time() if now is None else now
    if expires > now + MAX_VALIDITY_S:
        raise BundleLimitError(f"{what} is valid for {(expires - now) / 86_400:,.0f} days, more than the "
                               f"{MAX_VALIDITY_S // 86_400} a platform accepts")
    if sequence > max(int(now), previous or 0) + MAX_SEQUENCE_STEP:
        raise BundleLimitError(f"{what}: sequence {sequence} runs more than {MAX_SEQUENCE_STEP} ahead of both the "
                               "current time and the last sequence ingested (it could freeze the list for good)")


def _located(error: BundleError, path: Path, trusted: bool) -> BundleError:
    """The same error, its message naming the bundle's path and, when no key is trusted, what to do."""
    message = str(error) if str(path) in str(error) else f"{path}: {error}"
    if isinstance(error, BundleSignatureError) and not trusted:
        message += " (no authority key is trusted yet: add one with `platform trust add`)"
    return type(error)(message)


def _chunked_row(m: Manifest, data: bytes, digest: str, crop_hashes: int) -> BundleRow:
    calibration = m.calibration
    counts = {signals.NETWORK: m.images, signals.CROPS: crop_hashes, signals.DCT: m.images}
    return BundleRow(
        key_id=m.key_id, list_name=m.list_name, authority=m.authority, sequence=m.sequence, sha256=digest,
        data=data, model=m.spec.name, created=m.created, expires=m.expires, ingested=int(time.time()),
        decision=decision_of(dct=m.signals.dct is not None, crops=m.signals.crops is not None),
        signals=tuple(SignalRow(name, counts[name], threshold) for name, threshold in m.signals.thresholds.items()),
        calibration=None if calibration is None else calibration.to_dict(), chunked=1)


def _row(bundle: Bundle, data: bytes, digest: str) -> BundleRow:
    calibration = bundle.calibration
    return BundleRow(
        key_id=bundle.key_id,
        list_name=bundle.list_name,
        authority=bundle.authority,
        sequence=bundle.sequence,
        sha256=digest,
        data=data,
        model=bundle.spec.name,
        created=bundle.created,
        expires=bundle.expires,
        ingested=int(time.time()),
        decision=bundle.decision,
        signals=tuple(SignalRow(s.name, len(s.hashes), s.threshold, None if bundle.agree is None else
                                bundle.agree[s.name]) for s in bundle.signals),
        calibration=None if calibration is None else calibration.to_dict(),
    )
