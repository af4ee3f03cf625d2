"""A seeded corpus of hostile bundles and images, each named after what it attacks (tests/hostile/).

Everything here is deterministic (a fixed key, fixed times, formula weights, Ed25519's deterministic
signatures), so `python -m tests.hostile_corpus` rewrites the committed files byte for byte and a test holds
them to it. The same valid seeds feed benchmarks/fuzz.py.
"""

from __future__ import annotations

import io
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from vetohash import codec
from vetohash.bundle import Bundle, Calibration, CropSignal, DctSignal, sign_bundle
from vetohash.keys import public_key_of
from vetohash.preprocess import Preprocess
from vetohash.specs import ModelSpec
from vetohash.weights import encode_arrays

CORPUS = Path(__file__).parent / "hostile"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = public_key_of(KEY)
TRUSTED = {PUB.key_id: PUB}
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
CREATED, EXPIRES, NOW = 1_700_000_000, 1_800_000_000, 1_750_000_000
# The paper's architecture at its smallest: a bundle of about 1 KB, cheap to mutate ten thousand times.
TINY = ModelSpec(name="tiny", arch={"type": "paper-cnn", "filters": 2, "kernel": 2, "pool": "max", "dropout": 0.0},
                 preprocess=Preprocess(mode="L", size=8, resample="bilinear", mean=(0.5,), std=(0.5,)), bits=16)


def seed_bundle(version: int = 1) -> bytes:
    """A valid signed tiny bundle of format `version` (1: network hashes; 2: and DCT; 3: and crop hashes; 6: and
    a calibration with its bound and agreement thresholds)."""
    shapes = TINY.weight_shapes()
    weights = encode_arrays({name: (((np.arange(int(np.prod(shape))) % 17) - 8) / 16).astype(dtype).reshape(shape)
                             for name, (dtype, shape) in shapes.items()})
    hashes = (np.arange(3 * TINY.hash_bytes) * 37 % 256).astype(np.uint8).reshape(3, TINY.hash_bytes)
    dct = DctSignal(np.full((3, 32), 0x5A, np.uint8), 90) if version >= 2 else None
    crops = CropSignal(hashes[[0, 0, 1, 2]] ^ 1, np.array([0, 0, 1, 2], np.int64), 3) if version >= 3 else None
    calibration = agree = None
    if version == 6:
        calibration = Calibration(target_fpr=0.01, measured_fpr=0.0, innocent_images=100, bound_fpr=0.0099,
                                  confidence=0.9, innocent_groups=8)
        agree = {"network": 5, "crops": 6, "dct": 120}
    bundle = Bundle(spec=TINY, weights=weights, hashes=hashes, ids=("alpha", "beta", "gamma"), threshold=2,
                    authority="Corpus Authority", key_id=PUB.key_id, list_name="corpus", sequence=7,
                    created=CREATED, expires=EXPIRES, calibration=calibration, dct=dct, crops=crops, agree=agree)
    return sign_bundle(bundle, KEY)


def seal(payload: bytes, version: int = 1, key: Ed25519PrivateKey = KEY) -> bytes:
    """An envelope around `payload`, properly signed: what a hostile holder of a trusted key can send."""
    signed = f"vetohash-bundle-v{version}".encode() + b"\0" + struct.pack("<Q", len(payload)) + payload
    return codec.pack({"format": "vetohash-bundle", "version": version, "key_id": public_key_of(key).key_id,
                       "payload": payload, "signature": key.sign(signed)})


def payload_of(data: bytes) -> dict[str, Any]:
    """The plain payload map of envelope bytes (no checks)."""
    return msgpack.unpackb(msgpack.unpackb(data)["payload"])


def _resigned(edit: Callable[[dict[str, Any]], object], version: int = 1) -> Callable[[], bytes]:
    def make() -> bytes:
        fields = payload_of(seed_bundle(version))
        edit(fields)
        return seal(codec.pack(fields), version)
    return make


def _raw_field(name: str, raw: bytes) -> Callable[[], bytes]:
    """A signed payload whose field `name` is hand-written msgpack `raw`."""
    def make() -> bytes:
        marker = "\x7f" * 40
        packed = codec.pack(payload_of(seed_bundle()) | {name: marker})
        return seal(packed.replace(codec.pack(marker), raw))
    return make


def _flip(position: int) -> Callable[[], bytes]:
    def make() -> bytes:
        data = bytearray(seed_bundle())
        data[position % len(data)] ^= 0x01
        return bytes(data)
    return make


BUNDLES: dict[str, Callable[[], bytes]] = {
    "empty.vhb": lambda: b"",
    "arrays-nested-600-deep.vhb": lambda: b"\x91" * 600 + b"\xc0",
    "arrays-nested-1023-deep.vhb": lambda: b"\x91" * 1023 + b"\xc0",
    "maps-nested-900-deep-in-envelope.vhb": lambda: b"\x81\xa6format" + b"\x81\xa1a" * 900 + b"\xc0",
    "map-header-declaring-4g-entries.vhb": lambda: b"\xdf\xff\xff\xff\xff",
    "bin-header-declaring-4gib.vhb": lambda: b"\x85\xa7payload\xc6\xff\xff\xff\xff",
    "extension-type-timestamp.vhb": lambda: b"\xd6\xff\x00\x00\x00\x00",
    "integer-map-key.vhb": lambda: b"\x81\x01\x02",
    "truncated-in-half.vhb": lambda: seed_bundle()[: len(seed_bundle()) // 2],
    "signature-bit-flipped.vhb": _flip(-3),
    "payload-bit-flipped.vhb": _flip(200),
    "keys-out-of-canonical-order.vhb": lambda: msgpack.packb(dict(reversed(list(msgpack.unpackb(
        seed_bundle()).items()))), use_bin_type=True),
    "signed-by-an-untrusted-key.vhb": lambda: seal(msgpack.unpackb(seed_bundle())["payload"], key=OTHER_KEY),
    "unknown-version-99.vhb": lambda: codec.pack(msgpack.unpackb(seed_bundle()) | {"version": 99}),
    "signed-ids-array-declaring-4g.vhb": _raw_field("ids", b"\xdd\xff\xff\xff\xff"),
    "signed-weights-map-declaring-4g.vhb": _raw_field("weights", b"\xdf\xff\xff\xff\xff"),
    "signed-payload-nested-700-deep.vhb": _raw_field("authority", b"\x91" * 700 + b"\xc0"),
    "signed-absurd-spec-copy-cnn-128x5.vhb": _resigned(lambda f: f["spec"].update(
        arch={"type": "copy-cnn", "width": 128, "stages": 5, "mirror": False})),
    "signed-weights-with-nan.vhb": _resigned(lambda f: f["weights"]["1.bias"].update(
        data=np.full(2, np.nan, "<f4").tobytes())),
    "signed-weight-shape-transposed.vhb": _resigned(lambda f: f["weights"]["1.weight"].update(
        shape=list(reversed(f["weights"]["1.weight"]["shape"])))),
    "signed-duplicate-ids.vhb": _resigned(lambda f: f.update(ids=["alpha", "alpha", "gamma"])),
    "signed-hashes-one-byte-short.vhb": _resigned(lambda f: f.update(hashes=f["hashes"][:-1])),
    "signed-threshold-is-a-bool.vhb": _resigned(lambda f: f.update(threshold=True)),
    "signed-expired.vhb": _resigned(lambda f: f.update(expires=NOW - 1)),
    "signed-created-in-the-future.vhb": _resigned(lambda f: f.update(created=NOW + 3600)),
    "signed-payload-version-differs.vhb": _resigned(lambda f: f.update(version=2)),
    "signed-crop-owner-out-of-range.vhb": _resigned(lambda f: f["crops"].update(
        owners=np.array([0, 0, 1, 9], "<u4").tobytes()), version=3),
    "signed-dct-algorithm-unknown.vhb": _resigned(lambda f: f["dct"].update(algorithm="md5"), version=2),
}


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def seed_images() -> dict[str, bytes]:
    """Small valid images, one per format the reader accepts, with some texture for the decoders to chew."""
    rng = np.random.default_rng(16)
    base = Image.fromarray(np.kron(rng.integers(0, 255, (8, 12, 3), np.uint8), np.ones((6, 6, 1), np.uint8)))
    return {"seed.png": _encode(base, "PNG"), "seed.jpg": _encode(base, "JPEG", quality=80),
            "seed.gif": _encode(base.convert("P"), "GIF"), "seed.bmp": _encode(base, "BMP"),
            "seed.tif": _encode(base, "TIFF", compression="tiff_lzw"), "seed.webp": _encode(base, "WEBP"),
            "seed-rgba.png": _encode(base.convert("RGBA"), "PNG"),
            "seed-16bit.png": _encode(Image.fromarray(np.arange(48 * 72, dtype=np.uint16).reshape(48, 72) * 7),
                                      "PNG")}


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import zlib
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + (_png_chunk(b"IDAT", idat) if idat else b"")
            + _png_chunk(b"IEND", b""))


def _zlib_bomb() -> bytes:
    import zlib
    return zlib.compress(b"\0" * (20_001 * 3 * 200), 9)  # 200 rows of a 20000x20000 image, 12 MB inflated


def _damaged_exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "x" * 200
    return _encode(Image.new("RGB", (40, 20), (90, 40, 20)), "JPEG", exif=exif.tobytes()[:-100])


IMAGES: dict[str, Callable[[], bytes]] = {
    "zero-bytes.png": lambda: b"",
    "jpeg-truncated-in-half.jpg": lambda: seed_images()["seed.jpg"][: len(seed_images()["seed.jpg"]) // 2],
    "png-bad-crc.png": lambda: seed_images()["seed.png"][:-5] + b"\0" + seed_images()["seed.png"][-4:],
    "png-declaring-100000x100000-pixels.png": lambda: _png_declaring(100_000, 100_000),
    "png-zlib-bomb-20000x20000.png": lambda: _png_declaring(20_000, 20_000, _zlib_bomb()),
    "png-declaring-zero-width.png": lambda: _png_declaring(0, 10),
    "gif-header-only.gif": lambda: seed_images()["seed.gif"][:13],
    "bmp-header-lies-about-size.bmp": lambda: seed_images()["seed.bmp"][:18] + struct.pack("<ii", 30_000, -30_000)
    + seed_images()["seed.bmp"][26:],
    "tiff-offset-past-the-end.tif": lambda: b"II*\0" + struct.pack("<I", 0xFFFFFF00),
    "webp-truncated.webp": lambda: seed_images()["seed.webp"][:40],
    "eps-named-png.png": lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    "jpeg-exif-tag-past-the-end.jpg": _damaged_exif_jpeg,
    "text-named-jpg.jpg": lambda: b"this is not an image at all\n" * 4,
}


def write() -> None:
    """Write every corpus file under CORPUS."""
    for folder, cases in (("bundles", BUNDLES), ("images", IMAGES)):
        (CORPUS / folder).mkdir(parents=True, exist_ok=True)
        for name, make in cases.items():
            (CORPUS / folder / name).write_bytes(make())


if __name__ == "__main__":
    write()
    sys.exit(0)
