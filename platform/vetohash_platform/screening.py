"""Screening images against every active bundle: decode in parallel, hash in batches, find the nearest banned hash.

Each distinct model (spec plus weights) is built once per run, however many lists share it, and each image
file is read and decoded once, however many models need it. A file that cannot be read or decoded gives a
result carrying its error; the rest of the batch goes on. An image with too little detail to hash
(vetohash.detail: flat colour, near-blank) is hashed and compared, but never a match: it is featureless.

A bundle with a DCT signal (format v2) matches an image when either its network hash or its DCT hash
(vetohash.dcthash, computed once per image whatever the number of bundles) is below that signal's threshold
(vetohash.fusion); the verdict says which. A bundle with crop hashes (format v3) also matches when the image's
network hash, over its views, is below the crops threshold from the nearest crop hash: a "neural" match that
names the banned image the crop was cut from.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vetohash import codec, fusion
from vetohash.bundle import Bundle
from vetohash.chunked import CROPS, DCT, NEURAL, Manifest
from vetohash.dcthash import BITS as DCT_BITS
from vetohash.dcthash import HASH_BYTES, dct_hashes
from vetohash.detail import MIN_DETAIL, detail
from vetohash.errors import ImageError, VetohashError
from vetohash.files import image_files
from vetohash.hasher import Hasher
from vetohash.hashes import Hash
from vetohash.matching import best_by_owner, nearest, nearest_by_owner
from vetohash.preprocess import (MAX_FILE_BYTES, Preprocess, collected_warnings, header_pixels, open_image,
                                 query_arrays, read_image_file)
from vetohash.specs import ModelSpec

from .active import StoredBundle
from .biglist import BigList
from .store import MatchRow, Store

BATCH = 256
# Decoded pixels the decoding threads may hold at once, whatever their number: eight 7000x7000 JPEGs took
# 4.5 GB on eight threads. An image costs about DECODE_BYTES_PER_PIXEL while it is decoded and turned into
# its inputs (the RGB image and its copies; measured about 19 for large JPEGs), counted from its header.
DECODE_BUDGET_BYTES = 1 << 30
DECODE_BYTES_PER_PIXEL = 20
STDIN = "-"


def default_workers() -> int:
    """Threads for decoding and for the network: one per CPU, at most 16 (Pillow and ONNX Runtime release the
    GIL while they work)."""
    return max(1, min(16, os.cpu_count() or 1))


@dataclass(frozen=True)
class Upload:
    """One image to screen: a file, or bytes already read (from stdin), under the name it is reported by."""

    name: str
    path: Path | None = None
    data: bytes | None = None


def uploads(arguments: Sequence[str], stdin: BinaryIO, warn: Callable[[str], None]) -> list[Upload]:
    """Files as given, image files under folders (recursive, sorted), and `-` for image bytes on stdin (once).

    A path given directly is kept whatever it is: a missing one, a FIFO or a link to a device becomes that
    entry's error result while every other image is screened (so one odd path never hides a match). Odd
    entries inside a folder, and a folder without any image file (often a wrong path, yet it screens as
    clean), are worth a warning.
    """
    if arguments.count(STDIN) > 1:
        raise VetohashError("`-` (stdin) can be given only once")
    out = []
    for argument in arguments:
        if argument == STDIN:
            out.append(Upload("<stdin>", data=stdin.read(MAX_FILE_BYTES + 1)))
        else:
            found = image_files([Path(argument)], warn)
            if not found:
                warn(f"{argument}: no image files found")
            out.extend(Upload(str(path), path=path) for path in found)
    return out


@dataclass(frozen=True)
class ListVerdict:
    """An image against one bundle: its hash, the nearest banned id and distance, the threshold, the verdict;
    the same for the DCT hash when the bundle carries a DCT signal (else the dct_ fields are None); and for
    the nearest crop hash when it carries crop hashes (`crops_nearest_id` names the banned image the crop was
    cut from; else the crops_ fields are None).

    `nearest_id` and `distance` are None when the bundle's list is empty, the crops_ ones when it has no crop
    hashes. A featureless image's hashes say nothing about it, so its distances are shown but never make a match.
    """

    authority: str
    key_id: str
    list_name: str
    sequence: int
    bundle_sha256: str
    hash: str
    nearest_id: str | None
    distance: int | None
    threshold: int
    featureless: bool = False
    dct_hash: str | None = None
    dct_nearest_id: str | None = None
    dct_distance: int | None = None
    dct_threshold: int | None = None
    crops_nearest_id: str | None = None
    crops_distance: int | None = None
    crops_threshold: int | None = None

    @property
    def signal(self) -> str | None:
        """Which hash function matched (vetohash.fusion: "neural", "dct", "both"), or None: each distance
        matches when strictly below its threshold, and none for a featureless image. The network matches by
        the whole-image distance or the crops distance."""
        if self.featureless:
            return None
        neural = ((self.distance is not None and self.distance < self.threshold)
                  or (self.crops_distance is not None and self.crops_threshold is not None
                      and self.crops_distance < self.crops_threshold))
        dct = (self.dct_distance is not None and self.dct_threshold is not None
               and self.dct_distance < self.dct_threshold)
        return fusion.signal(neural, dct)

    @property
    def match(self) -> bool:
        """Whether any signal matched."""
        return self.signal is not None


@dataclass(frozen=True)
class ModelHash:
    """An image's hash under one model, and the lists (`authority/list`) that use that model."""

    model: str
    model_id: str
    lists: tuple[str, ...]
    hash: str


@dataclass(frozen=True)
class ImageResult:
    """The outcome for one image: its SHA-256, detail score, hashes and verdicts; or the error that stopped it."""

    name: str
    sha256: str | None
    hashes: tuple[ModelHash, ...] = ()
    verdicts: tuple[ListVerdict, ...] = ()
    error: str | None = None
    detail: float | None = None
    dct: str | None = None  # the DCT hash (hex), when some active bundle carries a DCT signal
    error_type: type[ImageError] | None = None  # the kind of `error`, for callers that answer by it (HTTP)
    warnings: tuple[str, ...] = ()  # what the decoder warned about this file, one line each

    @property
    def matched(self) -> bool:
        """Whether any bundle matched."""
        return any(verdict.match for verdict in self.verdicts)

    @property
    def featureless(self) -> bool:
        """Whether the image has too little detail to hash (below vetohash.detail.MIN_DETAIL)."""
        return self.detail is not None and self.detail < MIN_DETAIL


@dataclass(frozen=True)
class _List:
    stored: StoredBundle
    bundle: Bundle | BigList  # a version 4 list is searched through its indexes
    threshold: int
    dct_threshold: int | None
    crops_threshold: int | None

    @property
    def header(self) -> Bundle | Manifest:
        """Where the list's authority, key, name and sequence are read."""
        return self.bundle.manifest if isinstance(self.bundle, BigList) else self.bundle

    @property
    def label(self) -> str:
        return f"{self.header.authority}/{self.header.list_name}"


@dataclass(frozen=True)
class _Model:
    model_id: str
    hasher: Hasher
    lists: tuple[_List, ...]


@dataclass(frozen=True)
class _Decoded:
    sha256: str
    arrays: dict[Preprocess, np.ndarray]  # (views, C, S, S) per preprocessing: preprocess.query_arrays
    # By Preprocess.draft, the side the image was decoded at for it (a list's DCT hashes and detail guard were
    # computed by its authority from the image decoded as its spec says).
    detail: dict[int, float]
    dct: dict[int, np.ndarray] | None
    warnings: tuple[str, ...]


class DecodeBudget:
    """Bytes that decoding threads may hold together: each waits until its image fits. An image larger than
    the whole budget waits until it is alone, so any image the pixel limit admits is still decoded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, amount: int) -> Iterator[None]:
        """Hold `amount` bytes (at most the whole budget) while the block runs."""
        amount = min(amount, self.limit)
        with self._changed:
            self._changed.wait_for(lambda: self.held + amount <= self.limit)
            self.held += amount
        try:
            yield
        finally:
            with self._changed:
                self.held -= amount
                self._changed.notify_all()


class Screener:
    """Hashes images under every active bundle's model and compares them with each bundle's banned hashes."""

    def __init__(self, active: Sequence[StoredBundle], threshold: int | None = None,
                 workers: int | None = None, batch: int = BATCH, dct_threshold: int | None = None,
                 crops_threshold: int | None = None, decode_budget: int = DECODE_BUDGET_BYTES) -> None:
        """`threshold`, `dct_threshold` and `crops_threshold` replace every bundle's own (the latter two only
        where a bundle carries a DCT signal, crop hashes)."""
        if not active:
            raise VetohashError("no active bundles to screen against: trust an authority key with "
                                "`platform trust add`, then `platform ingest BUNDLE` (see `platform bundles`)")
        if dct_threshold is not None and not 0 <= dct_threshold <= DCT_BITS:
            raise VetohashError(f"the DCT threshold {dct_threshold} is outside 0..{DCT_BITS}")
        self.workers = workers or default_workers()
        groups: dict[str, list[_List]] = {}
        hashers: dict[str, Hasher] = {}
        dct_any = False
        for stored in active:
            found = _searchable(stored)
            spec, weights = found.spec, found.weights
            own_neural, own_dct, own_crops = found.thresholds
            if threshold is not None and not 0 <= threshold <= spec.bits:
                raise VetohashError(f"--threshold {threshold} is outside 0..{spec.bits} for the "
                                    f"{spec.bits}-bit hashes of list {stored.row.list_name!r}")
            if crops_threshold is not None and not 0 <= crops_threshold <= spec.bits:
                raise VetohashError(f"--crops-threshold {crops_threshold} is outside 0..{spec.bits} for "
                                    f"the {spec.bits}-bit hashes of list {stored.row.list_name!r}")
            model_id = hashlib.sha256(codec.pack([spec.to_dict(), weights])).hexdigest()[:16]
            if model_id not in hashers:
                hashers[model_id] = found.hasher().with_threads(self.workers)
            groups.setdefault(model_id, []).append(
                _List(stored, found.bundle, own_neural if threshold is None else threshold,
                      own_dct if dct_threshold is None or own_dct is None else dct_threshold,
                      own_crops if crops_threshold is None or own_crops is None else crops_threshold))
            dct_any = dct_any or own_dct is not None
        self.models = [_Model(mid, hashers[mid], tuple(lists)) for mid, lists in groups.items()]
        self.dct = dct_any
        self.batch = batch
        self.budget = DecodeBudget(decode_budget)  # shared by all decoding threads

    def run(self, images: Iterable[Upload], compare: bool = True) -> Iterator[ImageResult]:
        """One result per image, in input order; with `compare=False`, hashes only (no verdicts)."""
        pending: list[tuple[Upload, _Decoded | ImageError]] = []
        for item in self._decoded(images):
            pending.append(item)
            if len(pending) == self.batch:
                yield from self._finish(pending, compare)
                pending = []
        if pending:
            yield from self._finish(pending, compare)

    def _decoded(self, images: Iterable[Upload]) -> Iterator[tuple[Upload, _Decoded | ImageError]]:
        """Decode on a thread pool, keeping up to two batches in flight so decoding overlaps inference."""
        pres = list(dict.fromkeys(model.hasher.spec.preprocess for model in self.models))
        pool = ThreadPoolExecutor(max_workers=self.workers)
        queue: deque[tuple[Upload, Future[_Decoded | ImageError]]] = deque()
        try:
            for upload in images:
                queue.append((upload, pool.submit(_decode, upload, pres, self.dct, self.budget)))
                if len(queue) >= 2 * self.batch:
                    upload, future = queue.popleft()
                    yield upload, future.result()
            while queue:
                upload, future = queue.popleft()
                yield upload, future.result()
        finally:
            pool.shutdown(cancel_futures=True)

    def _finish(self, items: list[tuple[Upload, _Decoded | ImageError]], compare: bool) -> Iterator[ImageResult]:
        good = [(upload, decoded) for upload, decoded in items if isinstance(decoded, _Decoded)]
        hashes: dict[str, np.ndarray] = {}
        verdicts: dict[str, list[list[ListVerdict]]] = {}
        for model in self.models:
            pre = model.hasher.spec.preprocess
            featureless = [decoded.detail[pre.draft] < MIN_DETAIL for _, decoded in good]
            dct = np.stack([decoded.dct[pre.draft] for _, decoded in good if decoded.dct is not None]) \
                if self.dct and good else np.zeros((0, HASH_BYTES), np.uint8)
            every, owners = model.hasher.hash_queries([decoded.arrays[pre] for _, decoded in good])
            # An image's hash is that of its first view, the image as it is; matching uses all its views.
            firsts = np.searchsorted(owners, np.arange(len(good)))
            hashes[model.model_id] = every[firsts]
            if compare:
                verdicts[model.model_id] = [_compare(lst, hashes[model.model_id], (every, owners), dct, featureless)
                                            for lst in model.lists]
        row = 0
        for upload, decoded in items:
            if isinstance(decoded, ImageError):
                yield ImageResult(upload.name, None, error=str(decoded), error_type=type(decoded))
                continue
            model_hashes = tuple(
                ModelHash(m.hasher.spec.name, m.model_id, tuple(lst.label for lst in m.lists),
                          Hash(hashes[m.model_id][row].tobytes()).hex)
                for m in self.models)
            found = tuple(per_list[row] for m in self.models for per_list in verdicts.get(m.model_id, []))
            # The detail and DCT hash reported are those of the image as the first model decodes it.
            first = self.models[0].hasher.spec.preprocess.draft
            dct_hex = Hash(decoded.dct[first].tobytes()).hex if decoded.dct is not None else None
            yield ImageResult(upload.name, decoded.sha256, model_hashes, found, detail=decoded.detail[first],
                              dct=dct_hex, warnings=decoded.warnings)
            row += 1


def _compare(lst: _List, hashes: np.ndarray, views: tuple[np.ndarray, np.ndarray], dct: np.ndarray,
             featureless: Sequence[bool]) -> list[ListVerdict]:
    """Each image's verdict against one bundle, from its network hashes (`views`: the hash of every view and
    the image it belongs to; the nearest over an image's views counts, to whole-image and to crop hashes) and,
    for a bundle with a DCT signal, its DCT hash."""
    bundle = lst.bundle
    if isinstance(bundle, BigList):
        return _compare_indexed(lst, bundle, hashes, views, dct, featureless)
    common = dict(authority=bundle.authority, key_id=bundle.key_id, list_name=bundle.list_name,
                  sequence=bundle.sequence, bundle_sha256=lst.stored.row.sha256, threshold=lst.threshold)
    empty = len(bundle.hashes) == 0 or len(hashes) == 0
    found = None if empty else nearest_by_owner(views[0], views[1], len(hashes), bundle.hashes)
    dct_found = None if empty or bundle.dct is None else nearest(dct, bundle.dct.hashes)
    crops = bundle.crops
    crops_found = (None if empty or crops is None or len(crops.hashes) == 0
                   else nearest_by_owner(views[0], views[1], len(hashes), crops.hashes))
    out = []
    for row, (h, f) in enumerate(zip(hashes, featureless, strict=True)):
        verdict: dict[str, Any] = dict(common, hash=Hash(h.tobytes()).hex, featureless=f, nearest_id=None,
                                       distance=None)
        if found is not None:
            verdict.update(nearest_id=bundle.ids[int(found.index[row])], distance=int(found.distance[row]))
        if bundle.dct is not None:
            verdict.update(dct_hash=Hash(dct[row].tobytes()).hex, dct_threshold=lst.dct_threshold)
        if dct_found is not None:
            verdict.update(dct_nearest_id=bundle.ids[int(dct_found.index[row])],
                           dct_distance=int(dct_found.distance[row]))
        if crops is not None:
            verdict.update(crops_threshold=lst.crops_threshold)
        if crops_found is not None and crops is not None:
            verdict.update(crops_nearest_id=bundle.ids[int(crops.owners[int(crops_found.index[row])])],
                           crops_distance=int(crops_found.distance[row]))
        out.append(ListVerdict(**verdict))
    return out


def _compare_indexed(lst: _List, big: BigList, hashes: np.ndarray, views: tuple[np.ndarray, np.ndarray],
                     dct: np.ndarray, featureless: Sequence[bool]) -> list[ListVerdict]:
    """As _compare, for a version 4 list: each signal's nearest image comes from its index."""
    m = big.manifest
    common = dict(authority=m.authority, key_id=m.key_id, list_name=m.list_name, sequence=m.sequence,
                  bundle_sha256=lst.stored.row.sha256, threshold=lst.threshold)
    empty = big.rows - len(big.removed) == 0 or len(hashes) == 0
    found = None if empty else best_by_owner(big.nearest(NEURAL, views[0]), views[1], len(hashes))
    dct_found = None if empty or m.signals.dct is None else big.nearest(DCT, dct)
    crops_found = (None if empty or m.signals.crops is None
                   else best_by_owner(big.nearest(CROPS, views[0]), views[1], len(hashes)))
    out = []
    for row, (h, f) in enumerate(zip(hashes, featureless, strict=True)):
        verdict: dict[str, Any] = dict(common, hash=Hash(h.tobytes()).hex, featureless=f, nearest_id=None,
                                       distance=None)
        if found is not None and found.index[row] >= 0:
            verdict.update(nearest_id=big.id_of(int(found.index[row])), distance=int(found.distance[row]))
        if m.signals.dct is not None:
            verdict.update(dct_hash=Hash(dct[row].tobytes()).hex, dct_threshold=lst.dct_threshold)
        if dct_found is not None and dct_found.index[row] >= 0:
            verdict.update(dct_nearest_id=big.id_of(int(dct_found.index[row])),
                           dct_distance=int(dct_found.distance[row]))
        if m.signals.crops is not None:
            verdict.update(crops_threshold=lst.crops_threshold)
        if crops_found is not None and crops_found.index[row] >= 0:
            verdict.update(crops_nearest_id=big.id_of(int(crops_found.index[row])),
                           crops_distance=int(crops_found.distance[row]))
        out.append(ListVerdict(**verdict))
    return out


@dataclass(frozen=True)
class _Searchable:
    """What the Screener needs of a stored bundle, whichever its format."""

    bundle: Bundle | BigList
    spec: ModelSpec
    weights: Any
    thresholds: tuple[int, int | None, int | None]  # neural, DCT, crops

    def hasher(self) -> Hasher:
        return self.bundle.hasher() if isinstance(self.bundle, Bundle) else Hasher.from_encoded(self.spec, self.weights)


def _searchable(stored: StoredBundle) -> _Searchable:
    if stored.manifest is not None and stored.folder is not None:
        big = BigList(stored.manifest, stored.folder)
        s = stored.manifest.signals
        return _Searchable(big, stored.manifest.spec, big.weights(), (s.neural, s.dct, s.crops))
    bundle = stored.bundle
    if bundle is None:
        raise ValueError("Screener takes active bundles only")
    return _Searchable(bundle, bundle.spec, bundle.weights,
                       (bundle.threshold, None if bundle.dct is None else bundle.dct.threshold,
                        None if bundle.crops is None else bundle.crops.threshold))


def _decode(upload: Upload, pres: Sequence[Preprocess], dct: bool, budget: DecodeBudget) -> _Decoded | ImageError:
    """One image's inputs, decoded within the pool's memory budget, with what the decoder warned about it (on
    an error, the warnings end its message)."""
    with collected_warnings() as caught:
        try:
            if upload.data is not None:
                data = upload.data
            elif upload.path is not None:
                data = read_image_file(upload.path, upload.name)
            else:
                raise ValueError(f"{upload.name}: an Upload needs a path or data")
            with budget.hold(len(data) + header_pixels(data) * DECODE_BYTES_PER_PIXEL):
                images = {draft: open_image(data, name=upload.name, draft=draft)
                          for draft in dict.fromkeys(pre.draft for pre in pres)}
                return _Decoded(hashlib.sha256(data).hexdigest(),
                                {pre: query_arrays(images[pre.draft], pre) for pre in pres},
                                {draft: detail(image) for draft, image in images.items()},
                                {draft: dct_hashes([image])[0] for draft, image in images.items()} if dct else None,
                                tuple(dict.fromkeys(caught)))  # Pillow repeats one per pass over the header
        except ImageError as error:
            return type(error)(f"{error} (warned: {'; '.join(dict.fromkeys(caught))})") if caught else error


class MatchLog:
    """Buffers matches and appends them to the store's log in one transaction per batch (and on close)."""

    def __init__(self, store: Store, flush_every: int = BATCH) -> None:
        self.store = store
        self.flush_every = flush_every
        self.rows: list[MatchRow] = []
        self.count = 0

    def add(self, result: ImageResult) -> None:
        """Log every matching verdict of one image."""
        now = time.time()
        for v in result.verdicts:
            signal = v.signal
            if signal is not None and result.sha256 is not None and v.nearest_id is not None \
                    and v.distance is not None:
                self.rows.append(MatchRow(now, result.sha256, v.hash, v.bundle_sha256, v.authority, v.key_id,
                                          v.list_name, v.sequence, v.nearest_id, v.distance, v.threshold, signal,
                                          v.dct_hash, v.dct_nearest_id, v.dct_distance, v.dct_threshold,
                                          v.crops_nearest_id, v.crops_distance, v.crops_threshold))
        if len(self.rows) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered."""
        self.store.add_matches(self.rows)
        self.count += len(self.rows)
        self.rows = []

    def __enter__(self) -> MatchLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
