"""Bundle format v4 (a signed manifest over content-addressed chunks): round trips, deltas, and refusal of every
damaged, truncated, forged or inconsistent manifest and chunk, with BundleError subclasses only.

Hostile chunks are written by hand and named in a manifest signed with the test key, so they pass the digest
check and reach the chunk parser.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from vetohash import codec
from vetohash.bundle import Calibration, read_bundle
from vetohash.chunked import (
    IMAGES,
    MANIFEST_NAME,
    ImageChunk,
    ListHeader,
    Signals,
    chunk_images,
    is_chunked,
    open_chunked,
    read_manifest,
    write_chunked,
)
from vetohash.errors import (
    BundleContentError,
    BundleError,
    BundleExpiredError,
    BundleFormatError,
    BundleSignatureError,
    BundleTooLargeError,
    VetohashError,
)

from .test_bundle import (BOUNDED, CREATED, EXPIRES, KEY, NOW, OTHER_KEY, TINY, TRUSTED, assert_damage_refused,
                          fixed_weights)

SIGNALS = Signals(neural=5, dct=40, crops=4)
HEADER = ListHeader(spec=TINY, authority="Test Authority", list_name="big", sequence=10, created=CREATED,
                    expires=EXPIRES, signals=SIGNALS)


def arrays(count: int, seed: int = 0) -> dict[str, Any]:
    """A list of `count` images with every signal: two crop hashes for even rows, one for odd."""
    rng = np.random.default_rng(seed)
    owners = np.repeat(np.arange(count), [2 - i % 2 for i in range(count)])
    return dict(ids=[f"id{seed}-{i}" for i in range(count)],
                neural=rng.integers(0, 256, (count, TINY.hash_bytes), dtype=np.uint8),
                dct=rng.integers(0, 256, (count, 32), dtype=np.uint8),
                crops=rng.integers(0, 256, (len(owners), TINY.hash_bytes), dtype=np.uint8), crop_owners=owners)


def write(folder: Path, count: int = 5, size: int = 2, header: ListHeader = HEADER, **options: Any) -> Path:
    write_chunked(folder, header, fixed_weights(TINY), chunk_images(**arrays(count), size=size), KEY, VetohashError,
                  **options)
    return folder


@pytest.fixture()
def written(tmp_path: Path) -> Path:
    return write(tmp_path / "list.vhb4")


def seal_manifest(folder: Path, payload: bytes, key: Any = KEY) -> None:
    """A manifest envelope written from docs/bundle-format.md sections 3, 4 and 16, independently of the library."""
    signed = b"vetohash-bundle-v4\x00" + struct.pack("<Q", len(payload)) + payload
    key_id = hashlib.sha256(key.public_key().public_bytes_raw()).hexdigest()[:16]
    (folder / MANIFEST_NAME).write_bytes(codec.pack({"format": "vetohash-bundle", "version": 4, "key_id": key_id,
                                                     "payload": payload, "signature": key.sign(signed)}))


def manifest_fields(folder: Path) -> dict[str, Any]:
    return msgpack.unpackb(msgpack.unpackb((folder / MANIFEST_NAME).read_bytes())["payload"])


def put_chunk(folder: Path, data: bytes, position: int) -> None:
    """Replace chunk `position` with `data`, correctly named and signed: only the parser can refuse it."""
    fields = manifest_fields(folder)
    sha = hashlib.sha256(data).digest()
    (folder / (sha.hex() + ".chunk")).write_bytes(data)
    fields["chunks"][position].update(sha256=sha, size=len(data))
    seal_manifest(folder, codec.pack(fields))


def test_round_trip_gives_back_every_image_and_signal(written: Path) -> None:
    """Chunks come back in order with ids, hashes of each signal and crop owners as written; the manifest
    counts them."""
    read = open_chunked(written, TRUSTED, now=NOW)
    m = read.manifest
    assert (m.list_name, m.sequence, m.base, m.images, m.signals) == ("big", 10, None, 5, SIGNALS)
    assert [c.kind for c in m.chunks] == ["model", IMAGES, IMAGES, IMAGES] and m.count(IMAGES) == 5
    chunks = list(read.image_chunks())
    expected = arrays(5)
    assert sum((c.ids for c in chunks), ()) == tuple(expected["ids"])
    np.testing.assert_array_equal(np.concatenate([c.neural for c in chunks]), expected["neural"])
    np.testing.assert_array_equal(np.concatenate([c.dct for c in chunks]), expected["dct"])
    np.testing.assert_array_equal(np.concatenate([c.crops for c in chunks]), expected["crops"])
    owners = np.concatenate([c.crop_owners + 2 * i for i, c in enumerate(chunks)])
    np.testing.assert_array_equal(owners, expected["crop_owners"])
    assert read.weights() == fixed_weights(TINY)
    assert is_chunked(written) and is_chunked(written / MANIFEST_NAME) and not is_chunked(written.parent)


def test_chunks_are_named_by_their_sha256(written: Path) -> None:
    """Every file beside the manifest is a chunk named by the SHA-256 of its bytes, as the manifest signs."""
    read = open_chunked(written, TRUSTED, now=NOW)
    names = {p.name for p in written.iterdir()} - {MANIFEST_NAME}
    assert names == {c.name for c in read.manifest.chunks}
    for path in written.iterdir():
        if path.name != MANIFEST_NAME:
            assert path.name == hashlib.sha256(path.read_bytes()).hexdigest() + ".chunk"


def test_a_list_without_dct_or_crops_round_trips(tmp_path: Path) -> None:
    """The DCT and crops signals are optional: an images chunk then holds only ids and network hashes."""
    header = ListHeader(**{**HEADER.__dict__, "signals": Signals(neural=5)})
    a = arrays(3)
    write_chunked(tmp_path / "b", header, fixed_weights(TINY), chunk_images(a["ids"], a["neural"]), KEY,
                  VetohashError)
    chunk, = open_chunked(tmp_path / "b", TRUSTED, now=NOW).image_chunks()
    assert chunk.dct is None and chunk.crops is None and chunk.ids == tuple(a["ids"])


def test_every_manifest_byte_flip_and_truncation_is_refused(written: Path) -> None:
    """Any one flipped byte, proper prefix or appended byte of the manifest is refused."""
    assert_damage_refused((written / MANIFEST_NAME).read_bytes(), lambda data: read_manifest(data, TRUSTED, now=NOW))


def test_every_chunk_byte_flip_and_truncation_is_refused(written: Path) -> None:
    """Any one flipped byte, proper prefix or appended byte of a chunk is refused before it is decoded."""
    read = open_chunked(written, TRUSTED, now=NOW)
    for ref in read.manifest.chunks:
        path = written / ref.name
        data = path.read_bytes()
        damaged = [data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:] for i in range(len(data))]
        for bad in damaged + [data[:n] for n in range(len(data))] + [data + b"\x00"]:
            path.write_bytes(bad)
            with pytest.raises(BundleContentError, match=ref.name):
                read.chunk_bytes(ref)
        path.write_bytes(data)


def test_a_missing_chunk_is_a_bundle_error(written: Path) -> None:
    read = open_chunked(written, TRUSTED, now=NOW)
    (written / read.manifest.chunks[1].name).unlink()
    with pytest.raises(BundleError, match="no such chunk"):
        list(read.image_chunks())


def test_every_signed_manifest_payload_byte_change_raises_only_bundle_errors(written: Path) -> None:
    """A trusted signer's damaged manifest payload (re-signed after each flip) parses or is a BundleError."""
    payload = bytearray(msgpack.unpackb((written / MANIFEST_NAME).read_bytes())["payload"])
    for i in range(len(payload)):
        payload[i] ^= 0xFF
        seal_manifest(written, bytes(payload))
        try:
            open_chunked(written, TRUSTED, now=NOW)
        except BundleError:
            pass
        payload[i] ^= 0xFF


def test_every_signed_chunk_byte_change_raises_only_bundle_errors(written: Path) -> None:
    """A trusted signer's damaged images chunk (named and signed after each flip) parses or is a BundleError."""
    read = open_chunked(written, TRUSTED, now=NOW)
    original = (written / read.manifest.chunks[1].name).read_bytes()
    for i in range(len(original)):
        put_chunk(written, original[:i] + bytes([original[i] ^ 0xFF]) + original[i + 1:], 1)
        try:
            list(open_chunked(written, TRUSTED, now=NOW).image_chunks())
        except BundleError:
            pass


@pytest.mark.parametrize(("chunk", "error", "message"), [
    ({"ids": ["a", "b"], "neural": b"\0" * 4, "dct": b"\0" * 64, "crops": b"\0" * 6, "crop_counts": b"\2\1"},
     None, None),
    ({"ids": ["a"], "neural": b"\0" * 2, "dct": b"\0" * 32, "crops": b"\0" * 2, "crop_counts": b"\1"},
     BundleContentError, "must hold 2 ids"),
    ({"ids": ["a", "a"], "neural": b"\0" * 4, "dct": b"\0" * 64, "crops": b"", "crop_counts": b"\0\0"},
     BundleContentError, "not unique"),
    ({"ids": ["a", "b"], "neural": b"\0" * 5, "dct": b"\0" * 64, "crops": b"", "crop_counts": b"\0\0"},
     BundleContentError, "neural hashes hold 5 bytes"),
    ({"ids": ["a", "b"], "neural": b"\0" * 4, "dct": b"\0" * 64, "crops": b"\0" * 4, "crop_counts": b"\2\1"},
     BundleContentError, "crop hashes hold 4 bytes"),
    ({"ids": ["a", "b"], "neural": b"\0" * 4, "dct": b"\0" * 64, "crops": b"", "crop_counts": b"\0"},
     BundleContentError, "crop_counts hold 1 bytes"),
    ({"ids": ["a", "b"], "neural": b"\0" * 4, "dct": b"\0" * 64}, BundleFormatError, "keys are wrong"),
    ({"ids": ["a", "b c"], "neural": b"\0" * 4, "dct": b"\0" * 64, "crops": b"", "crop_counts": b"\0\0"},
     BundleFormatError, "visible ASCII"),
    ({"ids": ["a", "b"], "neural": "text", "dct": b"\0" * 64, "crops": b"", "crop_counts": b"\0\0"},
     BundleFormatError, "must be binary"),
    ([1, 2], BundleFormatError, "must be a map"),
])
def test_signed_images_chunks_are_checked(written: Path, chunk: Any, error: type[BundleError] | None,
                                          message: str | None) -> None:
    """An images chunk that hashes right is still refused unless its ids, counts and blob lengths agree with
    each other and the manifest (this one signs 2 images)."""
    put_chunk(written, codec.pack(chunk), 1)
    read = open_chunked(written, TRUSTED, now=NOW)
    if error is None:
        first = next(read.image_chunks())
        assert first.ids == ("a", "b") and list(first.crop_owners) == [0, 0, 1]
        return
    with pytest.raises(error, match=message):
        list(read.image_chunks())


def test_a_non_canonical_chunk_is_refused(written: Path) -> None:
    """A chunk's msgpack must be canonical, like the envelope's and the manifest's (sorted keys here)."""
    fields = {"ids": ["a", "b"], "neural": b"\0" * 4, "dct": b"\0" * 64, "crops": b"", "crop_counts": b"\0\0"}
    put_chunk(written, msgpack.packb(dict(sorted(fields.items(), reverse=True)), use_bin_type=True), 1)
    with pytest.raises(BundleFormatError, match="not canonically encoded"):
        list(open_chunked(written, TRUSTED, now=NOW).image_chunks())


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"images": 6}, BundleContentError, "counts 6 images but its chunks hold 5"),
    ({"base": 10}, BundleFormatError, "base must be an integer in"),
    ({"version": 3}, BundleFormatError, "differs from the envelope's"),
    ({"signals": {"dct": {"threshold": 3, "algorithm": "dct256-v1"}}}, BundleFormatError, "signals must be"),
    ({"signals": {"neural": {"threshold": 17}}}, BundleFormatError, "neural threshold must be an integer in"),
    ({"signals": {"neural": {"threshold": 5}, "dct": {"threshold": 5, "algorithm": "dct9"}}}, BundleFormatError,
     "unknown DCT hash algorithm"),
    ({"chunks": []}, BundleFormatError, "1 to 4096 entries"),
    ({"expires": CREATED}, BundleContentError, "no later than it was created"),
    ({"expires": NOW - 1}, BundleExpiredError, "expired on"),
    ({"created": NOW + 3600}, BundleExpiredError, "in the future"),
    ({"key_id": "0" * 16}, BundleFormatError, "but is signed by"),
    ({"extra": 1}, BundleFormatError, "unexpected \\['extra'\\]"),
    ({"calibration": BOUNDED.to_dict() | {"bound_fpr": None}}, BundleFormatError, "bound_fpr must be a float"),
    ({"calibration": {k: v for k, v in BOUNDED.to_dict().items() if k != "bound_fpr"}}, BundleFormatError,
     "keys are wrong"),
    ({"calibration": BOUNDED.to_dict() | {"bound_fpr": 0.001}}, BundleFormatError, "below measured_fpr"),
])
def test_invalid_signed_manifests_are_refused(written: Path, change: dict[str, Any], error: type[BundleError],
                                              message: str) -> None:
    fields = manifest_fields(written) | change
    seal_manifest(written, codec.pack(fields))
    with pytest.raises(error, match=message):
        open_chunked(written, TRUSTED, now=NOW)


def test_a_manifest_carries_a_calibration_with_its_bound(tmp_path: Path) -> None:
    """The calibration map of a version 5 bundle, bound included, is written in a manifest and read back the
    same; the three-key map of versions 1-3 still reads."""
    import dataclasses

    bounded = open_chunked(write(tmp_path / "a", header=dataclasses.replace(HEADER, calibration=BOUNDED)), TRUSTED,
                           now=NOW)
    assert bounded.manifest.calibration == BOUNDED
    assert manifest_fields(bounded.folder)["calibration"] == BOUNDED.to_dict()
    plain = Calibration(target_fpr=0.01, measured_fpr=0.004, innocent_images=540)
    read = open_chunked(write(tmp_path / "b", header=dataclasses.replace(HEADER, calibration=plain)), TRUSTED, now=NOW)
    assert read.manifest.calibration == plain and not plain.bounded


def test_chunk_order_and_kinds_are_exact(written: Path) -> None:
    """One model chunk first, then images chunks; removed chunks only in a delta; no chunk named twice;
    sizes and counts bounded."""
    fields = manifest_fields(written)
    chunks = fields["chunks"]
    for bad, message in [
        (chunks[1:] + chunks[:1], "one model chunk, then images"),
        (chunks + [dict(chunks[1], kind="removed", sha256=b"\1" * 32)], "one model chunk, then images"),
        (chunks + [chunks[1]], "same chunk twice"),
        ([dict(chunks[0], kind="weights")] + chunks[1:], "unknown kind"),
        ([dict(chunks[0], count=2)] + chunks[1:], "count must be an integer in \\[1, 1\\]"),
        ([dict(chunks[0], size=2**40)] + chunks[1:], "size must be an integer in"),
        ([dict(chunks[0], sha256=b"\0" * 31)] + chunks[1:], "sha256 must be 32 bytes"),
    ]:
        seal_manifest(written, codec.pack(fields | {"chunks": bad}))
        with pytest.raises(BundleFormatError, match=message):
            open_chunked(written, TRUSTED, now=NOW)


def test_trust_signature_and_version_gates(written: Path) -> None:
    """An untrusted or wrong signer is refused before the payload; a v4 manifest is not a v1-3 bundle, nor
    the other way round."""
    data = (written / MANIFEST_NAME).read_bytes()
    with pytest.raises(BundleSignatureError, match="untrusted key"):
        read_manifest(data, {}, now=NOW)
    seal_manifest(written, msgpack.unpackb(data)["payload"], OTHER_KEY)
    with pytest.raises(BundleSignatureError):
        open_chunked(written, TRUSTED, now=NOW)
    with pytest.raises(BundleFormatError, match="version 4 .chunked. bundle: give its folder"):
        read_bundle(data, TRUSTED, now=NOW)
    from .test_bundle import make_bundle, sign_bundle
    with pytest.raises(BundleFormatError, match="unsupported bundle format version 1; this vetohash reads versions 4"):
        read_manifest(sign_bundle(make_bundle(TINY), KEY), TRUSTED, now=NOW)
    with pytest.raises(BundleTooLargeError):
        read_manifest(b"\0" * (1024 * 1024 + 1), TRUSTED, now=NOW)


def test_a_delta_names_its_base_and_removed_ids(tmp_path: Path) -> None:
    """A delta carries its base sequence, the list's size once applied, added images and removed ids."""
    header = ListHeader(**{**HEADER.__dict__, "sequence": 11, "base": 10})
    write(tmp_path / "d", count=3, header=header, removed=[("id0-1", "id0-4")], total_images=6)
    read = open_chunked(tmp_path / "d", TRUSTED, now=NOW)
    assert read.manifest.is_delta and read.manifest.base == 10 and read.manifest.images == 6
    assert list(read.removed_ids()) == [("id0-1", "id0-4")]
    with pytest.raises(ValueError, match="total_images"):
        write(tmp_path / "e", header=header)


def test_writing_never_leaves_a_partial_folder(tmp_path: Path) -> None:
    """A failure while writing removes the temporary folder; an existing folder is never overwritten."""
    bad = ImageChunk(("a",), np.zeros((1, 2), np.uint8))  # no DCT or crop hashes for a list that has them
    with pytest.raises(ValueError, match="exactly the list's signals"):
        write_chunked(tmp_path / "x", HEADER, fixed_weights(TINY), [bad], KEY, VetohashError)
    assert list(tmp_path.iterdir()) == []
    write(tmp_path / "y")
    with pytest.raises(VetohashError, match="already exists"):
        write(tmp_path / "y")
