"""Helpers shared by the platform tests: images, hashes, hand-made bundles, the console script."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from vetohash import codec
from vetohash.bundle import FORMAT_NAME, FORMAT_VERSION, pae
from vetohash.dcthash import dct_hashes
from vetohash.hasher import Hasher
from vetohash.preprocess import open_image

# With seed 0 and the centring in conftest's `hasher`, JPEG re-encodes of the banned images land at most
# 6 bits from their originals and unrelated images at least 12 bits from any banned one (checked there).
SEED = 0
THRESHOLD = 9


@dataclass(frozen=True)
class Result:
    """A finished `platform` run."""

    code: int
    stdout: str
    stderr: str


def photo_like(seed: int, size: int = 96) -> Image.Image:
    """Smooth random colour structure: enough texture for distinct hashes, unlike white noise."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(size // 8, size // 8, 3))
    return Image.fromarray(np.uint8(np.clip(base * 60 + 128, 0, 255))).resize((size, size), Image.BICUBIC)


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" and not options else options))
    return out.getvalue()


def hash_files(hasher: Hasher, paths: Sequence[Path]) -> np.ndarray:
    """Packed hashes of image files, computed directly with the shared library."""
    return hasher.hash_images([open_image(path) for path in paths])


def dct_of(*paths: Path) -> np.ndarray:
    """DCT hashes of image files, computed directly with the shared library."""
    return dct_hashes([open_image(path) for path in paths])


def distance(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.bitwise_count(np.bitwise_xor(a, b)).sum())


def records(output: str) -> list[dict]:
    """JSON Lines output -> one dict a line."""
    return [json.loads(line) for line in output.splitlines()]


def resign(data: bytes, key: Ed25519PrivateKey, edit: Callable[[dict[str, object]], None]) -> bytes:
    """Unpack a bundle's payload, let `edit` change it, and sign the result properly with `key`.

    This is how a hostile (or buggy) authority would build a bundle that `Bundle` itself refuses to create.
    """
    envelope = codec.unpack(data, max_bin=len(data))
    payload = codec.unpack(envelope["payload"], max_bin=len(data))
    edit(payload)
    packed = codec.pack(payload)
    return codec.pack({"format": FORMAT_NAME, "version": FORMAT_VERSION, "key_id": envelope["key_id"],
                       "payload": packed, "signature": key.sign(pae(packed))})


def file_digest(path: Path) -> str:
    """SHA-256 of a file, to show a database is byte for byte unchanged."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def console_script() -> list[str]:
    """The installed `platform` script beside this Python, as a user runs it."""
    script = Path(sys.executable).parent / "platform"
    if not script.exists():
        pytest.skip("the console script is not installed next to this Python")
    return [str(script)]
