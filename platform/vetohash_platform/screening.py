"""Screening images against every active bundle: decode in parallel, hash in batches, find the nearest banned hash.

Each distinct model (spec plus weights) is built once per run, however many lists share it, and each image
file is read and decoded once, however many models need it. A file that cannot be read or decoded gives a
result carrying its error; the rest of the batch goes on. An image with too little detail to hash
(vetohash.detail: flat colour, near-blank) is hashed and compared, but never a match: it is featureless.

Each bundle carries one or more signals (vetohash.signals: the network's hashes of the banned images, and
maybe crop hashes and DCT hashes); an image matches when any signal's nearest hash is closer than that signal's
threshold, and the verdict names the signals that matched. The image's DCT hash is computed once per image,
whatever the number of bundles.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vetohash import codec, signals
from vetohash.bundle import Bundle
from vetohash.chunked import MANIFEST_NAMES, Manifest
from vetohash.dcthash import BITS as DCT_BITS
from vetohash.dcthash import HASH_BYTES, dct_hashes
from vetohash.detail import MIN_DETAIL, detail
from vetohash.errors import ImageError, VetohashError
from vetohash.files import image_files
from vetohash.hasher import Hasher
from vetohash.hashes import Hash
from vetohash.matching import best_by_owner
from vetohash.preprocess import (MAX_FILE_BYTES, Preprocess, collected_warnings, header_pixels, open_image,
                                 query_arrays, read_image_file)
from vetohash.specs import ModelSpec

from .active import StoredBundle
from .biglist import BigList
from .store import MatchRow, MatchSide, Store

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
class Side:
    """An image against one signal of a bundle: the nearest banned id and the distance to it (None when the
    signal's list is empty), the threshold, and the image's hash under the signal's hash function when it is
    not the network's (the DCT hash)."""

    signal: str
    nearest_id: str | None
    distance: int | None
    threshold: int
    hash: str | None = None
    agree: int | None = None  # the signal's agreement threshold; None: its threshold (bundles before version 6)


@dataclass(frozen=True)
class ListVerdict:
    """An image against one bundle: its network hash, and one side per signal the bundle carries, in the
    order of vetohash.signals.ORDER (the network's first; a crop side names the banned image the crop was cut
    from). A featureless image's hashes say nothing about it, so its distances are shown but never match."""

    authority: str
    key_id: str
    list_name: str
    sequence: int
    bundle_sha256: str
    hash: str
    sides: tuple[Side, ...]
    featureless: bool = False

    def side(self, signal: str) -> Side | None:
        """The side of one signal, None when the bundle does not carry it."""
        return next((side for side in self.sides if side.signal == signal), None)

    @property
    def network(self) -> Side:
        """The network signal's side, which every bundle has."""
        side = self.side(signals.NETWORK)
        if side is None:
            raise ValueError("a verdict always has the network's side")
        return side

    @property
    def by(self) -> tuple[str, ...]:
        """The signals that matched (vetohash.signals.matched_by); none for a featureless image."""
        if self.featureless:
            return ()
        return signals.matched_by({s.signal: s.distance for s in self.sides},
                                  {s.signal: s.threshold for s in self.sides},
                                  {s.signal: s.agree for s in self.sides if s.agree is not None})

    @property
    def match(self) -> bool:
        """Whether any signal matched."""
        return bool(self.by)


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
    thresholds: dict[str, int]  # signal name -> the threshold screening uses, in vetohash.signals.ORDER
    agree: dict[str, int]  # signal name -> the agreement threshold screening uses

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

    def __init__(self, active: Sequence[StoredBundle], thresholds: Mapping[str, int] | None = None,
                 workers: int | None = None, batch: int = BATCH, decode_budget: int = DECODE_BUDGET_BYTES) -> None:
        """`thresholds` (signal name -> threshold) replace every bundle's own for the signals it carries, alone
        and to agree (0 turns a signal off)."""
        if not active:
            raise VetohashError("no active bundles to screen against: trust an authority key with "
                                "`platform trust add`, then `platform ingest BUNDLE` (see `platform bundles`)")
        given = dict(thresholds or {})
        unknown = sorted(set(given) - set(signals.ORDER))
        if unknown:
            raise VetohashError(f"no signal named {', '.join(unknown)}; the signals are {', '.join(signals.ORDER)}")
        self.workers = workers or default_workers()
        groups: dict[str, list[_List]] = {}
        hashers: dict[str, Hasher] = {}
        dct_any = False
        for stored in active:
            found = _searchable(stored)
            for name, bits in found.bits.items():
                value = given.get(name)
                if value is not None and not 0 <= value <= bits:
                    raise VetohashError(f"the {name} threshold {value} is outside 0..{bits} for the "
                                        f"{bits}-bit hashes of list {stored.row.list_name!r}")
            model_id = hashlib.sha256(codec.pack([found.spec.to_dict(), found.weights])).hexdigest()[:16]
            if model_id not in hashers:
                hashers[model_id] = found.hasher().with_threads(self.workers)
            used = {name: own if given.get(name) is None else given[name] for name, own in found.thresholds.items()}
            agree = {name: own if given.get(name) is None else given[name] for name, own in found.agree.items()}
            groups.setdefault(model_id, []).append(_List(stored, found.bundle, used, agree))
            dct_any = dct_any or signals.DCT in used
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
                queries = signals.Queries(len(good), {signals.NEURAL_FUNCTION: (every, owners),
                                                      signals.DCT_FUNCTION: (dct, np.arange(len(dct)))})
                verdicts[model.model_id] = [_compare(lst, hashes[model.model_id], queries, featureless)
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


def _compare(lst: _List, hashes: np.ndarray, queries: signals.Queries, featureless: Sequence[bool]
             ) -> list[ListVerdict]:
    """Each image's verdict against one bundle: for each signal, the nearest of its hashes over the image's
    views under that signal's hash function."""
    found = {name: _nearest(lst.bundle, name, queries) for name in lst.thresholds}
    header = lst.header
    out = []
    for row, (h, f) in enumerate(zip(hashes, featureless, strict=True)):
        sides = []
        for name, threshold in lst.thresholds.items():
            function = signals.CLASSES[name].function
            own_hash = None
            if function != signals.NEURAL_FUNCTION:
                own_hash = Hash(queries.views[function][0][row].tobytes()).hex
            nearest_id, distance = found[name][row]
            sides.append(Side(name, nearest_id, distance, threshold, own_hash, lst.agree[name]))
        out.append(ListVerdict(header.authority, header.key_id, header.list_name, header.sequence,
                               lst.stored.row.sha256, Hash(h.tobytes()).hex, tuple(sides), f))
    return out


def _nearest(bundle: Bundle | BigList, name: str, queries: signals.Queries) -> list[tuple[str | None, int | None]]:
    """Each image's nearest banned id by one signal and the distance to it, (None, None) when the list is
    empty; a version 4 list's come from its index of that signal."""
    if isinstance(bundle, Bundle):
        signal = next(s for s in bundle.signals if s.name == name)
        near = signal.nearest(queries)
        if near is None:
            return [(None, None)] * queries.count
        return [(bundle.ids[int(i)], int(d)) for i, d in zip(near.index, near.distance, strict=True)]
    if bundle.rows - len(bundle.removed) == 0 or queries.count == 0:
        return [(None, None)] * queries.count
    every, owners = queries.views[signals.CLASSES[name].function]
    near = best_by_owner(bundle.nearest(MANIFEST_NAMES[name], every), owners, queries.count)
    return [(bundle.id_of(int(i)), int(d)) if i >= 0 else (None, None)
            for i, d in zip(near.index, near.distance, strict=True)]


@dataclass(frozen=True)
class _Searchable:
    """What the Screener needs of a stored bundle, whichever its format."""

    bundle: Bundle | BigList
    spec: ModelSpec
    weights: Any
    thresholds: dict[str, int]  # each signal's own threshold, by name, in vetohash.signals.ORDER
    agree: dict[str, int]  # each signal's agreement threshold (its threshold in lists before version 6)
    bits: dict[str, int]  # each signal's hash width, the largest threshold

    def hasher(self) -> Hasher:
        return self.bundle.hasher() if isinstance(self.bundle, Bundle) else Hasher.from_encoded(self.spec, self.weights)


def _searchable(stored: StoredBundle) -> _Searchable:
    if stored.manifest is not None and stored.folder is not None:
        big = BigList(stored.manifest, stored.folder)
        thresholds = stored.manifest.signals.thresholds
        bits = {name: DCT_BITS if name == signals.DCT else stored.manifest.spec.bits for name in thresholds}
        return _Searchable(big, stored.manifest.spec, big.weights(), thresholds, dict(thresholds), bits)
    bundle = stored.bundle
    if bundle is None:
        raise ValueError("Screener takes active bundles only")
    return _Searchable(bundle, bundle.spec, bundle.weights, bundle.thresholds, bundle.agreement,
                       {s.name: s.bits for s in bundle.signals})


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
            if v.match and result.sha256 is not None:
                self.rows.append(MatchRow(now, result.sha256, v.hash, v.bundle_sha256, v.authority, v.key_id,
                                          v.list_name, v.sequence, v.by,
                                          tuple(MatchSide(s.signal, s.nearest_id, s.distance, s.threshold, s.hash, s.agree)
                                                for s in v.sides)))
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
