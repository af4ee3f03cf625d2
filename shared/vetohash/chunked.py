"""Bundle format version 4: a signed manifest over content-addressed chunks, for lists of millions of images.

A version 1-3 bundle is one signed blob that a reader holds whole in memory. A version 4 bundle is a folder:
`manifest.vhb`, a small envelope exactly as in versions 1-3 (verified before its payload is parsed) whose
payload names the list, its thresholds and model spec and, for each chunk, its kind, count, size and SHA-256;
and one file per chunk named by that SHA-256. A reader verifies the manifest, then reads, hashes and parses
the chunks one at a time, so what it holds at once is one chunk (at most MAX_CHUNK_BYTES) whatever the list
size. A chunk whose bytes do not hash to the signed digest is refused before it is decoded.

A manifest with a `base` is a delta: images added and ids removed relative to sequence `base` of the same
list. The normative description is docs/bundle-format.md, section 16.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec, dcthash
from .bundle import (
    BOUNDED_CALIBRATION_KEYS,
    CALIBRATION_KEYS,
    CHUNKED_VERSION,
    FORMAT_NAME,
    Calibration,
    _check_int,
    _ID,
    _check_keys,
    _unpack_canonical,
    check_in_force,
    check_header,
    open_envelope,
    pae,
    parse_calibration,
    parse_spec,
)
from .errors import (
    BundleContentError,
    BundleError,
    BundleFormatError,
    BundleTooLargeError,
    VetohashError,
)
from .files import folder_aside, make_folder, place_folder, read_bounded
from .keys import PublicKey, public_key_of
from .signals import CROPS, DCT, NETWORK, ORDER
from .specs import ModelSpec

MANIFEST_NAME = "manifest.vhb"
CHUNK_SUFFIX = ".chunk"
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_CHUNKS = 4096
MAX_CHUNK_BYTES = 64 * 1024 * 1024
MAX_CHUNK_IMAGES = 65_536
MAX_IMAGES = 100_000_000
MAX_CROPS_PER_IMAGE = 255  # one byte each in crop_counts
CHUNK_IMAGES = 32_768  # what the writer puts in one images chunk: about 14 MB with every signal

MODEL, IMAGES, REMOVED = "model", "images", "removed"
NEURAL = "neural"  # the network signal's name in a manifest and its chunks (vetohash.signals.NETWORK elsewhere)
MANIFEST_NAMES = {NETWORK: NEURAL, CROPS: CROPS, DCT: DCT}  # vetohash.signals name -> manifest name
MANIFEST_KEYS = frozenset({"version", "spec", "authority", "key_id", "list_name", "sequence", "created", "expires",
                           "calibration", "signals", "base", "images", "chunks"})
CHUNK_REF_KEYS = frozenset({"kind", "count", "size", "sha256"})
SIGNAL_KEYS = {NEURAL: frozenset({"threshold"}), DCT: frozenset({"threshold", "algorithm"}),
               CROPS: frozenset({"threshold"})}
_CHUNK_NAME = re.compile(r"[0-9a-f]{64}\.chunk")


@dataclass(frozen=True)
class ChunkRef:
    """One chunk as the manifest signs it: its kind (MODEL, IMAGES or REMOVED), how many items it holds
    (1 for the model, images or ids otherwise), its size in bytes and the SHA-256 of those bytes."""

    kind: str
    count: int
    size: int
    sha256: bytes

    @property
    def name(self) -> str:
        """The chunk's file name: the lower-case hex SHA-256 and `.chunk`."""
        return self.sha256.hex() + CHUNK_SUFFIX


@dataclass(frozen=True)
class Signals:
    """The thresholds of the list's signals (a match when a distance is strictly less); dct and crops are None
    when the list does not carry them."""

    neural: int
    dct: int | None = None
    crops: int | None = None

    @property
    def thresholds(self) -> dict[str, int]:
        """The threshold of each signal the list carries, by its vetohash.signals name, in signals.ORDER."""
        found = {NETWORK: self.neural, CROPS: self.crops, DCT: self.dct}
        return {name: found[name] for name in ORDER if found[name] is not None}  # type: ignore[misc]


@dataclass(frozen=True)
class ListHeader:
    """What the writer of a list says of it: everything its manifest says besides the key, the image count
    and the chunks."""

    spec: ModelSpec
    authority: str
    list_name: str
    sequence: int
    created: int
    expires: int
    signals: Signals
    calibration: Calibration | None = None
    base: int | None = None  # for a delta, the sequence it applies to; None for a whole list


@dataclass(frozen=True, kw_only=True)
class Manifest(ListHeader):
    """The signed, parsed manifest of a version 4 bundle (its header, the signing key, the image count, the
    chunks): plain data, no network is built from it."""

    key_id: str
    images: int  # images in the list (after applying, for a delta)
    chunks: tuple[ChunkRef, ...]

    @property
    def is_delta(self) -> bool:
        """Whether this is a delta against an earlier sequence."""
        return self.base is not None

    def count(self, kind: str) -> int:
        """Items in the chunks of one kind (images added, ids removed)."""
        return sum(chunk.count for chunk in self.chunks if chunk.kind == kind)


@dataclass(frozen=True, eq=False)
class ImageChunk:
    """The images of one chunk: ids, network hashes, DCT hashes (None without the signal), and the crop hashes
    with, for each, the index within this chunk of the image it was cut from (None without the signal)."""

    ids: tuple[str, ...]
    neural: np.ndarray
    dct: np.ndarray | None = None
    crops: np.ndarray | None = None
    crop_owners: np.ndarray | None = None


@dataclass(frozen=True)
class Chunked:
    """A verified manifest and the folder its chunks are read from; `manifest_bytes` is the signed envelope."""

    manifest: Manifest
    folder: Path
    manifest_bytes: bytes

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the manifest envelope: names this bundle."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    def chunk_bytes(self, ref: ChunkRef) -> bytes:
        """The chunk's bytes, read with its signed size as the bound and refused unless they hash to its
        signed SHA-256."""
        data = read_bounded(self.folder / ref.name, ref.size, "chunk", BundleError, too_large=BundleContentError)
        if len(data) != ref.size:
            raise BundleContentError(f"chunk {ref.name} is {'longer' if len(data) > ref.size else 'shorter'} than "
                                     f"the {ref.size} bytes the manifest signs")
        if hashlib.sha256(data).digest() != ref.sha256:
            raise BundleContentError(f"chunk {ref.name} does not hash to the SHA-256 the manifest signs")
        return data

    def weights(self) -> dict[str, Any]:
        """The encoded weights of the model chunk (checked against the spec when a hasher is built)."""
        ref = next(chunk for chunk in self.manifest.chunks if chunk.kind == MODEL)
        data = self.chunk_bytes(ref)
        weights = _unpack_canonical(data, f"chunk {ref.name}", max_str=1024, max_items=len(data))
        if not isinstance(weights, dict):
            raise BundleFormatError(f"chunk {ref.name} (model) must be a map of weights")
        return weights

    def image_chunks(self) -> Iterator[ImageChunk]:
        """The images chunks in manifest order, each verified and parsed when it is reached."""
        for ref in self.manifest.chunks:
            if ref.kind == IMAGES:
                yield _parse_images(self.chunk_bytes(ref), ref, self.manifest.spec.hash_bytes,
                                    self.manifest.signals)

    def removed_ids(self) -> Iterator[tuple[str, ...]]:
        """The ids a delta removes, a chunk at a time."""
        for ref in self.manifest.chunks:
            if ref.kind == REMOVED:
                data = self.chunk_bytes(ref)
                fields = _unpack_canonical(data, f"chunk {ref.name}", max_str=64, max_items=len(data))
                if not isinstance(fields, dict):
                    raise BundleFormatError(f"chunk {ref.name} (removed) must be a map")
                _check_keys(f"chunk {ref.name}", fields, frozenset({"ids"}))
                yield _parse_ids(fields["ids"], ref)


def read_manifest(data: bytes, trusted: Mapping[str, PublicKey], *, now: float | None = None,
                  check_time: bool = True) -> Manifest:
    """Check, verify and parse the manifest envelope; raise only BundleError subclasses. The same order as
    vetohash.bundle.read_bundle: size, envelope, version, key, signature, then the payload, then (unless
    `check_time` is False, for an authority reading its own earlier bundle) its times against `now`."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleTooLargeError(f"manifest is {len(data)} bytes, more than the {MAX_MANIFEST_BYTES} allowed")
    version, key_id, payload = open_envelope(data, trusted, (CHUNKED_VERSION,))
    return _parse_manifest(payload, key_id, time.time() if now is None else now, check_time)


def open_chunked(path: Path, trusted: Mapping[str, PublicKey], *, now: float | None = None,
                 check_time: bool = True) -> Chunked:
    """The verified manifest of the version 4 bundle in folder `path` (or `path` is its manifest file)."""
    folder = path if path.is_dir() else path.parent
    data = read_bounded(folder / MANIFEST_NAME, MAX_MANIFEST_BYTES, "manifest", BundleError,
                        too_large=BundleTooLargeError)
    return Chunked(read_manifest(data, trusted, now=now, check_time=check_time), folder, data)


def is_chunked(path: Path) -> bool:
    """Whether `path` is a version 4 bundle's folder or its manifest file (by name; contents are verified
    when read)."""
    return (path / MANIFEST_NAME).is_file() if path.is_dir() else path.name == MANIFEST_NAME


def _parse_manifest(payload: bytes, key_id: str, now: float, check_time: bool = True) -> Manifest:
    fields = _unpack_canonical(payload, "manifest payload", max_str=1024, max_items=len(payload))
    if not isinstance(fields, dict):
        raise BundleFormatError("manifest payload must be a map")
    _check_keys("manifest payload", fields, MANIFEST_KEYS)
    if fields["version"] != CHUNKED_VERSION or type(fields["version"]) is not int:
        raise BundleFormatError(f"manifest payload version {fields['version']!r} differs from the envelope's")
    if fields["key_id"] != key_id:
        raise BundleFormatError(f"manifest names key {fields['key_id']!r} but is signed by {key_id}")
    authority, list_name = fields["authority"], fields["list_name"]
    check_header("manifest", authority, list_name, fields["sequence"], fields["created"], fields["expires"])
    base = fields["base"]
    if base is not None:
        _check_int("base", base, 0, fields["sequence"] - 1)
    _check_int("images", fields["images"], 0, MAX_IMAGES)
    calibration = fields["calibration"]
    # the map of versions 1-3, or of version 5 with the bound (the keys decide which)
    calibration = parse_calibration("manifest", calibration, BOUNDED_CALIBRATION_KEYS
                                    if isinstance(calibration, dict) and "bound_fpr" in calibration
                                    else CALIBRATION_KEYS)
    spec = parse_spec("manifest", fields["spec"])
    signals = _parse_signals(fields["signals"], spec.bits)
    chunks = _parse_chunk_refs(fields["chunks"], base is not None)
    manifest = Manifest(spec=spec, authority=authority, key_id=key_id, list_name=list_name,
                        sequence=fields["sequence"], created=fields["created"], expires=fields["expires"],
                        calibration=calibration, signals=signals, base=base, images=fields["images"],
                        chunks=chunks)
    if base is None and manifest.count(IMAGES) != manifest.images:
        raise BundleContentError(f"manifest counts {manifest.images} images but its chunks hold "
                                 f"{manifest.count(IMAGES)}")
    if check_time:
        check_in_force(manifest.created, manifest.expires, now)
    return manifest


def _parse_signals(signals: Any, bits: int) -> Signals:
    """The `signals` map: the neural signal always, the DCT and crops signals when the list carries them."""
    if not isinstance(signals, dict) or NEURAL not in signals or not set(signals) <= set(SIGNAL_KEYS):
        raise BundleFormatError(f"manifest signals must be a map of {NEURAL!r} and optionally {DCT!r} and "
                                f"{CROPS!r}, got {sorted(map(str, signals)) if isinstance(signals, dict) else signals!r}")
    found: dict[str, int] = {}
    for name, entry in signals.items():
        if not isinstance(entry, dict):
            raise BundleFormatError(f"manifest signal {name!r} must be a map")
        _check_keys(f"manifest signal {name!r}", entry, SIGNAL_KEYS[name])
        if name == DCT and entry["algorithm"] != dcthash.ALGORITHM:
            raise BundleFormatError(f"unknown DCT hash algorithm {entry['algorithm']!r}; this vetohash computes "
                                    f"{dcthash.ALGORITHM!r}")
        _check_int(f"{name} threshold", entry["threshold"], 0, dcthash.BITS if name == DCT else bits)
        found[name] = entry["threshold"]
    return Signals(found[NEURAL], found.get(DCT), found.get(CROPS))


def _parse_chunk_refs(chunks: Any, delta: bool) -> tuple[ChunkRef, ...]:
    """The `chunks` array: one model chunk first, then images chunks, then (a delta only) removed chunks."""
    if not isinstance(chunks, list) or not 1 <= len(chunks) <= MAX_CHUNKS:
        raise BundleFormatError(f"manifest chunks must be an array of 1 to {MAX_CHUNKS} entries")
    refs = []
    for position, entry in enumerate(chunks):
        if not isinstance(entry, dict):
            raise BundleFormatError(f"manifest chunk {position} must be a map")
        _check_keys(f"manifest chunk {position}", entry, CHUNK_REF_KEYS)
        kind, sha = entry["kind"], entry["sha256"]
        if kind not in (MODEL, IMAGES, REMOVED):
            raise BundleFormatError(f"manifest chunk {position} has unknown kind {kind!r}")
        if not isinstance(sha, bytes) or len(sha) != 32:
            raise BundleFormatError(f"manifest chunk {position} sha256 must be 32 bytes")
        _check_int(f"chunk {position} size", entry["size"], 1, MAX_CHUNK_BYTES)
        _check_int(f"chunk {position} count", entry["count"], 1, 1 if kind == MODEL else MAX_CHUNK_IMAGES)
        refs.append(ChunkRef(kind, entry["count"], entry["size"], sha))
    kinds = [ref.kind for ref in refs]
    order = [MODEL] + [IMAGES] * kinds.count(IMAGES) + [REMOVED] * kinds.count(REMOVED)
    if kinds != order or (REMOVED in kinds and not delta):
        raise BundleFormatError("manifest chunks must be one model chunk, then images chunks, then (in a delta "
                                "only) removed chunks")
    if len({ref.sha256 for ref in refs}) != len(refs):
        raise BundleFormatError("manifest names the same chunk twice")
    return tuple(refs)


def _parse_ids(ids: Any, ref: ChunkRef) -> tuple[str, ...]:
    if not isinstance(ids, list) or len(ids) != ref.count:
        raise BundleContentError(f"chunk {ref.name} must hold {ref.count} ids, as the manifest signs")
    if not all(isinstance(i, str) and _ID.fullmatch(i) for i in ids):
        raise BundleFormatError(f"chunk {ref.name}: ids must be strings of 1 to 64 visible ASCII characters")
    if len(set(ids)) != len(ids):
        raise BundleContentError(f"chunk {ref.name}: ids are not unique")
    return tuple(ids)


def _parse_images(data: bytes, ref: ChunkRef, width: int, signals: Signals) -> ImageChunk:
    """An images chunk's verified bytes -> ImageChunk; every blob's length is checked before it is used."""
    fields = _unpack_canonical(data, f"chunk {ref.name}", max_str=64, max_items=len(data))
    if not isinstance(fields, dict):
        raise BundleFormatError(f"chunk {ref.name} (images) must be a map")
    keys = {"ids", NEURAL} | ({DCT} if signals.dct is not None else set()) \
        | ({CROPS, "crop_counts"} if signals.crops is not None else set())
    _check_keys(f"chunk {ref.name}", fields, frozenset(keys))
    ids = _parse_ids(fields["ids"], ref)
    count = len(ids)
    neural = _blob(fields[NEURAL], count * width, f"chunk {ref.name} neural hashes")
    out = ImageChunk(ids, neural.reshape(count, width))
    if signals.dct is not None:
        dct = _blob(fields[DCT], count * dcthash.HASH_BYTES, f"chunk {ref.name} DCT hashes")
        out = ImageChunk(ids, out.neural, dct.reshape(count, dcthash.HASH_BYTES))
    if signals.crops is not None:
        counts = _blob(fields["crop_counts"], count, f"chunk {ref.name} crop_counts")
        total = int(counts.sum(dtype=np.int64))
        crops = _blob(fields[CROPS], total * width, f"chunk {ref.name} crop hashes")
        owners = np.repeat(np.arange(count, dtype=np.int64), counts)
        out = ImageChunk(ids, out.neural, out.dct, crops.reshape(total, width), owners)
    return out


def _blob(value: Any, size: int, what: str) -> np.ndarray:
    if not isinstance(value, bytes):
        raise BundleFormatError(f"{what} must be binary")
    if len(value) != size:
        raise BundleContentError(f"{what} hold {len(value)} bytes; {size} expected")
    return np.frombuffer(value, dtype=np.uint8)


# writing


def image_chunk_bytes(chunk: ImageChunk, signals: Signals) -> bytes:
    """The canonical bytes of an images chunk; its signals must be exactly the list's."""
    if (chunk.dct is None) != (signals.dct is None) or (chunk.crops is None) != (signals.crops is None):
        raise ValueError("an images chunk must carry exactly the list's signals")
    fields: dict[str, Any] = {"ids": list(chunk.ids), NEURAL: np.ascontiguousarray(chunk.neural).tobytes()}
    if chunk.dct is not None:
        fields[DCT] = np.ascontiguousarray(chunk.dct).tobytes()
    if chunk.crops is not None and chunk.crop_owners is not None:
        counts = np.bincount(chunk.crop_owners, minlength=len(chunk.ids))
        if len(counts) != len(chunk.ids) or counts.max(initial=0) > MAX_CROPS_PER_IMAGE \
                or np.any(np.diff(chunk.crop_owners) < 0):
            raise ValueError(f"crop owners must be increasing chunk indices, at most {MAX_CROPS_PER_IMAGE} each")
        fields[CROPS] = np.ascontiguousarray(chunk.crops).tobytes()
        fields["crop_counts"] = counts.astype(np.uint8).tobytes()
    return codec.pack(fields)


def write_chunked(folder: Path, header: ListHeader, weights: Mapping[str, Any], images: Iterable[ImageChunk],
                  key: Ed25519PrivateKey, error: type[VetohashError], *, removed: Iterable[Sequence[str]] = (),
                  total_images: int | None = None) -> Chunked:
    """Write a version 4 bundle into the new folder `folder`, whole or not at all (vetohash.files.folder_aside);
    a folder that exists, or one that cannot be written, raises `error`.

    `images` yields chunks of at most MAX_CHUNK_IMAGES images; a delta (header.base set) may also name
    `removed` ids, and gives `total_images`, the list's size once it is applied.
    """
    if (header.base is None) != (total_images is None):
        raise ValueError("a delta, and only a delta, gives total_images")
    if os.path.lexists(folder):  # refused now rather than once the whole list is written
        raise error(f"{folder} already exists; refusing to overwrite it")
    make_folder(folder.parent, error)
    with folder_aside(folder, error) as temp:
        refs = [_write_chunk(temp, MODEL, 1, codec.pack(weights))]
        added = 0
        for chunk in images:
            if not 0 < len(chunk.ids) <= MAX_CHUNK_IMAGES:
                raise ValueError(f"an images chunk holds 1 to {MAX_CHUNK_IMAGES} images")
            refs.append(_write_chunk(temp, IMAGES, len(chunk.ids), image_chunk_bytes(chunk, header.signals)))
            added += len(chunk.ids)
        for ids in removed:
            refs.append(_write_chunk(temp, REMOVED, len(ids), codec.pack({"ids": list(ids)})))
        key_id = public_key_of(key).key_id
        payload = codec.pack(_manifest_fields(header, key_id, refs, added if total_images is None else total_images))
        envelope = codec.pack({"format": FORMAT_NAME, "version": CHUNKED_VERSION, "key_id": key_id,
                               "payload": payload, "signature": key.sign(pae(payload, CHUNKED_VERSION))})
        if len(envelope) > MAX_MANIFEST_BYTES:
            raise BundleTooLargeError(f"manifest would be {len(envelope)} bytes, more than {MAX_MANIFEST_BYTES}")
        (temp / MANIFEST_NAME).write_bytes(envelope)
        place_folder(temp, folder, error)
    return Chunked(_parse_manifest(payload, key_id, header.created), folder, envelope)


def _write_chunk(folder: Path, kind: str, count: int, data: bytes) -> ChunkRef:
    if len(data) > MAX_CHUNK_BYTES:
        raise BundleTooLargeError(f"a {kind} chunk would be {len(data)} bytes, more than {MAX_CHUNK_BYTES}")
    ref = ChunkRef(kind, count, len(data), hashlib.sha256(data).digest())
    (folder / ref.name).write_bytes(data)
    return ref


def _manifest_fields(header: ListHeader, key_id: str, refs: Sequence[ChunkRef], images: int) -> dict[str, Any]:
    signals: dict[str, Any] = {NEURAL: {"threshold": header.signals.neural}}
    if header.signals.dct is not None:
        signals[DCT] = {"threshold": header.signals.dct, "algorithm": dcthash.ALGORITHM}
    if header.signals.crops is not None:
        signals[CROPS] = {"threshold": header.signals.crops}
    calibration = header.calibration
    return {
        "version": CHUNKED_VERSION, "spec": header.spec.to_dict(), "authority": header.authority, "key_id": key_id,
        "list_name": header.list_name, "sequence": header.sequence, "created": header.created,
        "expires": header.expires, "base": header.base, "images": images, "signals": signals,
        "calibration": None if calibration is None else calibration.to_dict(),
        "chunks": [{"kind": r.kind, "count": r.count, "size": r.size, "sha256": r.sha256} for r in refs],
    }


def chunk_images(ids: Sequence[str], neural: np.ndarray, dct: np.ndarray | None = None,
                 crops: np.ndarray | None = None, crop_owners: np.ndarray | None = None,
                 size: int = CHUNK_IMAGES) -> Iterator[ImageChunk]:
    """Whole-list arrays cut into ImageChunks of `size` images (crop owners: increasing list row indices)."""
    for start in range(0, len(ids), size):
        stop = min(start + size, len(ids))
        chunk_crops = chunk_owners = None
        if crops is not None and crop_owners is not None:
            first, last = np.searchsorted(crop_owners, [start, stop])
            chunk_crops, chunk_owners = crops[first:last], crop_owners[first:last] - start
        yield ImageChunk(tuple(ids[start:stop]), neural[start:stop], None if dct is None else dct[start:stop],
                         chunk_crops, chunk_owners)
