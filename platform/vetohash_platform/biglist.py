"""Lists from version 4 (chunked) bundles: built chunk by chunk into indexed files beside the database.

A version 1-3 bundle is stored whole in the database and searched by brute force. A version 4 list may hold
millions of images, so the database keeps only its signed manifest (verified again whenever the list is
used) and the chain of sequences applied, while the images live in a folder beside the database:

    <db>.lists/<key_id>-<list_name>/<sequence>/     one generation: the list as of that sequence
        <sha256>.chunk                              the model chunk, verified against the manifest on use
        removed.npy                                 rows removed by deltas (sorted), never returned
        seg-<sequence>/                             the images one bundle added, rows following the last segment's
            ids.npy  order.npy                      ids (fixed width) and their sorted order, for look-ups
            neural.<n>.faiss  dct.<n>.faiss  crops.<n>.faiss   index shards (vetohash_platform.index)

A whole-list bundle makes a generation with one segment; a delta makes one that hard-links its base's
segments and adds its own, so applying 10,000 images to a list of ten million writes 10,000 images. A
generation is built under a temporary name and renamed into place inside the database transaction that
records it, so the list in force is the old one or the new one, never a mix; older generations are deleted
afterwards.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vetohash.chunked import CROPS, DCT, MODEL, NEURAL, Chunked, ChunkRef, Manifest
from vetohash.dcthash import BITS as DCT_BITS
from vetohash.errors import BundleContentError, BundleError, WeightsError
from vetohash.hasher import Hasher
from vetohash.matching import Nearest

from . import index
from .store import Store

LISTS_SUFFIX = ".lists"
REMOVED_FILE = "removed.npy"
ID_WIDTH = 64  # bytes: the longest id the format allows (visible ASCII)


class DeltaBaseError(BundleError):
    """A delta whose base is not the sequence this platform holds for its list, or that does not fit it."""


def lists_root(store: Store) -> Path:
    """The folder beside the database that holds version 4 lists."""
    return store.path.with_name(store.path.name + LISTS_SUFFIX)


def list_folder(store: Store, key_id: str, list_name: str) -> Path:
    """The folder of one list's generations."""
    return lists_root(store) / f"{key_id}-{list_name}"


@dataclass(frozen=True)
class _Segment:
    folder: Path
    first_row: int
    ids: np.ndarray  # (n,) S64, memory-mapped
    order: np.ndarray  # argsort of ids
    crop_hashes: int = 0

    def rows_of(self, wanted: np.ndarray) -> np.ndarray:
        """The rows of the `wanted` ids (S64) that this segment holds, -1 for the others."""
        if len(self.ids) == 0:
            return np.full(len(wanted), -1, np.int64)
        sorted_ids = self.ids[self.order]
        at = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
        hit = sorted_ids[at] == wanted
        return np.where(hit, self.order[at] + self.first_row, -1)


class BigList:
    """One generation of a version 4 list, opened for searching: ids, removed rows and an index per signal."""

    def __init__(self, manifest: Manifest, folder: Path) -> None:
        self.manifest = manifest
        self.folder = folder
        self.segments = _segments(folder)
        self.removed = np.load(folder / REMOVED_FILE)
        self.rows = sum(len(segment.ids) for segment in self.segments)
        self._indexes: dict[str, index.SignalIndex] = {}

    def weights(self) -> dict[str, object]:
        """The model chunk's weights, verified again against the manifest's digest."""
        return Chunked(self.manifest, self.folder, b"").weights()

    def id_of(self, row: int) -> str:
        """The id of an image row."""
        for segment in reversed(self.segments):
            if row >= segment.first_row:
                return bytes(segment.ids[row - segment.first_row]).decode("ascii")
        raise IndexError(row)

    def nearest(self, signal: str, queries: np.ndarray) -> Nearest:
        """Each query's nearest live image row by one signal's hashes (NEURAL, DCT or CROPS) and its distance."""
        if signal not in self._indexes:
            bits = DCT_BITS if signal == DCT else self.manifest.spec.bits
            paths = [path for segment in self.segments for path in sorted(segment.folder.glob(f"{signal}.*.faiss"),
                                                                          key=_shard_number)]
            self._indexes[signal] = index.SignalIndex.load(paths, bits)
        return self._indexes[signal].nearest(queries, self.removed)


def build_generation(chunked: Chunked, base: BigList | None, folder: Path) -> int:
    """Build the generation of `chunked` (a whole list, or a delta applied to `base`) in the empty `folder`
    (vetohash.files.folder_aside); return the crop hashes the bundle added. Raises a BundleError if a chunk or
    the assembled list is refused."""
    manifest = chunked.manifest
    model = _model_ref(manifest)
    (folder / model.name).write_bytes(chunked.chunk_bytes(model))  # verified bytes, then parsed from the copy
    try:
        Hasher.from_encoded(manifest.spec, Chunked(manifest, folder, b"").weights())
    except WeightsError as error:
        raise BundleContentError(f"bundle weights: {error}") from None
    removed = np.zeros(0, np.int64)
    first_row = 0
    if base is not None:
        _check_delta_fits(manifest, base)
        for segment in base.segments:
            _link_tree(segment.folder, folder / segment.folder.name)
        removed = _removed_rows(chunked, base)
        first_row = base.rows
    segment = _build_segment(chunked, folder / f"seg-{manifest.sequence}", first_row)
    if base is not None:
        clash = np.concatenate([s.rows_of(segment.ids) for s in base.segments]) if base.segments else None
        if clash is not None and np.any((clash >= 0) & ~np.isin(clash, removed)):
            raise BundleContentError("the delta adds an id its base already holds")
    np.save(folder / REMOVED_FILE, removed)
    live = first_row + len(segment.ids) - len(removed)
    if live != manifest.images:
        raise BundleContentError(f"the list would hold {live} images, but the manifest signs {manifest.images}")
    return segment.crop_hashes


def generation_folder(store: Store, key_id: str, list_name: str, sequence: int) -> Path:
    """Where the generation of one sequence lives once it is in force."""
    return list_folder(store, key_id, list_name) / str(sequence)


def prune(store: Store, key_id: str, list_name: str, keep: int | None) -> None:
    """Delete every generation and leftover temporary folder of a list but the one of sequence `keep`."""
    parent = list_folder(store, key_id, list_name)
    if not parent.is_dir():
        return
    for child in parent.iterdir():
        if child.name != str(keep):
            shutil.rmtree(child, ignore_errors=True)


def _check_delta_fits(manifest: Manifest, base: BigList) -> None:
    if manifest.spec != base.manifest.spec or _model_ref(manifest).sha256 != _model_ref(base.manifest).sha256:
        raise DeltaBaseError("the delta's model differs from its base's: its hashes could not be compared with "
                             "the base's; the authority must publish a whole list")
    old, new = base.manifest.signals, manifest.signals
    if (old.dct is None) != (new.dct is None) or (old.crops is None) != (new.crops is None):
        raise DeltaBaseError("the delta carries other signals than its base; the authority must publish a whole "
                             "list")


def _model_ref(manifest: Manifest) -> ChunkRef:
    return next(chunk for chunk in manifest.chunks if chunk.kind == MODEL)


def _removed_rows(chunked: Chunked, base: BigList) -> np.ndarray:
    """Rows of the ids the delta removes, added to the base's removed rows; each must be live in the base."""
    found = [base.removed]
    for ids in chunked.removed_ids():
        wanted = np.array(ids, dtype=f"S{ID_WIDTH}")
        rows = np.max([segment.rows_of(wanted) for segment in base.segments], axis=0) if base.segments \
            else np.full(len(wanted), -1)
        gone = (rows < 0) | np.isin(rows, base.removed)
        if np.any(gone):
            raise BundleContentError(f"the delta removes id {ids[int(np.argmax(gone))]!r}, which its base does "
                                     "not hold")
        found.append(rows.astype(np.int64))
    rows = np.concatenate(found)
    if len(np.unique(rows)) != len(rows):
        raise BundleContentError("the delta removes an id twice")
    return np.sort(rows)


def _build_segment(chunked: Chunked, folder: Path, first_row: int) -> _Segment:
    """Stream the images chunks into flat files (one chunk in memory at a time), then index each signal from
    those files a shard at a time."""
    folder.mkdir()
    signals = chunked.manifest.signals
    width = chunked.manifest.spec.hash_bytes
    files = {name: (folder / f"{name}.raw").open("wb") for name in (NEURAL, DCT, CROPS, "rows", "ids")}
    count = 0
    try:
        for chunk in chunked.image_chunks():
            files["ids"].write(np.array(chunk.ids, dtype=f"S{ID_WIDTH}").tobytes())
            files[NEURAL].write(chunk.neural.tobytes())
            if chunk.dct is not None:
                files[DCT].write(chunk.dct.tobytes())
            if chunk.crops is not None and chunk.crop_owners is not None:
                files[CROPS].write(chunk.crops.tobytes())
                files["rows"].write((chunk.crop_owners + first_row + count).astype(np.int64).tobytes())
            count += len(chunk.ids)
    finally:
        for file in files.values():
            file.close()
    _save_ids(folder)
    _index_signal(folder, NEURAL, folder / f"{NEURAL}.raw", width, None, first_row)
    if signals.dct is not None:
        _index_signal(folder, DCT, folder / f"{DCT}.raw", DCT_BITS // 8, None, first_row)
    if signals.crops is not None:
        _index_signal(folder, CROPS, folder / f"{CROPS}.raw", width, folder / "rows.raw", first_row)
    crop_hashes = (folder / f"{CROPS}.raw").stat().st_size // width
    for name in (NEURAL, DCT, CROPS, "rows", "ids"):
        (folder / f"{name}.raw").unlink()
    return _Segment(folder, first_row, np.load(folder / "ids.npy", mmap_mode="r"),
                    np.load(folder / "order.npy", mmap_mode="r"), crop_hashes)


def _save_ids(folder: Path, block: int = 1 << 20) -> None:
    """ids.npy and their sorted order, order.npy; refuses ids that are not unique across the chunks. Compared a
    block at a time, so only the ids and their order are held whole."""
    ids = np.fromfile(folder / "ids.raw", dtype=f"S{ID_WIDTH}")
    order = np.argsort(ids, kind="stable")
    for start in range(0, max(len(ids) - 1, 0), block):
        run = ids[order[start:start + block + 1]]
        if np.any(run[1:] == run[:-1]):
            raise BundleContentError("the list's ids are not unique across its chunks")
    np.save(folder / "ids.npy", ids)
    np.save(folder / "order.npy", order)


def _index_signal(folder: Path, signal: str, raw: Path, width: int, rows_file: Path | None, first_row: int) -> None:
    """Index one signal's flat file a shard at a time, each shard read whole (not memory-mapped, so that pages
    already indexed leave memory); faiss ids are the file's `rows_file` (int64 rows) or consecutive rows."""
    count = raw.stat().st_size // width
    if count == 0:
        return
    trained = None
    if count > index.EXACT_MAX:
        trained = index.train(_read_rows(raw, index.training_rows(count), width), count)
    for number, start in enumerate(range(0, count, index.SHARD_ROWS)):
        n = min(index.SHARD_ROWS, count - start)
        hashes = np.fromfile(raw, dtype=np.uint8, count=n * width, offset=start * width).reshape(n, width)
        rows = (np.arange(first_row + start, first_row + start + n, dtype=np.int64) if rows_file is None
                else np.fromfile(rows_file, dtype=np.int64, count=n, offset=start * 8))
        index.build_shard(hashes, rows, folder / f"{signal}.{number}.faiss", trained=trained)
        del hashes, rows


def _read_rows(raw: Path, rows: np.ndarray, width: int) -> np.ndarray:
    """The `width`-byte records at `rows` of a flat file, read one by one. Not through a memory map: each
    page fault maps the pages around it too, so an evenly spaced sample of 210 million crop hashes (4.2 GB)
    made 4 GB of the file resident, the peak of a 10-million-image ingest."""
    out = np.empty((len(rows), width), np.uint8)
    with raw.open("rb") as file:
        for i, row in enumerate(rows.tolist()):
            out[i] = np.frombuffer(os.pread(file.fileno(), width, row * width), np.uint8)
    return out


def _segments(folder: Path) -> list[_Segment]:
    out: list[_Segment] = []
    first_row = 0
    for path in sorted(folder.glob("seg-*"), key=lambda p: int(p.name.removeprefix("seg-"))):
        ids = np.load(path / "ids.npy", mmap_mode="r")
        out.append(_Segment(path, first_row, ids, np.load(path / "order.npy", mmap_mode="r")))
        first_row += len(ids)
    return out


def _shard_number(path: Path) -> int:
    return int(path.name.split(".")[1])


def _link_tree(source: Path, target: Path) -> None:
    """Hard links of every file of `source` under `target`: a new generation shares its base's segments."""
    target.mkdir()
    for path in source.iterdir():
        os.link(path, target / path.name)

