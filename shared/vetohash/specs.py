"""Model specs: the declarative description of a hasher that travels inside model files and bundles.

A spec pins everything that decides a hash: the architecture and its parameters, the preprocessing, and the
hash width. Two machines holding the same spec and weights compute the same hash for the same image bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .architectures import Shape, weight_shapes
from .errors import SpecError
from .preprocess import Preprocess

if TYPE_CHECKING:
    from torch import nn

SPEC_KEYS = frozenset({"name", "arch", "preprocess", "bits"})
MAX_BITS = 1024


@dataclass(frozen=True)
class ModelSpec:
    """A named hasher description: architecture parameters, preprocessing, and hash width in bits.

    Bit k of a hash is 1 where embedding value k is > 0 (the paper's sign rule).
    """

    name: str
    arch: Mapping[str, Any]
    preprocess: Preprocess
    bits: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Validate a plain mapping (as found in a bundle) and build the spec; raise SpecError on any flaw."""
        if not isinstance(data, Mapping) or set(data) != SPEC_KEYS:
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise SpecError(f"a model spec needs exactly the keys {sorted(SPEC_KEYS)}, got {got}")
        name, arch, bits = data["name"], data["arch"], data["bits"]
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            raise SpecError("spec name must be a string of 1 to 64 characters")
        if not isinstance(arch, Mapping) or not all(isinstance(k, str) for k in arch):
            raise SpecError("spec 'arch' must be a mapping with string keys")
        if type(bits) is not int or not 8 <= bits <= MAX_BITS or bits % 8:
            raise SpecError(f"spec 'bits' must be a multiple of 8 in [8, {MAX_BITS}], got {bits!r}")
        spec = cls(name=name, arch=dict(arch), preprocess=Preprocess.from_dict(data["preprocess"]), bits=bits)
        spec.weight_shapes()  # validates the architecture parameters
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The plain, msgpack-ready form of this spec."""
        return {"name": self.name, "arch": dict(self.arch), "preprocess": self.preprocess.to_dict(),
                "bits": self.bits}

    def weight_shapes(self) -> dict[str, Shape]:
        """The dtype and shape of every weight this spec's network holds, by name (no network is built)."""
        return weight_shapes(self.arch, self.preprocess.channels, self.bits)

    def build(self) -> nn.Module:
        """A freshly initialised torch network for this spec (seed torch first for reproducible weights)."""
        from .networks import build_network  # torch is imported only by what trains or runs torch

        return build_network(self.arch, self.preprocess.channels, self.bits)

    @property
    def hash_bytes(self) -> int:
        """Bytes in one packed hash."""
        return self.bits // 8


def _paper(pool: str) -> ModelSpec:
    return ModelSpec(
        name="paper-cnn" if pool == "max" else "paper-cnn-avg",
        arch={"type": "paper-cnn", "filters": 64, "kernel": 2, "pool": pool, "dropout": 0.25},
        preprocess=Preprocess(mode="L", size=32, resample="bilinear", mean=(0.5,), std=(0.5,)),
        bits=128,
    )


COPY_CNN = ModelSpec(
    name="copy-cnn",
    arch={"type": "copy-cnn", "width": 16, "stages": 4, "mirror": True},
    preprocess=Preprocess(mode="RGB", size=64, resample="bilinear", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
    bits=256,
)

PRESETS: dict[str, ModelSpec] = {
    # The paper's network as its model summary (Fig. 6) ran it: max pooling.
    "paper-cnn": _paper("max"),
    # The paper's text describes average pooling; kept selectable.
    "paper-cnn-avg": _paper("avg"),
    # vetohash's copy detector: colour, 64 px, mirror-invariant, 256 balanced bits (docs/benchmarks.md).
    "copy-cnn": COPY_CNN,
}


def preset(name: str) -> ModelSpec:
    """The named preset spec; SpecError lists the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
