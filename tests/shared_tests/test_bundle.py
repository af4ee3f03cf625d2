"""Bundle formats v1, v2 (with a DCT signal) and v3 (with crop hashes): exact bytes, and refusal of every damaged, forged, stale or inconsistent bundle.

Hostile payloads are built by hand and signed with the test key, so they pass the signature and reach the
payload checks; the envelope is built here from docs/bundle-format.md, independently of vetohash.bundle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vetohash import bundle as bundle_module
from vetohash import codec
from vetohash.bundle import (
    CLOCK_SKEW_S,
    Bundle,
    Calibration,
    CropSignal,
    DctSignal,
    read_bundle,
    read_bundle_file,
    sign_bundle,
)
from vetohash.errors import (
    BundleContentError,
    BundleError,
    BundleExpiredError,
    BundleFormatError,
    BundleSignatureError,
    BundleTooLargeError,
)
from vetohash.keys import public_key_of
from vetohash.preprocess import Preprocess
from vetohash.specs import PRESETS, ModelSpec
from vetohash.weights import encode_arrays, module_arrays

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = public_key_of(KEY)
TRUSTED = {PUB.key_id: PUB}
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
CREATED, EXPIRES = 1_700_000_000, 1_800_000_000  # 2023-11-14T22:13:20Z, 2027-01-15T08:00:00Z
NOW = 1_750_000_000
PAPER = PRESETS["paper-cnn"]
# The paper's architecture at its smallest (about 1 KB as a bundle), so every-byte tests stay fast.
TINY = ModelSpec(name="tiny", arch={"type": "paper-cnn", "filters": 2, "kernel": 2, "pool": "max", "dropout": 0.0},
                 preprocess=Preprocess(mode="L", size=8, resample="bilinear", mean=(0.5,), std=(0.5,)), bits=16)


def fixed_weights(spec: ModelSpec) -> dict[str, Any]:
    """Encoded weights from a formula, not torch's RNG, so pinned bytes do not move with torch's init."""
    arrays = module_arrays(spec.build())
    return encode_arrays({name: (((np.arange(a.size) % 17) - 8) / 16).astype("<f4").reshape(a.shape)
                          for name, a in arrays.items()})


def make_bundle(spec: ModelSpec = PAPER, **changes: Any) -> Bundle:
    ids = changes.pop("ids", ("alpha", "beta", "gamma"))
    fields: dict[str, Any] = dict(
        spec=spec, weights=fixed_weights(spec),
        hashes=(np.arange(len(ids) * spec.hash_bytes) * 37 % 256).astype(np.uint8).reshape(len(ids), spec.hash_bytes),
        ids=ids, threshold=spec.bits // 8, authority="Test Authority", key_id=PUB.key_id, list_name="test-list",
        sequence=7, created=CREATED, expires=EXPIRES,
        calibration=Calibration(target_fpr=1e-6, measured_fpr=0.0, innocent_images=50_000))
    fields.update(changes)
    return Bundle(**fields)


def payload_of(data: bytes) -> dict[str, Any]:
    """The plain payload map of signed bundle bytes (no checks)."""
    return msgpack.unpackb(msgpack.unpackb(data)["payload"])


def seal(payload: bytes, key: Ed25519PrivateKey = KEY, /, *, tag: object = None, **envelope: Any) -> bytes:
    """Envelope bytes built from the spec: sorted keys, signature over the pre-authentication encoding, whose
    domain tag names the envelope's version (or `tag`, to forge a cross-version signature)."""
    version = envelope.get("version", 1)
    signed = (f"vetohash-bundle-v{version if tag is None else tag}".encode() + b"\x00"
              + struct.pack("<Q", len(payload)) + payload)
    fields = {"format": "vetohash-bundle", "version": 1, "key_id": public_key_of(key).key_id,
              "payload": payload, "signature": key.sign(signed)}
    return codec.pack(fields | envelope)


def seal_fields(fields: dict[str, Any], key: Ed25519PrivateKey = KEY, version: int = 1) -> bytes:
    return seal(codec.pack(fields), key, version=version)


def with_raw(fields: dict[str, Any], name: str, raw: bytes) -> bytes:
    """Payload bytes with field `name`'s value replaced by hand-written msgpack `raw`."""
    marker = "\x7f" * 40
    packed = codec.pack(fields | {name: marker})
    return packed.replace(codec.pack(marker), raw)


@pytest.fixture(scope="module")
def paper_data() -> bytes:
    return sign_bundle(make_bundle(), KEY)


@pytest.fixture(scope="module")
def tiny_data() -> bytes:
    return sign_bundle(make_bundle(TINY), KEY)


def test_round_trip_is_bit_exact(paper_data: bytes) -> None:
    """Reading gives back every field, and signing what was read reproduces the same bytes."""
    original = make_bundle()
    read = read_bundle(paper_data, TRUSTED, now=NOW)
    for f in dataclasses.fields(Bundle):
        if f.name == "hashes":
            np.testing.assert_array_equal(read.hashes, original.hashes)
        elif f.init:
            assert getattr(read, f.name) == getattr(original, f.name), f.name
    assert sign_bundle(read, KEY) == paper_data
    batch = np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(read.hasher().hash_arrays(batch), original.hasher().hash_arrays(batch))


def test_pinned_bytes(paper_data: bytes) -> None:
    """The exact bytes of a fixed bundle. If this changes, the format changed: existing readers may refuse new
    bundles or read them differently. Bump FORMAT_VERSION and update docs/bundle-format.md, do not just
    update the digest. (Ed25519 signatures are deterministic, so the bytes are fully fixed.)"""
    assert hashlib.sha256(paper_data).hexdigest() == "6e62ece22591f01355529046c58c40117e37443b70002d0636369fad34bf7c53"


def test_envelope_built_from_the_spec_equals_the_library(paper_data: bytes) -> None:
    """An envelope written from docs/bundle-format.md alone is byte-identical to sign_bundle's."""
    assert seal(msgpack.unpackb(paper_data)["payload"]) == paper_data
    assert seal_fields(payload_of(paper_data)) == paper_data


def assert_damage_refused(data: bytes, read: Callable[[bytes], object]) -> None:
    """Every one-byte flip of the signed `data` makes `read` raise a BundleError subclass, never another
    exception nor a result; every proper prefix, and `data` with a byte appended, a BundleFormatError."""
    damaged = bytearray(data)
    for i in range(len(data)):
        damaged[i] ^= 0xFF
        with pytest.raises(BundleError):
            read(bytes(damaged))
        damaged[i] ^= 0xFF
    for n in range(len(data)):
        with pytest.raises(BundleFormatError):
            read(data[:n])
    with pytest.raises(BundleFormatError):
        read(data + b"\x00")


def test_every_byte_change_truncation_and_extension_is_refused(tiny_data: bytes) -> None:
    """Any one flipped byte, proper prefix or appended byte of a bundle is refused."""
    assert_damage_refused(tiny_data, lambda data: read_bundle(data, TRUSTED, now=NOW))


def test_every_signed_payload_byte_change_raises_only_bundle_errors(tiny_data: bytes) -> None:
    """A trusted signer's damaged payload (re-signed after each one-byte flip) is either a valid bundle or a
    BundleError: the payload parser never leaks another exception."""
    payload = bytearray(msgpack.unpackb(tiny_data)["payload"])
    for i in range(len(payload)):
        payload[i] ^= 0xFF
        try:
            read_bundle(seal(bytes(payload)), TRUSTED, now=NOW)
        except BundleError:
            pass
        payload[i] ^= 0xFF


def test_untrusted_key_is_refused() -> None:
    """A bundle signed by a key that is not trusted is refused and the message names the key."""
    other = public_key_of(OTHER_KEY)
    data = sign_bundle(make_bundle(TINY, key_id=other.key_id), OTHER_KEY)
    with pytest.raises(BundleSignatureError, match=f"untrusted key {other.key_id}"):
        read_bundle(data, TRUSTED, now=NOW)
    with pytest.raises(BundleSignatureError, match="untrusted"):
        read_bundle(data, {}, now=NOW)


def test_wrong_key_is_refused(tiny_data: bytes) -> None:
    """A signature that does not verify with the key trusted under the named key_id is refused."""
    with pytest.raises(BundleSignatureError, match="does not verify"):
        read_bundle(tiny_data, {PUB.key_id: public_key_of(OTHER_KEY)}, now=NOW)
    # A forger who names a trusted key but signs with their own.
    forged = seal(msgpack.unpackb(tiny_data)["payload"], OTHER_KEY, key_id=PUB.key_id)
    with pytest.raises(BundleSignatureError, match="does not verify"):
        read_bundle(forged, TRUSTED, now=NOW)


def test_signing_with_a_key_other_than_the_named_one_is_a_programming_error() -> None:
    """sign_bundle refuses a bundle whose key_id is not the signing key's."""
    with pytest.raises(ValueError, match="signed with key"):
        sign_bundle(make_bundle(TINY), OTHER_KEY)


def test_expired_bundle_is_refused_with_its_date(tiny_data: bytes) -> None:
    """At or after `expires` a bundle is refused; the message gives the expiry in ISO form."""
    read_bundle(tiny_data, TRUSTED, now=EXPIRES - 1)
    with pytest.raises(BundleExpiredError, match="2027-01-15T08:00:00Z"):
        read_bundle(tiny_data, TRUSTED, now=EXPIRES)


def test_bundle_created_in_the_future_is_refused(tiny_data: bytes) -> None:
    """A creation time more than CLOCK_SKEW_S ahead of the reader's clock is refused."""
    read_bundle(tiny_data, TRUSTED, now=CREATED - CLOCK_SKEW_S)
    with pytest.raises(BundleExpiredError, match="future"):
        read_bundle(tiny_data, TRUSTED, now=CREATED - CLOCK_SKEW_S - 1)


def test_oversized_bundle_is_refused_before_parsing(tiny_data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes over MAX_BUNDLE_BYTES are refused by size alone, and sign_bundle will not produce them."""
    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_BYTES", len(tiny_data) - 1)
    with pytest.raises(BundleTooLargeError):
        read_bundle(tiny_data, TRUSTED, now=NOW)
    with pytest.raises(BundleTooLargeError):
        sign_bundle(make_bundle(TINY), KEY)


def test_oversized_file_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """read_bundle_file checks the size with stat and never opens a file that is too large."""
    path = tmp_path / "huge.bundle"
    with path.open("wb") as file:
        file.truncate(bundle_module.MAX_BUNDLE_BYTES + 1)  # sparse: no disk used

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("opened an oversized file")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(BundleTooLargeError):
        read_bundle_file(path, TRUSTED, now=NOW)


def test_read_bundle_file_returns_bundle_and_bytes(tmp_path: Path, tiny_data: bytes) -> None:
    """read_bundle_file gives the verified bundle and the exact file bytes; a missing file is a BundleError."""
    path = tmp_path / "tiny.bundle"
    path.write_bytes(tiny_data)
    bundle, data = read_bundle_file(path, TRUSTED, now=NOW)
    assert data == tiny_data and bundle.ids == ("alpha", "beta", "gamma")
    with pytest.raises(BundleError, match="no such bundle"):
        read_bundle_file(tmp_path / "missing.bundle", TRUSTED, now=NOW)


@pytest.mark.parametrize(("envelope", "message"), [
    ({"version": 7}, "version 7"),
    ({"version": True}, "version True"),
    ({"format": "vetohash-model"}, "not a vetohash bundle"),
    ({"extra": 1}, "unexpected \\['extra'\\]"),
    ({"key_id": "ABCDEF0123456789"}, "key_id"),
    ({"signature": b"\x00" * 63}, "64 bytes"),
    ({"payload": "text"}, "binary"),
])
def test_malformed_envelope_is_refused(tiny_data: bytes, envelope: dict[str, Any], message: str) -> None:
    """The envelope's format, version (gated first, and named in the error), keys and types are exact."""
    with pytest.raises(BundleFormatError, match=message):
        read_bundle(seal(msgpack.unpackb(tiny_data)["payload"], **envelope), TRUSTED, now=NOW)


@pytest.mark.parametrize(("data", "attack"), [
    (b"", "empty input"),
    (b"\xc0", "nil instead of a map"),
    (b"\xdf\xff\xff\xff\xff", "map header declaring 2**32-1 entries"),
    (b"\x85\xa7payload\xc6\xff\xff\xff\xff", "bin header declaring 4 GiB"),
    (b"\x91" * 100_000 + b"\xc0", "arrays nested 100,000 deep"),
    # Below msgpack's own stack limit (1,024) but deep enough to make any recursive walk of the result raise
    # RecursionError ("internal error"); 437 of 10,000 random mutations hit this before depth was bounded.
    (b"\x91" * 600 + b"\xc0", "arrays nested 600 deep"),
    (b"\x91" * 1023 + b"\xc0", "arrays nested 1,023 deep"),
    (b"\x81\xa6format" + b"\x81\xa1a" * 900 + b"\xc0", "maps nested 900 deep inside the envelope"),
    (b"\x82\xa1a\x01\xc4\x01b\x02", "map mixing str and bin keys"),
    (b"\x81\x01\x02", "integer map key"),
    (b"\xd6\xff\x00\x00\x00\x00", "extension type (timestamp)"),
])
def test_hostile_envelope_bytes_are_format_errors(data: bytes, attack: str) -> None:
    """Hand-made msgpack that attacks the unpacker is refused as a BundleFormatError, not a crash."""
    with pytest.raises(BundleFormatError):
        read_bundle(data, TRUSTED, now=NOW)


def test_non_canonical_envelope_is_refused(tiny_data: bytes) -> None:
    """Unsorted or duplicated envelope keys are refused: there is one byte form of each bundle."""
    envelope = msgpack.unpackb(tiny_data)
    reordered = msgpack.packb(dict(reversed(list(envelope.items()))), use_bin_type=True)
    with pytest.raises(BundleFormatError, match="canonical"):
        read_bundle(reordered, TRUSTED, now=NOW)


def test_non_canonical_payload_is_refused(tiny_data: bytes) -> None:
    """A signed payload with a duplicated key (which parsers resolve differently) is refused."""
    fields = payload_of(tiny_data)
    packed = codec.pack(fields)
    authority = codec.pack("authority") + codec.pack(fields["authority"])
    duplicated = b"\x8e" + packed[1:].replace(authority, authority + codec.pack("authority") + codec.pack("X"))
    with pytest.raises(BundleFormatError, match="canonical"):
        read_bundle(seal(duplicated), TRUSTED, now=NOW)


@pytest.mark.parametrize(("name", "raw", "error"), [
    ("hashes", b"\xc6\xff\xff\xff\xff", BundleFormatError),  # bin declaring 4 GiB, no data
    ("ids", b"\xdd\xff\xff\xff\xff", BundleFormatError),  # array declaring 2**32-1 ids
    ("authority", b"\xdb\xff\xff\xff\xff", BundleFormatError),  # str declaring 4 GiB
    ("weights", b"\xdf\xff\xff\xff\xff", BundleFormatError),  # map declaring 2**32-1 entries
])
def test_huge_declared_lengths_in_signed_payload_are_refused(tiny_data: bytes, name: str, raw: bytes,
                                                             error: type[BundleError]) -> None:
    """Length headers far beyond the data are refused without allocating what they declare."""
    with pytest.raises(error):
        read_bundle(seal(with_raw(payload_of(tiny_data), name, raw)), TRUSTED, now=NOW)


def test_too_many_hashes_is_refused(tiny_data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """More ids than MAX_HASHES is BundleTooLargeError (the limit is lowered here to keep the test small)."""
    monkeypatch.setattr(bundle_module, "MAX_HASHES", 2)
    with pytest.raises(BundleTooLargeError, match="3 hashes"):
        read_bundle(tiny_data, TRUSTED, now=NOW)


def _tiny_fields(tiny_data: bytes, **changes: Any) -> dict[str, Any]:
    return payload_of(tiny_data) | changes


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"ids": ["a" * 65, "b", "c"]}, BundleFormatError, "ids"),
    ({"ids": ["", "b", "c"]}, BundleFormatError, "ids"),
    ({"ids": ["a b", "b", "c"]}, BundleFormatError, "ids"),
    ({"ids": ["caf\u00e9", "b", "c"]}, BundleFormatError, "ids"),
    ({"ids": [1, "b", "c"]}, BundleFormatError, "ids"),
    ({"ids": ["a", "a", "c"]}, BundleContentError, "unique"),
    ({"ids": "abc"}, BundleFormatError, "array"),
    ({"ids": ["a", "b"]}, BundleContentError, "hashes hold"),
    ({"hashes": b"\x00" * 5}, BundleContentError, "hashes hold"),
    ({"hashes": [0, 1]}, BundleFormatError, "binary"),
    ({"threshold": 17}, BundleFormatError, "threshold"),
    ({"threshold": -1}, BundleFormatError, "threshold"),
    ({"threshold": 1.0}, BundleFormatError, "threshold"),
    ({"threshold": True}, BundleFormatError, "threshold"),
    ({"list_name": "a/b"}, BundleFormatError, "list_name"),
    ({"list_name": "x" * 65}, BundleFormatError, "list_name"),
    ({"authority": ""}, BundleFormatError, "authority"),
    ({"authority": "a\nb"}, BundleFormatError, "authority"),
    ({"sequence": -1}, BundleFormatError, "sequence"),
    ({"sequence": 2**63}, BundleFormatError, "sequence"),
    ({"created": -1}, BundleFormatError, "created"),
    ({"expires": 2**64 - 1}, BundleFormatError, "expires"),
    ({"expires": CREATED}, BundleContentError, "expires"),
    ({"key_id": public_key_of(OTHER_KEY).key_id}, BundleFormatError, "names key"),
    ({"version": 2}, BundleFormatError, "version 2"),
    ({"calibration": {"target_fpr": 0, "measured_fpr": 0.0, "innocent_images": 1}}, BundleFormatError,
     "target_fpr"),
    ({"calibration": {"target_fpr": 0.1, "measured_fpr": float("nan"), "innocent_images": 1}},
     BundleFormatError, "measured_fpr"),
    ({"calibration": {"target_fpr": 0.1, "measured_fpr": 0.0}}, BundleFormatError, "innocent_images"),
    ({"calibration": [0.1, 0.0, 1]}, BundleFormatError, "calibration"),
    ({"spec": {"name": "tiny"}}, BundleContentError, "spec"),
    ({"spec": TINY.to_dict() | {"bits": 7}}, BundleContentError, "bits"),
    ({"spec": "paper-cnn"}, BundleContentError, "spec"),
])
def test_invalid_signed_fields_are_refused(tiny_data: bytes, changes: dict[str, Any], error: type[BundleError],
                                           message: str) -> None:
    """Every payload field is checked for type, range and consistency even though the signature is good."""
    with pytest.raises(error, match=message):
        read_bundle(seal_fields(_tiny_fields(tiny_data, **changes)), TRUSTED, now=NOW)


def test_payload_keys_are_exact(tiny_data: bytes) -> None:
    """A missing or unexpected payload key is refused, named in the message."""
    fields = payload_of(tiny_data)
    del fields["sequence"]
    with pytest.raises(BundleFormatError, match="missing \\['sequence'\\]"):
        read_bundle(seal_fields(fields), TRUSTED, now=NOW)
    with pytest.raises(BundleFormatError, match="unexpected \\['extra'\\]"):
        read_bundle(seal_fields(payload_of(tiny_data) | {"extra": 1}), TRUSTED, now=NOW)


# The tiny network's tensors in state-dict order: convolution weight and bias, dense weight and bias.
CONV_W, CONV_B, DENSE_W, DENSE_B = fixed_weights(TINY)


@pytest.mark.parametrize(("change", "message"), [
    (lambda w: w.pop(CONV_W), f"missing \\['{CONV_W}'\\]"),
    (lambda w: w.update(extra=w[CONV_B]), "unexpected \\['extra'\\]"),
    (lambda w: w[CONV_W].update(shape=[2, 1, 1, 4]), "shape"),
    (lambda w: w[DENSE_B].update(shape=[16, 1]), "shape"),
    (lambda w: w[DENSE_W].update(shape=[2, 16], data=w[DENSE_W]["data"]), "shape"),
    (lambda w: w[CONV_B].update(data=w[CONV_B]["data"][:-1]), "data bytes"),
    (lambda w: w[CONV_B].update(dtype="<f8"), "dtype"),
    (lambda w: w[CONV_B].update(data=np.array([np.nan, 0], "<f4").tobytes()), "NaN"),
    (lambda w: w[CONV_B].update(extra=1), "entry"),
    (lambda w: w.clear(), "missing"),
])
def test_weights_that_do_not_match_the_spec_are_content_errors(tiny_data: bytes, change: Any,
                                                                message: str) -> None:
    """Missing, unexpected, wrong-shaped, wrong-dtype, short or non-finite weights are BundleContentError."""
    fields = payload_of(tiny_data)
    change(fields["weights"])
    with pytest.raises(BundleContentError, match=message):
        read_bundle(seal_fields(fields), TRUSTED, now=NOW)


def test_bundle_without_calibration_round_trips() -> None:
    """calibration is optional (nil in the payload) and an empty hash list is allowed."""
    bundle = make_bundle(TINY, calibration=None, ids=())
    read = read_bundle(sign_bundle(bundle, KEY), TRUSTED, now=NOW)
    assert read.calibration is None and read.ids == () and read.hashes.shape == (0, 2)


def test_constructing_an_inconsistent_bundle_fails() -> None:
    """The authority gets the reader's errors when it builds a bundle that could not be read."""
    with pytest.raises(BundleContentError, match="hashes"):
        make_bundle(TINY, hashes=np.zeros((3, 3), np.uint8))
    with pytest.raises(BundleContentError, match="weights"):
        make_bundle(TINY, weights=fixed_weights(PAPER))


def test_docs_worked_examples_match_the_code(tiny_data: bytes) -> None:
    """The hex examples and key of docs/bundle-format.md are what the code produces."""
    doc = " ".join((Path(__file__).parents[2] / "docs" / "bundle-format.md").read_text().split())
    assert bundle_module.pae(b"\x93\x01\x02\x03").hex(" ") in doc
    assert bundle_module.pae(msgpack.unpackb(tiny_data)["payload"])[:27].hex(" ") in doc
    assert codec.pack(PAPER.to_dict()).hex(" ") in doc
    assert f"({len(codec.pack(PAPER.to_dict()))} bytes)" in doc
    assert PUB.to_text() in doc and PUB.key_id in doc and PUB.raw.hex() in doc


# --- version 2: the DCT signal ---------------------------------------------------------------------------------


def dct_signal(count: int = 3, threshold: int = 40) -> DctSignal:
    return DctSignal(hashes=(np.arange(count * 32) * 11 % 256).astype(np.uint8).reshape(count, 32),
                     threshold=threshold)


@pytest.fixture(scope="module")
def fused_data() -> bytes:
    return sign_bundle(make_bundle(TINY, dct=dct_signal()), KEY)


def test_fused_bundle_round_trips_as_version_2(fused_data: bytes) -> None:
    """A bundle with a DCT signal is written as version 2 (envelope, payload and signed tag), reads back with
    its DCT hashes, threshold and decision, and re-signs to the same bytes; one without stays version 1."""
    read = read_bundle(fused_data, TRUSTED, now=NOW)
    assert read.version == 2 and read.decision == "neural-or-dct"
    assert read.dct is not None and read.dct.threshold == 40 and read.dct.algorithm == "dct256-v1"
    np.testing.assert_array_equal(read.dct.hashes, dct_signal().hashes)
    assert sign_bundle(read, KEY) == fused_data
    assert msgpack.unpackb(fused_data)["version"] == 2 and payload_of(fused_data)["version"] == 2
    assert payload_of(fused_data)["decision"] == "neural-or-dct"
    assert seal(msgpack.unpackb(fused_data)["payload"], version=2) == fused_data
    plain = read_bundle(sign_bundle(make_bundle(TINY), KEY), TRUSTED, now=NOW)
    assert plain.version == 1 and plain.dct is None and plain.decision == "neural"


def test_pinned_bytes_of_a_fused_bundle() -> None:
    """Version 2's exact bytes, as test_pinned_bytes pins version 1's."""
    data = sign_bundle(make_bundle(dct=dct_signal()), KEY)
    assert hashlib.sha256(data).hexdigest() == "235a950140c722311c1f882da1c71a30f438b8668edc2be6f4630f6026837d5f"


def test_a_signature_never_crosses_versions(tiny_data: bytes, fused_data: bytes) -> None:
    """The version is in the signed domain tag: relabelling a signed payload as the other version fails the
    signature, and a payload signed for its own version but sealed in the other's envelope fails its keys."""
    with pytest.raises(BundleSignatureError, match="does not verify"):
        read_bundle(seal(msgpack.unpackb(fused_data)["payload"], version=2, tag=1), TRUSTED, now=NOW)
    with pytest.raises(BundleSignatureError, match="does not verify"):
        read_bundle(seal(msgpack.unpackb(tiny_data)["payload"], version=1, tag=2), TRUSTED, now=NOW)
    with pytest.raises(BundleFormatError, match="unexpected \\['dct', 'decision'\\]"):
        read_bundle(seal_fields(payload_of(fused_data) | {"version": 1}), TRUSTED, now=NOW)
    with pytest.raises(BundleFormatError, match="missing \\['dct', 'decision'\\]"):
        read_bundle(seal_fields(payload_of(tiny_data) | {"version": 2}, version=2), TRUSTED, now=NOW)
    with pytest.raises(BundleFormatError, match="version 1 differs"):
        read_bundle(seal_fields(payload_of(fused_data) | {"version": 1}, version=2), TRUSTED, now=NOW)


GOOD_DCT = {"algorithm": "dct256-v1", "hashes": bytes(96), "threshold": 40}


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"dct": None}, BundleFormatError, "dct must be a map"),
    ({"dct": [GOOD_DCT]}, BundleFormatError, "dct must be a map"),
    ({"dct": {"hashes": bytes(96), "threshold": 40}}, BundleFormatError, "missing \\['algorithm'\\]"),
    ({"dct": GOOD_DCT | {"bits": 256}}, BundleFormatError, "unexpected \\['bits'\\]"),
    ({"dct": GOOD_DCT | {"algorithm": "dct256-v2"}}, BundleFormatError, "unknown DCT hash algorithm 'dct256-v2'"),
    ({"dct": GOOD_DCT | {"algorithm": 1}}, BundleFormatError, "unknown DCT hash algorithm 1"),
    ({"dct": GOOD_DCT | {"hashes": bytes(48)}}, BundleContentError, "DCT hashes hold 48 bytes"),  # 128-bit hashes
    ({"dct": GOOD_DCT | {"hashes": bytes(95)}}, BundleContentError, "DCT hashes hold 95 bytes"),
    ({"dct": GOOD_DCT | {"hashes": bytes(128)}}, BundleContentError, "DCT hashes hold 128 bytes"),  # 4 hashes
    ({"dct": GOOD_DCT | {"hashes": [0] * 96}}, BundleFormatError, "dct hashes must be binary"),
    ({"dct": GOOD_DCT | {"hashes": "00" * 96}}, BundleFormatError, "dct hashes must be binary"),
    ({"dct": GOOD_DCT | {"threshold": 257}}, BundleFormatError, "dct threshold"),
    ({"dct": GOOD_DCT | {"threshold": -1}}, BundleFormatError, "dct threshold"),
    ({"dct": GOOD_DCT | {"threshold": 40.0}}, BundleFormatError, "dct threshold"),
    ({"dct": GOOD_DCT | {"threshold": True}}, BundleFormatError, "dct threshold"),
    ({"dct": GOOD_DCT | {"threshold": None}}, BundleFormatError, "dct threshold"),
    ({"decision": "neural-and-dct"}, BundleFormatError, "decision must be 'neural-or-dct'"),
    ({"decision": "neural"}, BundleFormatError, "decision must be 'neural-or-dct'"),
    ({"decision": None}, BundleFormatError, "decision"),
])
def test_invalid_dct_fields_are_refused(fused_data: bytes, changes: dict[str, Any], error: type[BundleError],
                                        message: str) -> None:
    """The DCT signal's algorithm (named when unknown), width, count, type and threshold range, and the
    decision, are checked like every other signed field."""
    with pytest.raises(error, match=message):
        read_bundle(seal_fields(payload_of(fused_data) | changes, version=2), TRUSTED, now=NOW)


def test_huge_declared_dct_length_is_refused_without_allocating(fused_data: bytes) -> None:
    """A bin header declaring 4 GiB of DCT hashes with no data behind it is refused by the bounded decoder."""
    fields = payload_of(fused_data)
    marker = "\x7f" * 40
    packed = codec.pack(fields | {"dct": GOOD_DCT | {"hashes": marker}})
    with pytest.raises(BundleFormatError, match="not well-formed"):
        read_bundle(seal(packed.replace(codec.pack(marker), b"\xc6\xff\xff\xff\xff"), version=2), TRUSTED,
                    now=NOW)


@pytest.mark.parametrize(("signed", "version"), [("fused_data", 2), ("crops_data", 3), ("bounded_data", 5)])
def test_every_signed_payload_byte_change_of_later_versions_raises_only_bundle_errors(
        signed: str, version: int, request: pytest.FixtureRequest) -> None:
    """As for version 1: a damaged (re-signed) version 2, 3 or 4 payload is a valid bundle or a BundleError."""
    payload = bytearray(msgpack.unpackb(request.getfixturevalue(signed))["payload"])
    for i in range(len(payload)):
        payload[i] ^= 0xFF
        try:
            read_bundle(seal(bytes(payload), version=version), TRUSTED, now=NOW)
        except BundleError:
            pass
        payload[i] ^= 0xFF


def test_constructing_an_inconsistent_fused_bundle_fails() -> None:
    """A DCT signal must hold one 256-bit hash per id, with a threshold in [0, 256]."""
    with pytest.raises(BundleContentError, match="2 DCT hashes for 3 ids"):
        make_bundle(TINY, dct=dct_signal(count=2))
    with pytest.raises(BundleContentError, match="uint8 array"):
        make_bundle(TINY, dct=DctSignal(hashes=np.zeros((3, 16), np.uint8), threshold=4))
    with pytest.raises(BundleFormatError, match="dct threshold"):
        dct_signal(threshold=257)
    with pytest.raises(BundleFormatError, match="must be a DctSignal"):
        make_bundle(TINY, dct={"threshold": 4})


# --- version 3: crop hashes ------------------------------------------------------------------------------------


def crop_signal(owners: tuple[int, ...] = (0, 0, 1, 2, 2), threshold: int = 5, width: int = 2) -> CropSignal:
    return CropSignal(hashes=(np.arange(len(owners) * width) * 29 % 256).astype(np.uint8).reshape(-1, width),
                      owners=np.array(owners, dtype=np.int64), threshold=threshold)


@pytest.fixture(scope="module")
def crops_data() -> bytes:
    return sign_bundle(make_bundle(TINY, dct=dct_signal(), crops=crop_signal()), KEY)


def test_pinned_bytes_of_a_version_3_bundle() -> None:
    """Version 3's exact bytes (crop hashes and a DCT signal, a calibration without a bound), as
    test_pinned_bytes pins version 1's."""
    data = sign_bundle(make_bundle(dct=dct_signal(), crops=crop_signal(width=PAPER.hash_bytes)), KEY)
    assert read_bundle(data, TRUSTED, now=NOW).version == 3
    assert hashlib.sha256(data).hexdigest() == "2179b4899d49e256bea8d86fa3e8dc385b85acd350b9b9046cde16a3c62dd8a4"


def test_crops_bundle_round_trips_as_version_3(crops_data: bytes) -> None:
    """A bundle with crop hashes is written as version 3 (envelope, payload, signed tag), with or without the
    DCT signal, and reads back with its crop hashes, owners (4-byte little-endian on the wire), threshold and
    decision, re-signing to the same bytes."""
    read = read_bundle(crops_data, TRUSTED, now=NOW)
    assert read.version == 3 and read.decision == "neural-or-crops-or-dct" and read.dct is not None
    assert read.crops is not None and read.crops.threshold == 5
    np.testing.assert_array_equal(read.crops.hashes, crop_signal().hashes)
    assert read.crops.owners.tolist() == [0, 0, 1, 2, 2]
    assert payload_of(crops_data)["crops"]["owners"] == bytes([0, 0, 0, 0] * 2 + [1, 0, 0, 0] + [2, 0, 0, 0] * 2)
    assert sign_bundle(read, KEY) == crops_data
    assert seal(msgpack.unpackb(crops_data)["payload"], version=3) == crops_data
    alone = read_bundle(sign_bundle(make_bundle(TINY, crops=crop_signal()), KEY), TRUSTED, now=NOW)
    assert (alone.version, alone.decision, alone.dct) == (3, "neural-or-crops", None)
    assert payload_of(sign_bundle(alone, KEY))["dct"] is None
    empty = read_bundle(sign_bundle(make_bundle(TINY, crops=crop_signal(owners=())), KEY), TRUSTED, now=NOW)
    assert empty.crops is not None and empty.crops.hashes.shape == (0, 2)


GOOD_CROPS = {"hashes": bytes(10), "owners": bytes([0, 0, 0, 0] * 2 + [1, 0, 0, 0] + [2, 0, 0, 0] * 2),
              "threshold": 5}


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"crops": None}, BundleFormatError, "crops must be a map"),
    ({"crops": {"hashes": bytes(10), "threshold": 5}}, BundleFormatError, "missing \\['owners'\\]"),
    ({"crops": GOOD_CROPS | {"hashes": bytes(8)}}, BundleContentError, "crop hashes hold 8 bytes"),
    ({"crops": GOOD_CROPS | {"owners": bytes(19)}}, BundleContentError, "not a multiple of 4"),
    ({"crops": GOOD_CROPS | {"owners": bytes([3, 0, 0, 0]) * 5}}, BundleContentError, "id indices in \\[0, 3\\)"),
    ({"crops": GOOD_CROPS | {"owners": bytes([255] * 4) * 5}}, BundleContentError, "id indices"),
    ({"crops": GOOD_CROPS | {"owners": [0] * 5}}, BundleFormatError, "must be binary"),
    ({"crops": GOOD_CROPS | {"threshold": 17}}, BundleFormatError, "crops threshold"),
    ({"crops": GOOD_CROPS | {"threshold": True}}, BundleFormatError, "crops threshold"),
    ({"decision": "neural-or-dct"}, BundleFormatError, "decision must be 'neural-or-crops-or-dct'"),
    ({"decision": "neural-or-crops"}, BundleFormatError, "decision must be 'neural-or-crops-or-dct'"),
    ({"dct": None}, BundleFormatError, "dct must be a map"),
    ({"dct": None, "decision": "neural-or-dct"}, BundleFormatError, "decision must be 'neural-or-crops' or"),
])
def test_invalid_crops_fields_are_refused(crops_data: bytes, changes: dict[str, Any], error: type[BundleError],
                                          message: str) -> None:
    """Crop hashes must be as wide as the model's hashes, one per owner, each owner an index of an id, the
    threshold within the model's bits, and the decision must name exactly the signals the bundle carries."""
    with pytest.raises(error, match=message):
        read_bundle(seal_fields(payload_of(crops_data) | changes, version=3), TRUSTED, now=NOW)


def test_a_version_3_payload_needs_its_crops_and_only_version_3_has_them(fused_data: bytes, crops_data: bytes
                                                                        ) -> None:
    """Keys are exact per version: crops in a version 2 payload, or none in a version 3 one, are refused."""
    with pytest.raises(BundleFormatError, match="unexpected \\['crops'\\]"):
        read_bundle(seal_fields(payload_of(crops_data) | {"version": 2}, version=2), TRUSTED, now=NOW)
    with pytest.raises(BundleFormatError, match="missing \\['crops'\\]"):
        read_bundle(seal_fields(payload_of(fused_data) | {"version": 3}, version=3), TRUSTED, now=NOW)


def test_constructing_an_inconsistent_crops_bundle_fails() -> None:
    """Crop hashes must match the model's width, owners must be one int64 id index per hash."""
    with pytest.raises(BundleContentError, match="2 bytes wide"):
        make_bundle(TINY, crops=crop_signal(width=3))
    with pytest.raises(BundleContentError, match="id indices in \\[0, 3\\)"):
        make_bundle(TINY, crops=crop_signal(owners=(0, 3)))
    with pytest.raises(BundleContentError, match="one per crop hash"):
        CropSignal(hashes=np.zeros((2, 2), np.uint8), owners=np.zeros(3, np.int64), threshold=1)
    with pytest.raises(BundleFormatError, match="crops threshold"):
        make_bundle(TINY, crops=crop_signal(threshold=17))


def test_an_absurd_signed_spec_is_refused_before_its_network_is_built(tiny_data: bytes,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A validly signed spec in range but absurd (copy-cnn, width 128, 5 stages: 1.5 GB of parameters) with
    weights that do not fit is refused from shapes alone (the architecture lists them): no network is built
    at all (was: the real network first, then the refusal)."""
    built_on: list[str] = []
    real_build = ModelSpec.build

    def build(spec: ModelSpec) -> torch.nn.Module:
        built_on.append(torch.empty(0).device.type)  # the device factories default to inside the build
        return real_build(spec)

    monkeypatch.setattr(ModelSpec, "build", build)
    fields = payload_of(tiny_data)
    fields["spec"] = fields["spec"] | {"arch": {"type": "copy-cnn", "width": 128, "stages": 5, "mirror": False}}
    with pytest.raises(BundleContentError, match="weights do not match the spec"):
        read_bundle(seal_fields(fields), TRUSTED, now=NOW)
    assert built_on == []


# --- version 5: a calibration with a bound --------------------------------------------------------------------

BOUNDED = Calibration(target_fpr=0.01, measured_fpr=0.004, innocent_images=540, bound_fpr=0.0095, confidence=0.9,
                      innocent_groups=4)


@pytest.fixture(scope="module")
def bounded_data() -> bytes:
    return sign_bundle(make_bundle(TINY, dct=dct_signal(), crops=crop_signal(), calibration=BOUNDED), KEY)


def test_pinned_bytes_of_a_version_5_bundle() -> None:
    """Version 5's exact bytes (crop hashes, a DCT signal and a calibration with its bound: what `authority
    publish --innocent` writes by default), as test_pinned_bytes pins version 1's."""
    data = sign_bundle(make_bundle(dct=dct_signal(), crops=crop_signal(width=PAPER.hash_bytes),
                                   calibration=BOUNDED), KEY)
    assert read_bundle(data, TRUSTED, now=NOW).version == 5
    assert hashlib.sha256(data).hexdigest() == "3ea6197fcc24ee991f491debdee2a801002a03b07908c27c6a374b88898abfd2"


def test_a_bounded_calibration_is_written_as_version_5_with_any_signals(bounded_data: bytes) -> None:
    """A calibration with a bound (and its confidence and number of groups) needs version 5, whatever signals
    the bundle carries; the same bundle without the bound is written as before (version 3), byte for byte the
    older format. Version 5 reads back to the same bytes, with or without crops or DCT hashes."""
    read = read_bundle(bounded_data, TRUSTED, now=NOW)
    assert (read.version, read.decision, read.calibration) == (5, "neural-or-crops-or-dct", BOUNDED)
    assert payload_of(bounded_data)["calibration"] == {
        "target_fpr": 0.01, "measured_fpr": 0.004, "innocent_images": 540, "bound_fpr": 0.0095,
        "confidence": 0.9, "innocent_groups": 4}
    assert sign_bundle(read, KEY) == bounded_data
    older = make_bundle(TINY, dct=dct_signal(), crops=crop_signal())
    assert older.version == 3 and payload_of(sign_bundle(older, KEY))["version"] == 3
    for signals, decision in (({}, "neural"), ({"dct": dct_signal()}, "neural-or-dct"),
                              ({"crops": crop_signal()}, "neural-or-crops")):
        data = sign_bundle(make_bundle(TINY, calibration=BOUNDED, **signals), KEY)
        plain = read_bundle(data, TRUSTED, now=NOW)
        assert (plain.version, plain.decision, plain.dct is None, plain.crops is None) == \
               (5, decision, "dct" not in signals, "crops" not in signals)
        assert payload_of(data)["decision"] == decision


GOOD_BOUNDED = BOUNDED.to_dict()


@pytest.mark.parametrize(("changes", "message"), [
    ({"calibration": None}, "calibration must be a map in format version 5"),
    ({"calibration": {k: v for k, v in GOOD_BOUNDED.items() if k != "bound_fpr"}}, "missing \\['bound_fpr'\\]"),
    ({"calibration": {"target_fpr": 0.01, "measured_fpr": 0.0, "innocent_images": 3}}, "missing"),
    ({"calibration": GOOD_BOUNDED | {"bound_fpr": 0.001}}, "below measured_fpr"),
    ({"calibration": GOOD_BOUNDED | {"bound_fpr": 1.5}}, "bound_fpr must be a float in \\[0, 1\\]"),
    ({"calibration": GOOD_BOUNDED | {"bound_fpr": 1}}, "bound_fpr must be a float"),
    ({"calibration": GOOD_BOUNDED | {"confidence": 1.0}}, "confidence must be a float between 0 and 1"),
    ({"calibration": GOOD_BOUNDED | {"confidence": 0.0}}, "confidence"),
    ({"calibration": GOOD_BOUNDED | {"confidence": "0.9"}}, "confidence"),
    ({"calibration": GOOD_BOUNDED | {"innocent_groups": 0}}, "innocent_groups must be an integer from 1"),
    ({"calibration": GOOD_BOUNDED | {"innocent_groups": 541}}, "innocent_groups"),
    ({"calibration": GOOD_BOUNDED | {"innocent_groups": True}}, "innocent_groups"),
    ({"calibration": GOOD_BOUNDED | {"innocent_groups": 2.0}}, "innocent_groups"),
    ({"decision": "neural-or-crops"}, "decision must be 'neural-or-crops-or-dct' for the signals it carries"),
    ({"dct": None}, "decision must be 'neural-or-crops'"),
    ({"crops": None, "dct": None}, "decision must be 'neural'"),
])
def test_invalid_version_5_fields_are_refused(bounded_data: bytes, changes: dict[str, Any], message: str) -> None:
    """The bound is a share no lower than the measured one, the confidence strictly between 0 and 1, the groups
    between 1 and the number of images; the decision names exactly the signals present."""
    with pytest.raises(BundleFormatError, match=message):
        read_bundle(seal_fields(payload_of(bounded_data) | changes, version=5), TRUSTED, now=NOW)


def test_a_bound_cannot_be_given_in_part_or_read_from_an_older_version(crops_data: bytes) -> None:
    """The three bound fields come together; a version 3 payload with them is refused (its keys are exact)."""
    with pytest.raises(BundleFormatError, match="bound_fpr"):
        Calibration(target_fpr=0.01, measured_fpr=0.0, innocent_images=3, confidence=0.9, innocent_groups=1)
    with pytest.raises(BundleFormatError, match="unexpected"):
        read_bundle(seal_fields(payload_of(crops_data) | {"calibration": GOOD_BOUNDED}, version=3), TRUSTED, now=NOW)


# --- version 6: agreement thresholds ---------------------------------------------------------------------------

AGREE = {"network": 30, "crops": 9, "dct": 90}


@pytest.fixture(scope="module")
def agreeing_data() -> bytes:
    return sign_bundle(make_bundle(TINY, dct=dct_signal(), crops=crop_signal(), calibration=BOUNDED,
                                   agree={"network": 6, "crops": 9, "dct": 90}), KEY)


def test_pinned_bytes_of_a_version_6_bundle() -> None:
    """Version 6's exact bytes (version 5's content and an agreement threshold per signal: what `authority
    publish --innocent --forgery-guard` writes)."""
    data = sign_bundle(make_bundle(dct=dct_signal(), crops=crop_signal(width=PAPER.hash_bytes),
                                   calibration=BOUNDED, agree=AGREE), KEY)
    read = read_bundle(data, TRUSTED, now=NOW)
    assert (read.version, read.agree, read.thresholds) == (6, AGREE, {"network": 16, "crops": 5, "dct": 40})
    assert hashlib.sha256(data).hexdigest() == "23b8e941756a4efdf2737e100ef711dfb1bdfeb5d20c2cc99419d97ad720c903"


def test_agreement_thresholds_are_written_as_version_6_and_read_back(agreeing_data: bytes) -> None:
    """The agreement thresholds go in a map by signal name, the rest as in version 5; they read back to the same
    bytes, and a bundle without them has its thresholds as agreement thresholds (the rule before version 6)."""
    read = read_bundle(agreeing_data, TRUSTED, now=NOW)
    assert (read.version, read.agreement) == (6, {"network": 6, "crops": 9, "dct": 90})
    assert payload_of(agreeing_data)["agree"] == {"network": 6, "crops": 9, "dct": 90}
    assert sign_bundle(read, KEY) == agreeing_data
    plain = make_bundle(TINY, dct=dct_signal(), calibration=BOUNDED)
    assert (plain.version, plain.agreement) == (5, plain.thresholds)


@pytest.mark.parametrize(("changes", "message"), [
    ({"agree": None}, "agree must be a map"),
    ({"agree": [6, 9, 90]}, "agree must be a map"),
    ({"agree": {"network": 6, "crops": 9}}, "agree must name exactly its signals"),
    ({"agree": {"network": 6, "crops": 9, "dct": 90, "other": 3}}, "agree must name exactly its signals"),
    ({"agree": {"network": 1, "crops": 9, "dct": 90}}, "network agreement threshold must be an integer in \\[2, 16\\]"),
    ({"agree": {"network": 6, "crops": 9, "dct": 257}}, "dct agreement threshold"),
    ({"agree": {"network": 6, "crops": True, "dct": 90}}, "crops agreement threshold"),
    ({"crops": None, "dct": None, "decision": "neural", "agree": {"network": 6}}, "at least two signals"),
    ({"calibration": None}, "calibration must be a map in format version 6"),
])
def test_invalid_version_6_fields_are_refused(agreeing_data: bytes, changes: dict[str, Any], message: str) -> None:
    """Every signal has exactly one agreement threshold, an integer from its threshold to its bits; agreement
    needs two signals and a calibration with a bound."""
    with pytest.raises(BundleFormatError, match=message):
        read_bundle(seal_fields(payload_of(agreeing_data) | changes, version=6), TRUSTED, now=NOW)


def test_agreement_thresholds_cannot_be_read_from_version_5(bounded_data: bytes) -> None:
    with pytest.raises(BundleFormatError, match="unexpected \\['agree'\\]"):
        read_bundle(seal_fields(payload_of(bounded_data) | {"agree": AGREE}, version=5), TRUSTED, now=NOW)
