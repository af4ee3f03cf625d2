"""Fixtures for the platform: an isolated database, a small hasher, real signed bundles, images to screen.

Every test runs with HOME, XDG_DATA_HOME and VETOHASH_DB pointing into its own temp folder, so the real
per-user database is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vetohash.bundle import Bundle, Calibration, sign_bundle
from vetohash.hasher import Hasher
from vetohash.keys import generate_private_key, public_key_of
from vetohash.preprocess import open_image, to_array
from vetohash.specs import PRESETS
from vetohash_platform.cli import main

from .helpers import SEED, THRESHOLD, Result, distance, encode, hash_files, photo_like


@pytest.fixture(scope="session")
def hasher() -> Hasher:
    """A random-weights paper-cnn whose last layer is centred on photo-like images.

    Untrained, the network's global average pooling of ReLU outputs makes every embedding nearly the same
    vector, so all images hash within a few bits of each other. Subtracting the mean embedding of a
    calibration set from the last bias makes the bits say how an image differs from the average.
    """
    torch.manual_seed(SEED)
    spec = PRESETS["paper-cnn"]
    network = spec.build()
    calibration = np.stack([to_array(photo_like(1000 + i), spec.preprocess) for i in range(64)])
    with torch.no_grad():
        network[-1].bias -= torch.from_numpy(Hasher(spec, network).embed(calibration).mean(axis=0))
    return Hasher(spec, network)


@pytest.fixture(scope="session")
def key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.fixture(scope="session")
def other_key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """banned-0..3.jpg (in the banned list), copies re-encoded as JPEG q85 and PNG, unrelated-0..3.jpg."""
    folder = tmp_path_factory.mktemp("images")
    out = {}
    for i in range(4):
        banned = photo_like(i)
        out[f"banned-{i}"] = folder / f"banned-{i}.jpg"
        out[f"banned-{i}"].write_bytes(encode(banned))
        decoded = open_image(out[f"banned-{i}"])
        out[f"recompressed-{i}"] = folder / "copies" / f"recompressed-{i}.jpg"
        out[f"recompressed-{i}"].parent.mkdir(exist_ok=True)
        out[f"recompressed-{i}"].write_bytes(encode(decoded, "JPEG", quality=85))
        out[f"png-{i}"] = folder / "copies" / f"png-{i}.png"
        out[f"png-{i}"].write_bytes(encode(decoded, "PNG"))
        out[f"unrelated-{i}"] = folder / "unrelated" / f"unrelated-{i}.jpg"
        out[f"unrelated-{i}"].parent.mkdir(exist_ok=True)
        out[f"unrelated-{i}"].write_bytes(encode(photo_like(100 + i)))
    return out


@pytest.fixture(scope="session")
def banned_hashes(hasher: Hasher, images: dict[str, Path]) -> np.ndarray:
    hashes = hash_files(hasher, [images[f"banned-{i}"] for i in range(4)])
    unrelated = hash_files(hasher, [images[f"unrelated-{i}"] for i in range(4)])
    copies = hash_files(hasher, [images[f"recompressed-{i}"] for i in range(4)])
    nearest_unrelated = min(distance(u, b) for u in unrelated for b in hashes)
    farthest_copy = max(distance(c, b) for c, b in zip(copies, hashes, strict=True))
    # The fixtures' premise; if a library change breaks it, the screening tests would mislead.
    assert farthest_copy < THRESHOLD <= nearest_unrelated, (farthest_copy, nearest_unrelated)
    return hashes


BundleFactory = Callable[..., bytes]


@pytest.fixture(scope="session")
def make_bundle(hasher: Hasher, banned_hashes: np.ndarray, key: Ed25519PrivateKey) -> BundleFactory:
    """Signed bundle bytes for the banned images; keyword arguments override Bundle fields."""

    def make(signer: Ed25519PrivateKey = key, **fields: object) -> bytes:
        now = int(time.time())
        values: dict[str, object] = dict(
            spec=hasher.spec, weights=hasher.encoded_weights(), hashes=banned_hashes,
            ids=tuple(f"b-{i:03d}" for i in range(len(banned_hashes))), threshold=THRESHOLD,
            authority="Test Authority", key_id=public_key_of(signer).key_id, list_name="test-list",
            sequence=1, created=now - 60, expires=now + 86_400,
            calibration=Calibration(target_fpr=0.001, measured_fpr=0.0005, innocent_images=2000))
        values.update(fields)
        return sign_bundle(Bundle(**values), signer)  # type: ignore[arg-type]

    return make


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME, XDG_DATA_HOME and VETOHASH_DB inside the test's temp folder; returns the database path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / "data"))
    monkeypatch.setenv("VETOHASH_DB", str(tmp_path / "platform.db"))
    monkeypatch.delenv("VETOHASH_DEBUG", raising=False)
    return tmp_path / "platform.db"


@pytest.fixture
def db(isolated_home: Path) -> Path:
    return isolated_home


@pytest.fixture
def platform() -> Callable[..., Result]:
    """Run `platform ARGS...` in this process through the real entry point (`main`), as the console script does."""

    def invoke(*args: object, input: bytes | str | None = None) -> Result:
        runner = CliRunner()
        with runner.isolation(input=input) as (stdout, stderr, _):
            try:
                main([str(arg) for arg in args])
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            return Result(code, stdout.getvalue().decode(), stderr.getvalue().decode())

    return invoke


@pytest.fixture
def pubkey_file(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    path = tmp_path / "authority.pub"
    path.write_text(public_key_of(key).to_text() + "\n")
    return path


@pytest.fixture
def active(platform, pubkey_file: Path, make_bundle, tmp_path: Path) -> Path:
    """A trusted key and one ingested bundle whose banned list is banned-0..3."""
    assert platform("trust", "add", pubkey_file, "--name", "acme").code == 0
    bundle = tmp_path / "list.vhb"
    bundle.write_bytes(make_bundle(sequence=7))
    assert platform("ingest", bundle).code == 0
    return bundle
