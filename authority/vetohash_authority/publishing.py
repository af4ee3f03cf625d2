"""Publishing: hash the banned images and sign a bundle with the threshold, list name, sequence and expiry.

Hash ids are opaque ("h" + 12 random hex digits, fresh each time): a file name would tell every platform
what the banned images are called. The sequence number increases by default: it is the larger of the
current Unix time and one more than the last sequence this authority published for the list, remembered in
`publish-state.json` beside the key.

A bundle carries the DCT signal unless told not to, and, when it is calibrated, crop hashes (vetohash.signals,
cropviews). With innocent images, its thresholds are chosen together by `calibration`: the most of the
authority's own altered copies caught while an upper bound on the innocent images flagged stays within the
target. With the forgery guard and two or more signals, each also gets an agreement threshold
(vetohash.signals: a match needs two signals to agree unless one is very close).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vetohash.bundle import Bundle, Calibration, sign_bundle
from vetohash.chunked import MAX_CHUNK_IMAGES, Chunked, ListHeader, Signals, chunk_images, write_chunked
from vetohash.detail import MIN_DETAIL
from vetohash.errors import VetohashError
from vetohash.files import write_atomic
from vetohash.hasher import Hasher
from vetohash.keys import public_key_of
from vetohash.signals import CROPS, DCT, NETWORK, CropSignal, DctSignal

from .calibration import DEFAULT_CONFIDENCE, FORGERY_LIMITS, Lists, calibrate
from .cropviews import crop_hashes
from .evaluation import PAPER_THRESHOLD
from .sources import Source

STATE_NAME = "publish-state.json"
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Without innocent images to calibrate on: an eighth of the DCT hash's bits, which flagged none of the
# benchmark's 1,085 unrelated photos against 110 banned ones (docs/benchmarks.md).
DEFAULT_DCT_THRESHOLD = 32


class PublishError(VetohashError):
    """A publishing option is malformed, or the state file cannot be used."""


def parse_duration(text: str) -> int:
    """Seconds in a duration like "30d", "12h", "90m", "2w", "3600s" or "1d12h"."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or _DURATION.sub("", cleaned).strip():
        raise PublishError(f"cannot read the duration {text!r}; write it like 30d, 12h, 90m, 2w or 1d12h")
    seconds = sum(int(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise PublishError(f"the duration {text!r} must be longer than zero")
    return seconds


def opaque_ids(count: int) -> tuple[str, ...]:
    """`count` distinct random ids, "h" + 12 hex digits: they say nothing about the images."""
    ids: dict[str, None] = {}
    while len(ids) < count:
        ids["h" + secrets.token_hex(6)] = None
    return tuple(ids)


@dataclass(frozen=True)
class CropHashes:
    """The network's hashes of the banned images' crop views (cropviews), and the index of each one's source."""

    hashes: np.ndarray
    owners: np.ndarray


@dataclass(frozen=True)
class Innocent:
    """The authority's innocent images to calibrate on, and each one's group (calibration.groups_of)."""

    sources: Sequence[Source]
    groups: np.ndarray


@dataclass(frozen=True)
class Thresholds:
    """What a bundle will carry: a threshold per signal, its crop hashes (when it carries them), and its
    calibration (when calibrated)."""

    thresholds: dict[str, int]
    crops: CropHashes | None
    calibration: Calibration | None
    agree: dict[str, int] | None = None
    caught: float | None = None  # share of the authority's own altered copies the calibrated thresholds catch


def thresholds_for(hasher: Hasher, sources: Sequence[Source], given: Mapping[str, int], *, dct: bool, crops: bool,
                   innocent: Innocent | None, target_fpr: float, confidence: float = DEFAULT_CONFIDENCE,
                   agreement: bool = False, warn: Callable[[str], None],
                   progress: Callable[[int], None] | None = None) -> Thresholds:
    """Every threshold of a bundle: those `given` as they are, the others calibrated together on the innocent
    images (calibration.calibrate), with agreement thresholds (FORGERY_LIMITS) when `agreement` asks for
    them (a version 4 folder cannot carry them). Without innocent images, the DCT threshold defaults to
    DEFAULT_DCT_THRESHOLD and the network's to the paper's, both uncalibrated (`warn` says so), there are no agreement thresholds, and crop
    hashes come only with a given crops threshold."""
    with_crops = crops and (innocent is not None or CROPS in given)
    crop_list = CropHashes(*crop_hashes(hasher, [source.image for source in sources])) if with_crops else None
    if innocent is None:
        chosen = dict(given)
        if dct and DCT not in chosen:
            chosen[DCT] = DEFAULT_DCT_THRESHOLD
            warn(f"no DCT threshold given and no innocent images: using the DCT threshold {DEFAULT_DCT_THRESHOLD}, which is not "
                 "calibrated against false positives")
        if NETWORK not in chosen:
            chosen[NETWORK] = PAPER_THRESHOLD
            warn(f"no network threshold given and no innocent images: using the paper's threshold {PAPER_THRESHOLD}, which is not "
                 "calibrated against false positives; no crop hashes without a calibrated or given threshold")
        return Thresholds(chosen, crop_list, None)
    banned = hasher.hash_arrays(np.stack([source.array for source in sources]))
    lists = Lists({NETWORK: banned, **({CROPS: crop_list.hashes} if crop_list is not None else {}),
                   **({DCT: np.stack([source.dct for source in sources])} if dct else {})})
    done = calibrate(hasher, lists, [s.image for s in sources], [s.digest for s in sources],
                     [s.views for s in innocent.sources], np.stack([s.dct for s in innocent.sources]),
                     innocent.groups, target_fpr, confidence=confidence, given=given, progress=progress,
                     limits=FORGERY_LIMITS if agreement else None)
    chosen, record = done.choice.thresholds, done.calibration
    if chosen[NETWORK] <= 2 and NETWORK not in given:
        warn(f"the calibrated network threshold is {chosen[NETWORK]}: at a {target_fpr:g} false-positive rate this "
             "model can barely tell altered copies from innocent images")
    if record.bound_fpr is not None and record.bound_fpr > target_fpr:
        warn(f"the bound on innocent images flagged is {100 * record.bound_fpr:.1f}%, more than the target "
             f"{100 * target_fpr:.1f}%, even at the least the given thresholds allow")
    return Thresholds(chosen, crop_list, record, done.choice.agree, done.choice.recall)


def next_sequence(state_path: Path, list_name: str, now: int) -> int:
    """max(now, last + 1) for the list, from the state file (missing file: now)."""
    last = read_state(state_path).get(list_name)
    return max(now, last + 1) if isinstance(last, int) else now


def read_state(state_path: Path) -> dict[str, int]:
    """The last published sequence per list name."""
    try:
        data = json.loads(state_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise PublishError(f"{state_path}: cannot read the publishing state ({error}); fix or remove it") from None
    lists = data.get("last_sequence") if isinstance(data, dict) else None
    if not isinstance(lists, dict):
        raise PublishError(f"{state_path}: not a publishing state file; fix or remove it")
    return {name: value for name, value in lists.items() if isinstance(value, int)}


def record_sequence(state_path: Path, list_name: str, sequence: int) -> None:
    """Remember `sequence` as the last one published for the list (atomic replace)."""
    lists = read_state(state_path)
    lists[list_name] = max(sequence, lists.get(list_name, sequence))
    text = json.dumps({"last_sequence": dict(sorted(lists.items()))}, indent=2) + "\n"
    write_atomic(state_path, text.encode("utf-8"), PublishError)


def split_featureless(sources: Sequence[Source]) -> tuple[list[Source], list[Source]]:
    """(sources with detail, featureless sources): too little detail to hash (vetohash.detail), such as flat
    colour, faint gradients and near-blank pages.

    Their hashes are near-arbitrary and close to those of every other blank image, so publishing one would
    flag innocent blank uploads; and platforms never match a featureless query anyway.
    """
    kept = [source for source in sources if source.detail >= MIN_DETAIL]
    return kept, [source for source in sources if source.detail < MIN_DETAIL]


def build_bundle(hasher: Hasher, sources: Sequence[Source], key: Ed25519PrivateKey, *, thresholds: dict[str, int],
                 authority: str, list_name: str, sequence: int, expires_in: int,
                 calibration: Calibration | None = None, crops: CropHashes | None = None,
                 agree: Mapping[str, int] | None = None, now: int | None = None) -> tuple[Bundle, bytes]:
    """The bundle for the banned images and its signed bytes; with a DCT threshold it also carries their
    DCT hashes, with a crops threshold their `crops`, with `agree` its signals' agreement thresholds
    (vetohash.bundle picks the format version)."""
    if not sources:
        raise PublishError("there are no banned images to publish")
    _, flat = split_featureless(sources)
    if flat:
        raise PublishError(f"{flat[0].path} is featureless (detail {flat[0].detail:.1f} < {MIN_DETAIL:g}); "
                           f"{len(flat)} such image(s) among the banned ones, whose hashes would match blank images")
    created = int(time.time()) if now is None else now
    hashes = hasher.hash_arrays(np.stack([source.array for source in sources]))
    # Random row order too, so not even the sorting of file names shows through; the same for both signals.
    order = np.random.default_rng(secrets.randbits(64)).permutation(len(hashes))
    dct = None if DCT not in thresholds else DctSignal(
        hashes=np.stack([source.dct for source in sources])[order], threshold=thresholds[DCT])
    crop_signal = None
    if CROPS in thresholds:
        if crops is None:
            raise ValueError("a crops threshold needs the crop hashes")
        owners = np.argsort(order)[crops.owners]  # source i is row argsort(order)[i] of the bundle
        by_row = np.argsort(owners, kind="stable")  # crops in the bundle's row order, not the file names'
        crop_signal = CropSignal(hashes=crops.hashes[by_row], owners=owners[by_row].astype(np.int64),
                                 threshold=thresholds[CROPS])
    bundle = Bundle(spec=hasher.spec, weights=hasher.encoded_weights(), hashes=hashes[order],
                    ids=opaque_ids(len(sources)), threshold=thresholds[NETWORK], authority=authority,
                    key_id=public_key_of(key).key_id, list_name=list_name, sequence=sequence, created=created,
                    expires=created + expires_in, calibration=calibration, dct=dct, crops=crop_signal,
                    agree=None if agree is None else dict(agree))
    return bundle, sign_bundle(bundle, key)


def write_chunked_bundle(bundle: Bundle, key: Ed25519PrivateKey, out: Path, base: Chunked | None = None) -> Chunked:
    """Write `bundle` as a version 4 bundle folder at `out`: the whole list, or with `base` (an earlier version
    4 bundle of the same list and model) a delta on it.

    A delta matches images by content: a banned image whose network and DCT hashes are both in the base keeps
    the base's id and is not resent; the base's images missing from `bundle` are removed, the others added.
    Version 4 has no agreement thresholds: a bundle with them is refused.
    """
    if bundle.agree is not None:
        raise PublishError("a version 4 folder carries no agreement thresholds; calibrate it without them")
    signals = Signals(bundle.threshold, None if bundle.dct is None else bundle.dct.threshold,
                      None if bundle.crops is None else bundle.crops.threshold)
    header = ListHeader(spec=bundle.spec, authority=bundle.authority, list_name=bundle.list_name,
                        sequence=bundle.sequence, created=bundle.created, expires=bundle.expires, signals=signals,
                        calibration=bundle.calibration, base=None if base is None else base.manifest.sequence)
    dct = None if bundle.dct is None else bundle.dct.hashes
    crops = None if bundle.crops is None else bundle.crops.hashes
    owners = None if bundle.crops is None else bundle.crops.owners
    if base is None:
        return write_chunked(out, header, bundle.weights, chunk_images(bundle.ids, bundle.hashes, dct, crops,
                                                                       owners), key, PublishError)
    _check_base(bundle, base, signals)
    keys = [bundle.hashes[i].tobytes() + (b"" if dct is None else dct[i].tobytes()) for i in range(len(bundle.ids))]
    kept: dict[bytes, str] = {}
    for chunk in base.image_chunks():
        for i, old_id in enumerate(chunk.ids):
            old = chunk.neural[i].tobytes() + (b"" if chunk.dct is None else chunk.dct[i].tobytes())
            kept[old] = old_id
    new_keys = set(keys)
    removed = [old_id for old, old_id in kept.items() if old not in new_keys]
    added = np.array([i for i, k in enumerate(keys) if k not in kept], dtype=np.int64)
    ids = [bundle.ids[i] for i in added]
    crop_rows = None if owners is None else np.flatnonzero(np.isin(owners, added))
    images = chunk_images(ids, bundle.hashes[added], None if dct is None else dct[added],
                          None if crops is None or crop_rows is None else crops[crop_rows],
                          None if owners is None or crop_rows is None else np.searchsorted(added, owners[crop_rows]))
    return write_chunked(out, header, bundle.weights, images, key, PublishError,
                         removed=[removed[i:i + MAX_CHUNK_IMAGES] for i in range(0, len(removed), MAX_CHUNK_IMAGES)],
                         total_images=len(bundle.ids))


def _check_base(bundle: Bundle, base: Chunked, signals: Signals) -> None:
    old = base.manifest
    if (old.list_name, old.key_id) != (bundle.list_name, bundle.key_id):
        raise PublishError(f"the delta's base is list {old.list_name!r} of key {old.key_id}, not {bundle.list_name!r} "
                           f"of key {bundle.key_id}")
    if bundle.sequence <= old.sequence:
        raise PublishError(f"the delta's sequence {bundle.sequence} is not above its base's {old.sequence}")
    if old.spec != bundle.spec or base.weights() != bundle.weights:
        raise PublishError("the model differs from the base's: platforms could not compare the new hashes with the "
                           "old ones; publish a whole list")
    if (old.signals.dct is None) != (signals.dct is None) or (old.signals.crops is None) != (signals.crops is None):
        raise PublishError("the signals differ from the base's (DCT hashes, crop hashes); publish a whole list")
