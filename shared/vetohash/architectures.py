"""Registry of network architectures: each one's parameters checked, and its weights' names and shapes,
from the plain values a spec carries, without building a network.

A spec names its architecture by `type`. Parsing a spec or a bundle needs only this module (no torch, no
inference engine): the parameters are validated and the weights checked against the shapes listed here.
Running the network is a separate step: vetohash.networks builds the torch module (training, and hashing
where ONNX Runtime is not installed) and vetohash.graphs the equivalent ONNX graph (hashing).
Adding an architecture means registering it here and in those two modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SpecError

# A weight's little-endian dtype string and shape.
Shape = tuple[str, tuple[int, ...]]
Shapes = Callable[[Mapping[str, Any], int, int], dict[str, Shape]]


@dataclass(frozen=True)
class Architecture:
    """An architecture's exact parameter names (besides `type`) and the function listing its weights."""

    keys: frozenset[str]
    shapes: Shapes


ARCHITECTURES: dict[str, Architecture] = {}


def register(name: str, keys: set[str]) -> Callable[[Shapes], Shapes]:
    """Register `shapes` under `name`; `keys` is the exact parameter set it accepts besides `type`. The
    function validates the parameters (SpecError) and returns every weight's dtype and shape by name."""

    def wrap(shapes: Shapes) -> Shapes:
        ARCHITECTURES[name] = Architecture(frozenset(keys), shapes)
        return shapes

    return wrap


def weight_shapes(arch: Mapping[str, Any], channels: int, bits: int) -> dict[str, Shape]:
    """The weights the described network holds, by state-dict name, after checking its parameters."""
    kind = arch.get("type")
    if not isinstance(kind, str) or kind not in ARCHITECTURES:
        raise SpecError(f"unknown architecture type {kind!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    known = ARCHITECTURES[kind]
    given = set(arch) - {"type"}
    if given != known.keys:
        missing, extra = sorted(known.keys - given), sorted(given - known.keys)
        raise SpecError(f"architecture {kind!r}: missing parameters {missing}, unexpected {extra}")
    return known.shapes(arch, channels, bits)


def param_int(arch: Mapping[str, Any], key: str, low: int, high: int) -> int:
    """An integer parameter within [low, high]; bool is refused because it is an int subclass."""
    value = arch[key]
    if type(value) is not int or not low <= value <= high:
        raise SpecError(f"architecture parameter {key!r} must be an integer in [{low}, {high}], got {value!r}")
    return value


def param_float(arch: Mapping[str, Any], key: str, low: float, high: float) -> float:
    """A finite float parameter within [low, high]."""
    value = arch[key]
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
        raise SpecError(f"architecture parameter {key!r} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def param_choice(arch: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    """A string parameter from a fixed set."""
    value = arch[key]
    if value not in choices:
        raise SpecError(f"architecture parameter {key!r} must be one of {choices}, got {value!r}")
    return str(value)


def param_bool(arch: Mapping[str, Any], key: str) -> bool:
    """A true/false parameter (1 and 0 are refused)."""
    value = arch[key]
    if type(value) is not bool:
        raise SpecError(f"architecture parameter {key!r} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class PaperParams:
    """The paper's network (Fig. 6): conv 'same' + ReLU, 2x2 pooling, dropout, global average pool, dense."""

    filters: int
    kernel: int
    pool: str
    dropout: float

    @classmethod
    def of(cls, arch: Mapping[str, Any]) -> PaperParams:
        return cls(param_int(arch, "filters", 1, 1024), param_int(arch, "kernel", 1, 15),
                   param_choice(arch, "pool", ("max", "avg")), param_float(arch, "dropout", 0.0, 0.9))


@register("paper-cnn", {"filters", "kernel", "pool", "dropout"})
def paper_cnn(arch: Mapping[str, Any], channels: int, bits: int) -> dict[str, Shape]:
    """Layer 1 is the convolution and layer 7 the dense head (vetohash.networks.paper_cnn's Sequential)."""
    p = PaperParams.of(arch)
    return {"1.weight": ("<f4", (p.filters, channels, p.kernel, p.kernel)), "1.bias": ("<f4", (p.filters,)),
            "7.weight": ("<f4", (bits, p.filters)), "7.bias": ("<f4", (bits,))}


@dataclass(frozen=True)
class CopyParams:
    """vetohash's copy detector: a residual CNN, GeM pooling and a linear head, optionally mirror-averaged."""

    width: int
    stages: int
    mirror: bool

    @classmethod
    def of(cls, arch: Mapping[str, Any]) -> CopyParams:
        return cls(param_int(arch, "width", 4, 128), param_int(arch, "stages", 1, 5), param_bool(arch, "mirror"))

    def stage_channels(self) -> list[tuple[int, int]]:
        """(input, output) channels of each residual stage; each halves the resolution."""
        return [(self.width * 2 ** stage, self.width * 2 ** (stage + 1)) for stage in range(self.stages)]


def _batch_norm(prefix: str, channels: int) -> dict[str, Shape]:
    out: dict[str, Shape] = {f"{prefix}.{name}": ("<f4", (channels,))
                             for name in ("weight", "bias", "running_mean", "running_var")}
    # A 0-d counter in torch, stored with shape [1] since the first model files (numpy's ascontiguousarray
    # makes 0-d arrays 1-d); it is unused outside training.
    out[f"{prefix}.num_batches_tracked"] = ("<i8", (1,))
    return out


@register("copy-cnn", {"width", "stages", "mirror"})
def copy_cnn(arch: Mapping[str, Any], channels: int, bits: int) -> dict[str, Shape]:
    """Stem convolution and batch norm (features.0, .1), one residual block per stage (features.3...), the
    head; every block halves the resolution, so each has a 1x1 projection on its skip path."""
    p = CopyParams.of(arch)
    out: dict[str, Shape] = {"features.0.weight": ("<f4", (p.width, channels, 3, 3)),
                             **_batch_norm("features.1", p.width)}
    for stage, (cin, cout) in enumerate(p.stage_channels()):
        block = f"features.{3 + stage}"
        out[f"{block}.body.0.weight"] = ("<f4", (cout, cin, 3, 3))
        out.update(_batch_norm(f"{block}.body.1", cout))
        out[f"{block}.body.3.weight"] = ("<f4", (cout, cout, 3, 3))
        out.update(_batch_norm(f"{block}.body.4", cout))
        out[f"{block}.skip.0.weight"] = ("<f4", (cout, cin, 1, 1))
        out.update(_batch_norm(f"{block}.skip.1", cout))
    features = p.stage_channels()[-1][1]
    out.update({"head.weight": ("<f4", (bits, features)), "head.bias": ("<f4", (bits,))})
    return out
