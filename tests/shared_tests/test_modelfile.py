"""Model files: a trained hasher survives a write and read exactly; anything else is one ModelFileError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vetohash import codec
from vetohash import modelfile as modelfile_module
from vetohash.errors import ModelFileError
from vetohash.hasher import Hasher
from vetohash.modelfile import read_model, write_model
from vetohash.preprocess import Preprocess
from vetohash.specs import PRESETS, ModelSpec

TINY = ModelSpec(name="tiny", arch={"type": "paper-cnn", "filters": 2, "kernel": 2, "pool": "max", "dropout": 0.0},
                 preprocess=Preprocess(mode="L", size=8, resample="bilinear", mean=(0.5,), std=(0.5,)), bits=16)
META = {"epochs": 3, "loss": 0.25, "note": "test", "history": [1.0, 0.5]}


def seeded_hasher(spec: ModelSpec) -> Hasher:
    """Reproducible random weights, without disturbing the global torch RNG other tests may rely on."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return Hasher(spec, spec.build())


def model_bytes(**changes: Any) -> bytes:
    hasher = seeded_hasher(TINY)
    model = {"format": "vetohash-model", "version": 1, "spec": TINY.to_dict(),
             "weights": hasher.encoded_weights(), "meta": META}
    return codec.pack(model | changes)


def test_round_trip_hashes_equal(tmp_path: Path) -> None:
    """A written paper-cnn model reads back with the same spec and metadata and hashes identically."""
    hasher = seeded_hasher(PRESETS["paper-cnn"])
    path = tmp_path / "model.vhm"
    write_model(path, hasher, META)
    read, meta = read_model(path)
    assert read.spec == hasher.spec and meta == META
    batch = np.random.default_rng(0).standard_normal((8, 1, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(read.hash_arrays(batch), hasher.hash_arrays(batch))
    np.testing.assert_array_equal(read.embed(batch), hasher.embed(batch))


def test_write_is_atomic_and_replaces(tmp_path: Path) -> None:
    """Writing over an existing model replaces it whole and leaves no temporary file behind."""
    path = tmp_path / "model.vhm"
    path.write_bytes(b"old")
    write_model(path, seeded_hasher(TINY), {"v": 2})
    assert read_model(path)[1] == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["model.vhm"]


def test_unwritable_location_is_a_model_file_error(tmp_path: Path) -> None:
    """Writing into a folder that does not exist is a ModelFileError naming the path."""
    with pytest.raises(ModelFileError, match="cannot write"):
        write_model(tmp_path / "missing" / "model.vhm", seeded_hasher(TINY), {})


@pytest.mark.parametrize(("data", "message"), [
    (b"", "not a vetohash model file"),
    (b"\x80\x04\x95pickle", "not a vetohash model file"),
    (b"\x00" * 100, "not a vetohash model file"),
    (codec.pack([1, 2, 3]), "not a vetohash model file"),
    (model_bytes(format="vetohash-bundle"), "not a vetohash model file"),
    (model_bytes(version=2), "version 2"),
    (model_bytes(extra=1), "keys"),
    (model_bytes(meta=[1]), "metadata"),
    (model_bytes(spec={"name": "x"}), "spec"),
    (model_bytes(spec=TINY.to_dict() | {"bits": 32}), "weights do not match"),
    (model_bytes(weights={}), "missing"),
    (model_bytes() + b"\x00", "not a vetohash model file"),
])
def test_garbage_model_files_are_refused(tmp_path: Path, data: bytes, message: str) -> None:
    """Non-msgpack, pickles, other formats, unknown versions, bad specs and bad weights are ModelFileError."""
    path = tmp_path / "bad.vhm"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match=message):
        read_model(path)


def test_every_truncation_is_refused(tmp_path: Path) -> None:
    """Every proper prefix of a model file is refused with ModelFileError."""
    data = model_bytes()
    path = tmp_path / "cut.vhm"
    for n in range(len(data)):
        path.write_bytes(data[:n])
        with pytest.raises(ModelFileError):
            read_model(path)


def test_missing_folder_and_oversized_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing path, a folder, and a file over MAX_MODEL_BYTES are each a ModelFileError."""
    with pytest.raises(ModelFileError, match="no such model file"):
        read_model(tmp_path / "missing.vhm")
    with pytest.raises(ModelFileError, match="a folder, not a regular file"):
        read_model(tmp_path)
    path = tmp_path / "model.vhm"
    path.write_bytes(model_bytes())
    monkeypatch.setattr(modelfile_module, "MAX_MODEL_BYTES", path.stat().st_size - 1)
    with pytest.raises(ModelFileError, match="over the .*-byte limit for model files"):
        read_model(path)
