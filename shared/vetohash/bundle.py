"""Signed single-file bundles (formats v1 to v3, v5 and v6): what an authority publishes and a platform screens
against.

A bundle is a msgpack envelope holding a msgpack payload and an Ed25519 signature over a pre-authentication
encoding of that payload. Readers check the envelope, verify the signature with a key they already trust, and
only then parse the payload, so unsigned bytes never reach the spec, weight or hash parsers.
Version 2 adds a second signal, a classical DCT hash of every banned image (vetohash.dcthash) with its own
threshold, and the rule that fuses the two. Version 3 adds crop hashes: the network's hashes of crops of
each banned image, each naming the id it was cut from, with their own threshold (a cropped or shifted upload
lies nearer one of its source's crops than the source). Version 4 is the chunked folder of vetohash.chunked.
Version 5 records an upper confidence bound on the share of innocent images the thresholds flag, with its
confidence and the number of innocent groups, beside any signals (vetohash.signals). Version 6 adds agreement
thresholds, one per signal: an image also matches when two signals are below theirs (vetohash.signals), so
that a signal's own threshold can be tight enough that a forged image cannot reach it alone. A bundle is
written in the lowest version that holds what it carries, so platforms that read only older versions keep
working. The normative description is
docs/bundle-format.md.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec, dcthash, signals
from .errors import (
    BundleContentError,
    BundleError,
    BundleExpiredError,
    BundleFormatError,
    BundleSignatureError,
    BundleTooLargeError,
    SpecError,
    WeightsError,
)
from .files import read_bounded
from .hasher import Hasher
from .keys import PublicKey, public_key_of
from .signals import CropSignal, DctSignal, NetworkSignal, Signal
from .specs import ModelSpec

FORMAT_NAME = "vetohash-bundle"
FORMAT_VERSION = 1  # a bundle with the neural signal only
FUSED_VERSION = 2  # a bundle that also carries a DCT signal
CROPS_VERSION = 3  # a bundle that carries crop hashes (and a DCT signal or not)
CHUNKED_VERSION = 4  # a signed manifest over content-addressed chunks: vetohash.chunked
BOUNDED_VERSION = 5  # a bundle whose calibration records an upper bound on innocents flagged (any signals)
AGREEMENT_VERSION = 6  # a version 5 bundle that also carries agreement thresholds
VERSIONS = (FORMAT_VERSION, FUSED_VERSION, CROPS_VERSION, BOUNDED_VERSION, AGREEMENT_VERSION)  # single-file
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
MAX_HASHES = 10_000_000
CLOCK_SKEW_S = 300
MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z: every allowed time has an ISO form
SIGNATURE_BYTES = 64
# Platform limits on validly signed bundles (vetohash_platform.ingest); `authority publish` keeps within them.
# A bundle may be valid for at most about a year from its ingestion, so a stolen or mistaken one does not
# stay in force until 9999...
MAX_VALIDITY_S = 366 * 86_400
# ...and its sequence may run at most this far above both the current Unix time and the last one ingested,
# so one bundle (sequence 2**63 - 1) cannot freeze its list for good. Sequences that count seconds, as
# `authority publish` writes them, and sequences that count up from 1 both pass.
MAX_SEQUENCE_STEP = 366 * 86_400

ENVELOPE_KEYS = frozenset({"format", "version", "key_id", "payload", "signature"})
PAYLOAD_KEYS = frozenset({"version", "spec", "weights", "hashes", "ids", "threshold", "authority", "key_id",
                          "list_name", "sequence", "created", "expires", "calibration"})
FUSED_PAYLOAD_KEYS = PAYLOAD_KEYS | {"dct", "decision"}
CROPS_PAYLOAD_KEYS = FUSED_PAYLOAD_KEYS | {"crops"}
AGREEMENT_PAYLOAD_KEYS = CROPS_PAYLOAD_KEYS | {"agree"}
CALIBRATION_KEYS = frozenset({"target_fpr", "measured_fpr", "innocent_images"})
BOUNDED_CALIBRATION_KEYS = CALIBRATION_KEYS | {"bound_fpr", "confidence", "innocent_groups"}
DCT_KEYS = frozenset({"algorithm", "hashes", "threshold"})
CROPS_KEYS = frozenset({"hashes", "owners", "threshold"})
OWNER_BYTES = 4  # each crop hash's id index, unsigned little-endian
NEURAL_ONLY = "neural"  # the decision of a version 1 bundle: neural distance < threshold
NEURAL_OR_DCT = "neural-or-dct"  # version 2: neural distance < threshold, or DCT distance < dct threshold
# Version 3, also: or the neural distance to the nearest crop hash < crops threshold.
NEURAL_OR_CROPS = "neural-or-crops"
NEURAL_OR_CROPS_OR_DCT = "neural-or-crops-or-dct"

_KEY_ID = re.compile(r"[0-9a-f]{16}")
_LIST_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ID = re.compile(r"[\x21-\x7e]{1,64}")  # visible ASCII: no spaces, no control or look-alike characters
_MAX_AUTHORITY = 128
# What msgpack raises on malformed input: ValueError covers ExtraData, FormatError, StackError, bad UTF-8
# and exceeded limits; OutOfData is an UnpackException only.
_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


@dataclass(frozen=True)
class Calibration:
    """What the thresholds were calibrated for: the share of innocent images they may flag (`target_fpr`), the
    share they flagged among the authority's innocent images (`measured_fpr`) and how many there were; and,
    from format version 5, an upper bound at a confidence on the share flagged in a group the authority did
    not see (from the spread between its groups, clusters such as the crops of one photo), and the number of
    groups. The bound, not the measured share, is what was held to the target."""

    target_fpr: float
    measured_fpr: float
    innocent_images: int
    bound_fpr: float | None = None
    confidence: float | None = None
    innocent_groups: int | None = None

    def __post_init__(self) -> None:
        for name in ("target_fpr", "measured_fpr"):
            _check_share(f"calibration {name}", getattr(self, name))
        if type(self.innocent_images) is not int or not 0 <= self.innocent_images < 2**63:
            raise BundleFormatError(f"calibration innocent_images must be a non-negative integer, "
                                    f"got {self.innocent_images!r}")
        extra = (self.bound_fpr, self.confidence, self.innocent_groups)
        if all(value is None for value in extra):
            return
        _check_share("calibration bound_fpr", self.bound_fpr)
        if self.bound_fpr < self.measured_fpr:  # type: ignore[operator]
            raise BundleFormatError(f"calibration bound_fpr {self.bound_fpr!r} is below measured_fpr "
                                    f"{self.measured_fpr!r}")
        if not isinstance(self.confidence, float) or not 0.0 < self.confidence < 1.0:
            raise BundleFormatError(f"calibration confidence must be a float between 0 and 1 (exclusive), got "
                                    f"{self.confidence!r}")
        if type(self.innocent_groups) is not int or not 1 <= self.innocent_groups <= self.innocent_images:
            raise BundleFormatError(f"calibration innocent_groups must be an integer from 1 to innocent_images "
                                    f"({self.innocent_images}), got {self.innocent_groups!r}")

    @property
    def bounded(self) -> bool:
        """Whether it records the bound (format version 5)."""
        return self.bound_fpr is not None

    def to_dict(self) -> dict[str, Any]:
        """The calibration map as the payload holds it."""
        out: dict[str, Any] = {"target_fpr": self.target_fpr, "measured_fpr": self.measured_fpr,
                               "innocent_images": self.innocent_images}
        if self.bounded:
            out.update(bound_fpr=self.bound_fpr, confidence=self.confidence, innocent_groups=self.innocent_groups)
        return out


def _check_share(name: str, value: Any) -> None:
    if not isinstance(value, float) or not 0.0 <= value <= 1.0:
        raise BundleFormatError(f"{name} must be a float in [0, 1], got {value!r}")


@dataclass(frozen=True, eq=False)
class Bundle:
    """The content of a bundle. Construction validates every field (one validation point for reading and
    writing), including the weights against the spec, so a Bundle that exists can be signed and used."""

    spec: ModelSpec
    weights: Mapping[str, Any]
    hashes: np.ndarray
    ids: tuple[str, ...]
    threshold: int
    authority: str
    key_id: str
    list_name: str
    sequence: int
    created: int
    expires: int
    calibration: Calibration | None = None
    dct: DctSignal | None = None
    crops: CropSignal | None = None
    # Each signal's agreement threshold, by name (format version 6); None: the rule before it, any one signal.
    agree: Mapping[str, int] | None = None
    _hasher: Hasher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.spec, ModelSpec):
            raise BundleFormatError("bundle spec must be a ModelSpec")
        if not isinstance(self.ids, tuple) or not all(isinstance(i, str) and _ID.fullmatch(i) for i in self.ids):
            raise BundleFormatError("bundle ids must be strings of 1 to 64 visible ASCII characters")
        if len(self.ids) > MAX_HASHES:
            raise BundleTooLargeError(f"bundle holds {len(self.ids)} hashes, more than the {MAX_HASHES} allowed")
        if len(set(self.ids)) != len(self.ids):
            raise BundleContentError("bundle ids are not unique")
        width = self.spec.hash_bytes
        if (not isinstance(self.hashes, np.ndarray) or self.hashes.dtype != np.uint8
                or self.hashes.shape != (len(self.ids), width)):
            raise BundleContentError(f"bundle hashes must be a ({len(self.ids)}, {width}) uint8 array, one "
                                     f"{self.spec.bits}-bit hash per id")
        _check_int("threshold", self.threshold, 0, self.spec.bits)
        if not isinstance(self.key_id, str) or not _KEY_ID.fullmatch(self.key_id):
            raise BundleFormatError("bundle key_id must be 16 lower-case hex digits")
        check_header("bundle", self.authority, self.list_name, self.sequence, self.created, self.expires)
        if self.calibration is not None and not isinstance(self.calibration, Calibration):
            raise BundleFormatError("bundle calibration must be a Calibration or None")
        if self.dct is not None:
            if not isinstance(self.dct, DctSignal):
                raise BundleFormatError("bundle dct must be a DctSignal or None")
            if len(self.dct.hashes) != len(self.ids):
                raise BundleContentError(f"bundle holds {len(self.dct.hashes)} DCT hashes for {len(self.ids)} ids")
        if self.crops is not None:
            self._check_crops(self.crops)
        if self.agree is not None:
            self._check_agree(self.agree)
        try:
            hasher = Hasher.from_encoded(self.spec, self.weights)  # checks the weights; builds no network
        except WeightsError as error:
            raise BundleContentError(f"bundle weights: {error}") from None
        object.__setattr__(self, "_hasher", hasher)

    def _check_crops(self, crops: CropSignal) -> None:
        if not isinstance(crops, CropSignal):
            raise BundleFormatError("bundle crops must be a CropSignal or None")
        if crops.hashes.shape[1] != self.spec.hash_bytes:
            raise BundleContentError(f"bundle crop hashes must be {self.spec.hash_bytes} bytes wide, as the "
                                     f"model's {self.spec.bits}-bit hashes")
        if len(crops.hashes) > MAX_HASHES:
            raise BundleTooLargeError(f"bundle holds {len(crops.hashes)} crop hashes, more than the "
                                      f"{MAX_HASHES} allowed")
        if len(crops.owners) and not 0 <= int(crops.owners.min()) <= int(crops.owners.max()) < len(self.ids):
            raise BundleContentError(f"bundle crop owners must be id indices in [0, {len(self.ids)})")
        _check_int("crops threshold", crops.threshold, 0, self.spec.bits)

    def _check_agree(self, agree: Mapping[str, int]) -> None:
        if not isinstance(agree, Mapping):
            raise BundleFormatError("bundle agree must be a map of agreement thresholds or None")
        names = [s.name for s in self.signals]
        if sorted(agree) != sorted(names):
            raise BundleFormatError(f"bundle agree must name exactly its signals {names}, got {sorted(agree)}")
        if len(names) < 2:
            raise BundleFormatError("bundle agree needs at least two signals to agree")
        for s in self.signals:
            _check_int(f"{s.name} agreement threshold", agree[s.name], s.threshold, s.bits)
        if self.calibration is None or not self.calibration.bounded:
            raise BundleFormatError("a bundle with agreement thresholds records its calibration with a bound")

    def hasher(self) -> Hasher:
        """The hasher of the spec and weights (checked at construction; its network is built on its first hash,
        so parsing, listing and re-verifying bundles never builds one)."""
        return self._hasher

    @property
    def signals(self) -> tuple[Signal, ...]:
        """Every signal the bundle carries, in the order they are shown (vetohash.signals.ORDER)."""
        network = NetworkSignal(hashes=self.hashes, threshold=self.threshold, width=self.spec.bits)
        return tuple(s for s in (network, self.crops, self.dct) if s is not None)

    @property
    def thresholds(self) -> dict[str, int]:
        """Each signal's threshold, by name."""
        return {s.name: s.threshold for s in self.signals}

    @property
    def agreement(self) -> dict[str, int]:
        """Each signal's agreement threshold, by name (its threshold in bundles before version 6)."""
        return signals.agreement(self.thresholds, self.agree)

    @property
    def version(self) -> int:
        """The format version this bundle is written in: the lowest that holds what it carries (6 with
        agreement thresholds, 5 with a bounded calibration, else 3 with crop hashes, 2 with a DCT signal alone,
        else 1)."""
        if self.agree is not None:
            return AGREEMENT_VERSION
        if self.calibration is not None and self.calibration.bounded:
            return BOUNDED_VERSION
        if self.crops is not None:
            return CROPS_VERSION
        return FORMAT_VERSION if self.dct is None else FUSED_VERSION

    @property
    def decision(self) -> str:
        """How a query is matched (decision_of)."""
        return decision_of(dct=self.dct is not None, crops=self.crops is not None)


def decision_of(*, dct: bool, crops: bool) -> str:
    """The decision field of a list that carries DCT and crop hashes or not: NEURAL_ONLY, NEURAL_OR_DCT,
    NEURAL_OR_CROPS or NEURAL_OR_CROPS_OR_DCT (a match is any named distance below its own threshold)."""
    if crops:
        return NEURAL_OR_CROPS_OR_DCT if dct else NEURAL_OR_CROPS
    return NEURAL_OR_DCT if dct else NEURAL_ONLY


def sign_bundle(bundle: Bundle, key: Ed25519PrivateKey) -> bytes:
    """The signed envelope bytes of `bundle`; its key_id must be the signing key's."""
    key_id = public_key_of(key).key_id
    if bundle.key_id != key_id:
        raise ValueError(f"bundle names key {bundle.key_id} but is signed with key {key_id}")
    calibration = bundle.calibration
    fields = {
        "version": bundle.version,
        "spec": bundle.spec.to_dict(),
        "weights": bundle.weights,
        "hashes": np.ascontiguousarray(bundle.hashes).tobytes(),
        "ids": list(bundle.ids),
        "threshold": bundle.threshold,
        "authority": bundle.authority,
        "key_id": bundle.key_id,
        "list_name": bundle.list_name,
        "sequence": bundle.sequence,
        "created": bundle.created,
        "expires": bundle.expires,
        "calibration": None if calibration is None else calibration.to_dict(),
    }
    if bundle.version != FORMAT_VERSION:
        fields["decision"] = bundle.decision
        fields["dct"] = None if bundle.dct is None else {
            "algorithm": bundle.dct.algorithm, "threshold": bundle.dct.threshold,
            "hashes": np.ascontiguousarray(bundle.dct.hashes).tobytes()}
    if bundle.version in (BOUNDED_VERSION, AGREEMENT_VERSION):
        fields["crops"] = None
    if bundle.agree is not None:
        fields["agree"] = dict(bundle.agree)
    if bundle.crops is not None:
        fields["crops"] = {"hashes": np.ascontiguousarray(bundle.crops.hashes).tobytes(),
                           "owners": bundle.crops.owners.astype("<u4").tobytes(),
                           "threshold": bundle.crops.threshold}
    payload = codec.pack(fields)
    envelope = codec.pack({"format": FORMAT_NAME, "version": bundle.version, "key_id": key_id,
                           "payload": payload, "signature": key.sign(pae(payload, bundle.version))})
    if len(envelope) > MAX_BUNDLE_BYTES:
        raise BundleTooLargeError(f"bundle would be {len(envelope)} bytes, more than the {MAX_BUNDLE_BYTES} "
                                  "a reader accepts")
    return envelope


def pae(payload: bytes, version: int = FORMAT_VERSION) -> bytes:
    """The bytes actually signed: a domain tag naming the format version, the payload length (8 bytes
    little-endian), the payload. The tag keeps a signature of one version from verifying as another's."""
    return f"{FORMAT_NAME}-v{version}".encode() + b"\0" + struct.pack("<Q", len(payload)) + payload


def read_bundle(data: bytes, trusted: Mapping[str, PublicKey], *, now: float | None = None) -> Bundle:
    """Check, verify and parse bundle bytes against keys by key_id; raise only BundleError subclasses.

    Order matters: size, envelope shape and version, trusted key, signature, and only then the payload.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleTooLargeError(f"bundle is {len(data)} bytes, more than the {MAX_BUNDLE_BYTES} allowed")
    version, key_id, payload = open_envelope(data, trusted, tuple(sorted(VERSIONS + (CHUNKED_VERSION,))))
    if version == CHUNKED_VERSION:
        raise BundleFormatError("this is the manifest of a version 4 (chunked) bundle: give its folder, which "
                                "holds the manifest and its chunks")
    return _parse_payload(payload, key_id, version, time.time() if now is None else now)


def open_envelope(data: bytes, trusted: Mapping[str, PublicKey], versions: tuple[int, ...]
                  ) -> tuple[int, str, bytes]:
    """The version, key_id and payload bytes of a signed envelope, after its shape, version (one of
    `versions`), key and signature are checked; the payload is not decoded."""
    # Small limits, but loose enough that a later version's envelope reaches the version gate.
    envelope = _unpack_canonical(data, "bundle envelope", max_str=256, max_items=64)
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT_NAME:
        raise BundleFormatError("not a vetohash bundle")
    version = envelope.get("version")
    if version not in versions or type(version) is not int:
        raise BundleFormatError(f"unsupported bundle format version {version!r}; this vetohash reads "
                                f"versions {', '.join(map(str, versions))}")
    _check_keys("bundle envelope", envelope, ENVELOPE_KEYS)
    key_id, payload, signature = envelope["key_id"], envelope["payload"], envelope["signature"]
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise BundleFormatError("bundle envelope key_id must be 16 lower-case hex digits")
    if not isinstance(payload, bytes):
        raise BundleFormatError("bundle envelope payload must be binary")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise BundleFormatError(f"bundle envelope signature must be {SIGNATURE_BYTES} bytes")
    public_key = trusted.get(key_id)
    if public_key is None:
        raise BundleSignatureError(f"bundle signed by untrusted key {key_id}")
    if not public_key.verify(signature, pae(payload, version)):
        raise BundleSignatureError(f"bundle signature does not verify with key {key_id}")
    return version, key_id, payload


def read_bundle_file(path: Path, trusted: Mapping[str, PublicKey], now: float | None = None
                     ) -> tuple[Bundle, bytes]:
    """Read and verify a bundle file (a regular file of at most MAX_BUNDLE_BYTES); also return its bytes."""
    data = read_bounded(path, MAX_BUNDLE_BYTES, "bundle", BundleError, too_large=BundleTooLargeError)
    return read_bundle(data, trusted, now=now), data


def _parse_payload(payload: bytes, key_id: str, version: int, now: float) -> Bundle:
    """Signed payload bytes of the envelope's `version` -> Bundle, with every field checked; times are checked
    against `now`."""
    # Array and map lengths are bounded by the input size (each item takes a byte), so no header can make
    # msgpack preallocate more than a few times the payload's size.
    fields = _unpack_canonical(payload, "bundle payload", max_str=1024, max_items=len(payload))
    if not isinstance(fields, dict):
        raise BundleFormatError("bundle payload must be a map")
    _check_keys("bundle payload", fields, {FORMAT_VERSION: PAYLOAD_KEYS, FUSED_VERSION: FUSED_PAYLOAD_KEYS,
                                           CROPS_VERSION: CROPS_PAYLOAD_KEYS,
                                           BOUNDED_VERSION: CROPS_PAYLOAD_KEYS,
                                           AGREEMENT_VERSION: AGREEMENT_PAYLOAD_KEYS}[version])
    if fields["version"] != version or type(fields["version"]) is not int:
        raise BundleFormatError(f"bundle payload version {fields['version']!r} differs from the envelope's")
    if fields["key_id"] != key_id:
        raise BundleFormatError(f"bundle payload names key {fields['key_id']!r} but is signed by {key_id}")
    ids, blob, calibration = fields["ids"], fields["hashes"], fields["calibration"]
    if not isinstance(ids, list):
        raise BundleFormatError("bundle ids must be an array")
    if not isinstance(blob, bytes):
        raise BundleFormatError("bundle hashes must be binary")
    bounded = version in (BOUNDED_VERSION, AGREEMENT_VERSION)
    if bounded and not isinstance(calibration, dict):
        raise BundleFormatError(f"bundle calibration must be a map in format version {version}")
    calibration = parse_calibration("bundle", calibration,
                                    BOUNDED_CALIBRATION_KEYS if bounded else CALIBRATION_KEYS)
    spec = parse_spec("bundle", fields["spec"])
    if len(blob) != len(ids) * spec.hash_bytes:
        raise BundleContentError(f"bundle hashes hold {len(blob)} bytes; {len(ids)} ids of "
                                 f"{spec.hash_bytes}-byte hashes need {len(ids) * spec.hash_bytes}")
    dct = crops = None
    if version == FUSED_VERSION:
        dct = _parse_dct(fields["dct"], fields["decision"], NEURAL_OR_DCT, len(ids))
    elif version == CROPS_VERSION:
        with_dct = fields["decision"] == NEURAL_OR_CROPS_OR_DCT
        if with_dct or fields["dct"] is not None:
            dct = _parse_dct(fields["dct"], fields["decision"], NEURAL_OR_CROPS_OR_DCT, len(ids))
        elif fields["decision"] != NEURAL_OR_CROPS:
            raise BundleFormatError(f"bundle decision must be {NEURAL_OR_CROPS!r} or {NEURAL_OR_CROPS_OR_DCT!r}, "
                                    f"got {fields['decision']!r}")
        crops = _parse_crops(fields["crops"], spec.bits)
    elif bounded:
        dct, crops = _parse_signals(fields, spec.bits, len(ids))
    agree = fields.get("agree")
    if version == AGREEMENT_VERSION and (not isinstance(agree, dict)
                                         or not all(isinstance(name, str) for name in agree)):
        raise BundleFormatError("bundle agree must be a map from signal names to thresholds")
    bundle = Bundle(
        spec=spec,
        weights=fields["weights"],
        hashes=np.frombuffer(blob, dtype=np.uint8).reshape(len(ids), spec.hash_bytes),
        ids=tuple(ids),
        threshold=fields["threshold"],
        authority=fields["authority"],
        key_id=fields["key_id"],
        list_name=fields["list_name"],
        sequence=fields["sequence"],
        created=fields["created"],
        expires=fields["expires"],
        calibration=calibration,
        dct=dct,
        crops=crops,
        agree=agree,
    )
    check_in_force(bundle.created, bundle.expires, now)
    return bundle


def check_header(what: str, authority: Any, list_name: Any, sequence: Any, created: Any, expires: Any) -> None:
    """What every format carries about the list: the authority's name and the list's (printable, bounded), the
    sequence number and the validity period (integers in range, expiry after creation)."""
    if not isinstance(authority, str) or not 0 < len(authority) <= _MAX_AUTHORITY or not authority.isprintable():
        raise BundleFormatError(f"{what} authority must be 1 to {_MAX_AUTHORITY} printable characters")
    if not isinstance(list_name, str) or not _LIST_NAME.fullmatch(list_name):
        raise BundleFormatError(f"{what} list_name must be 1 to 64 characters from [A-Za-z0-9._-]")
    _check_int("sequence", sequence, 0, 2**63 - 1)
    _check_int("created", created, 0, MAX_TIME)
    _check_int("expires", expires, 0, MAX_TIME)
    if expires <= created:
        raise BundleContentError(f"{what} expires ({_iso(expires)}) no later than it was created ({_iso(created)})")


def check_in_force(created: int, expires: int, now: float) -> None:
    """A verified bundle of any format is used only between its creation (give or take the clock skew allowed)
    and its expiry."""
    if created > now + CLOCK_SKEW_S:
        raise BundleExpiredError(f"bundle is created in the future ({_iso(created)}); check the clock")
    if expires <= now:
        raise BundleExpiredError(f"bundle expired on {_iso(expires)}")


def parse_calibration(what: str, value: Any, keys: frozenset[str]) -> Calibration | None:
    """A payload's calibration: nil, or a map with exactly `keys` (each value checked by Calibration)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BundleFormatError(f"{what} calibration must be a map or nil")
    _check_keys(f"{what} calibration", value, keys)
    return Calibration(**value)


def parse_spec(what: str, value: Any) -> ModelSpec:
    """A payload's model spec, its errors reported as the bundle's content."""
    try:
        return ModelSpec.from_dict(value)
    except SpecError as error:
        raise BundleContentError(f"{what} spec: {error}") from None


def _parse_signals(fields: Mapping[str, Any], bits: int, count: int) -> tuple[DctSignal | None, CropSignal | None]:
    """The `dct` and `crops` of a version 5 or 6 payload, each a map or nil, and the decision that names exactly
    the signals present."""
    expected = decision_of(dct=fields["dct"] is not None, crops=fields["crops"] is not None)
    if fields["decision"] != expected:
        raise BundleFormatError(f"bundle decision must be {expected!r} for the signals it carries, got "
                                f"{fields['decision']!r}")
    dct = None if fields["dct"] is None else _parse_dct(fields["dct"], expected, expected, count)
    crops = None if fields["crops"] is None else _parse_crops(fields["crops"], bits)
    return dct, crops


def _parse_dct(dct: Any, decision: Any, expected: str, count: int) -> DctSignal:
    """The `dct` map of a payload whose `decision` must be `expected`; the hashes' length is checked before
    use."""
    if decision != expected:
        raise BundleFormatError(f"bundle decision must be {expected!r}, got {decision!r}")
    if not isinstance(dct, dict):
        raise BundleFormatError("bundle dct must be a map")
    _check_keys("bundle dct", dct, DCT_KEYS)
    algorithm, blob = dct["algorithm"], dct["hashes"]
    if algorithm != dcthash.ALGORITHM:  # before the width, which the algorithm defines
        raise BundleFormatError(f"unknown DCT hash algorithm {algorithm!r}; this vetohash computes "
                                f"{dcthash.ALGORITHM!r}")
    if not isinstance(blob, bytes):
        raise BundleFormatError("bundle dct hashes must be binary")
    if len(blob) != count * dcthash.HASH_BYTES:
        raise BundleContentError(f"bundle DCT hashes hold {len(blob)} bytes; {count} ids of "
                                 f"{dcthash.HASH_BYTES}-byte hashes need {count * dcthash.HASH_BYTES}")
    hashes = np.frombuffer(blob, dtype=np.uint8).reshape(count, dcthash.HASH_BYTES)
    return DctSignal(hashes=hashes, threshold=dct["threshold"], algorithm=algorithm)


def _parse_crops(crops: Any, bits: int) -> CropSignal:
    """The `crops` map of a version 3 payload; both blobs' lengths are checked against each other before use
    (owners against the ids when the Bundle is built)."""
    if not isinstance(crops, dict):
        raise BundleFormatError("bundle crops must be a map")
    _check_keys("bundle crops", crops, CROPS_KEYS)
    blob, owners = crops["hashes"], crops["owners"]
    if not isinstance(blob, bytes) or not isinstance(owners, bytes):
        raise BundleFormatError("bundle crop hashes and owners must be binary")
    if len(owners) % OWNER_BYTES:
        raise BundleContentError(f"bundle crop owners hold {len(owners)} bytes, not a multiple of {OWNER_BYTES}")
    count, width = len(owners) // OWNER_BYTES, (bits + 7) // 8
    if len(blob) != count * width:
        raise BundleContentError(f"bundle crop hashes hold {len(blob)} bytes; {count} owners of {width}-byte "
                                 f"hashes need {count * width}")
    return CropSignal(hashes=np.frombuffer(blob, dtype=np.uint8).reshape(count, width),
                      owners=np.frombuffer(owners, dtype="<u4").astype(np.int64), threshold=crops["threshold"])


def _unpack_canonical(data: bytes, what: str, *, max_str: int, max_items: int) -> Any:
    """Bounded msgpack decode that also refuses any non-canonical encoding (which includes duplicate map
    keys, on which parsers in other languages could disagree about what was signed)."""
    try:
        value = codec.unpack(data, max_bin=MAX_BUNDLE_BYTES, max_str=max_str, max_items=max_items)
        canonical = codec.pack(value)  # TypeError: a map mixing str and bin keys cannot be sorted
    except _UNPACK_ERRORS:
        raise BundleFormatError(f"{what} is not well-formed msgpack (truncated, damaged or over a limit)") from None
    if canonical != data:
        raise BundleFormatError(f"{what} is not canonically encoded")
    return value


def _check_keys(what: str, mapping: Mapping[str, Any], keys: frozenset[str]) -> None:
    if set(mapping) != keys:
        missing, unexpected = sorted(keys - set(mapping)), sorted(map(repr, set(mapping) - keys))
        raise BundleFormatError(f"{what} keys are wrong: missing {missing}, unexpected [{', '.join(unexpected)}]")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    # bool is an int subclass and would slip through isinstance
    if type(value) is not int or not low <= value <= high:
        raise BundleFormatError(f"bundle {name} must be an integer in [{low}, {high}], got {value!r}")


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
