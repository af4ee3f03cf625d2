"""The authority and the platform hash the same image files to the same bits, decoding reduced included.

The authority publishes the hashes `authority publish` computes for its images (vetohash_authority.sources:
decoded as the model's spec says, then the hashing engine); the platform, screening the same files, must find
each one at distance 0, for the network's hash and for the DCT hash, whatever the file's size and format.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vetohash.bundle import Bundle, DctSignal, sign_bundle
from vetohash.keys import generate_private_key, public_key_of
from vetohash.modelfile import read_model
from vetohash_authority.listfit import BASE_MODEL, ListFitConfig
from vetohash_authority.sources import read_sources
from vetohash_platform.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def photo(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(height // 64 + 2, width // 64 + 2, 3))
    return Image.fromarray(np.uint8(np.clip(base * 60 + 128, 0, 255))).resize((width, height), Image.BICUBIC)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """A 6 MP and a 1.5 MP JPEG (decoded at 1/8 and 1/4), a 1 MP PNG (box-reduced by 2), a 128 px example."""
    out = []
    for name, image, fmt in [("large.jpg", photo(3000, 2000, 1), "JPEG"), ("medium.jpg", photo(1500, 1100, 2), "JPEG"),
                             ("wide.png", photo(1300, 700, 3), "PNG")]:
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        (tmp_path / name).write_bytes(buffer.getvalue())
        out.append(tmp_path / name)
    return out + [ROOT / "examples" / "banned" / "banned-000.jpg"]


def run(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return result.output


def test_the_platform_finds_every_image_the_authority_hashed_at_distance_zero(files, tmp_path, monkeypatch):
    monkeypatch.setenv("VETOHASH_DB", str(tmp_path / "platform.db"))
    base, _ = read_model(BASE_MODEL)
    config = ListFitConfig()
    pre = dataclasses.replace(base.spec.preprocess, trim=config.trim, upright=config.upright, draft=config.draft)
    hasher = type(base).from_arrays(dataclasses.replace(base.spec, preprocess=pre), base.arrays())
    sources = read_sources(files, pre)
    key = generate_private_key()
    now = int(time.time())
    bundle = Bundle(spec=hasher.spec, weights=hasher.encoded_weights(),
                    hashes=hasher.hash_arrays(np.stack([source.array for source in sources])),
                    ids=tuple(f"h{i}" for i in range(len(sources))), threshold=1, authority="Parity",
                    key_id=public_key_of(key).key_id, list_name="parity", sequence=1, created=now - 60,
                    expires=now + 3600, dct=DctSignal(hashes=np.stack([source.dct for source in sources]),
                                                      threshold=1))
    (tmp_path / "list.vhb").write_bytes(sign_bundle(bundle, key))
    (tmp_path / "key.pub").write_text(public_key_of(key).to_text())
    run("trust", "add", tmp_path / "key.pub", "--name", "parity")
    run("ingest", tmp_path / "list.vhb")
    records = [json.loads(line) for line in run("screen", "--json", "--no-progress", *files).splitlines()]
    assert [(r["path"], r["results"][0]["distance"], r["results"][0]["dct_distance"]) for r in records] == \
           [(str(path), 0, 0) for path in files]
