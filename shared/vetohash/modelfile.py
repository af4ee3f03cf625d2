"""The authority's trained model file: spec, weights and free-form metadata in one msgpack map.

It is local and unsigned, but still parsed as hostile input (bounded msgpack, strict weights, never pickle):
a model file is easily swapped, downloaded or truncated, and a bad one must fail with one clear line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack

from . import codec
from .errors import ModelFileError, SpecError, WeightsError
from .files import read_bounded, write_atomic
from .hasher import Hasher
from .specs import ModelSpec

FORMAT_NAME = "vetohash-model"
FORMAT_VERSION = 1
MAX_MODEL_BYTES = 1024 * 1024 * 1024
MODEL_KEYS = frozenset({"format", "version", "spec", "weights", "meta"})


def write_model(path: Path, hasher: Hasher, meta: Mapping[str, Any]) -> None:
    """Write the model file atomically (vetohash.files.write_atomic)."""
    data = codec.pack({"format": FORMAT_NAME, "version": FORMAT_VERSION, "spec": hasher.spec.to_dict(),
                       "weights": hasher.encoded_weights(), "meta": dict(meta)})
    write_atomic(path, data, ModelFileError)


def read_model(path: Path) -> tuple[Hasher, dict[str, Any]]:
    """Load a model file into a ready Hasher and its metadata; any flaw is one ModelFileError."""
    data = read_bounded(path, MAX_MODEL_BYTES, "model file", ModelFileError)
    try:
        model = codec.unpack(data, max_bin=MAX_MODEL_BYTES, max_str=1 << 20, max_items=len(data))
    except (ValueError, TypeError, msgpack.UnpackException):
        raise ModelFileError(f"{path} is not a vetohash model file (not msgpack, or truncated)") from None
    if not isinstance(model, dict) or model.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not a vetohash model file")
    version = model.get("version")
    if version != FORMAT_VERSION or type(version) is not int:
        raise ModelFileError(f"{path} is model file version {version!r}; this vetohash reads version "
                             f"{FORMAT_VERSION}")
    if set(model) != MODEL_KEYS:
        raise ModelFileError(f"{path} is not a vetohash model file: keys {sorted(map(repr, model))}, expected "
                             f"{sorted(MODEL_KEYS)}")
    meta = model["meta"]
    if not isinstance(meta, dict) or not all(isinstance(key, str) for key in meta):
        raise ModelFileError(f"{path}: model metadata must be a map with string keys")
    try:
        hasher = Hasher.from_encoded(ModelSpec.from_dict(model["spec"]), model["weights"])
    except (SpecError, WeightsError) as error:
        raise ModelFileError(f"{path}: {error}") from None
    return hasher, meta
