"""Registry of network architectures, each built from the plain parameters a spec carries.

A spec names its architecture by `type`; the builder validates its own parameters and returns a torch module
that maps a (N, channels, size, size) float tensor to a (N, bits) embedding. Adding an architecture means
registering one more builder here: preprocessing, hashing, matching and bundles do not change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .errors import SpecError

Builder = Callable[[Mapping[str, Any], int, int], nn.Module]
ARCHITECTURES: dict[str, tuple[Builder, frozenset[str]]] = {}


def register(name: str, keys: set[str]) -> Callable[[Builder], Builder]:
    """Register `builder` under `name`; `keys` is the exact parameter set it accepts besides `type`."""

    def wrap(builder: Builder) -> Builder:
        ARCHITECTURES[name] = (builder, frozenset(keys))
        return builder

    return wrap


def build_network(arch: Mapping[str, Any], channels: int, bits: int) -> nn.Module:
    """Build the network an architecture mapping describes, after checking its parameter names."""
    kind = arch.get("type")
    if not isinstance(kind, str) or kind not in ARCHITECTURES:
        raise SpecError(f"unknown architecture type {kind!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    builder, keys = ARCHITECTURES[kind]
    given = set(arch) - {"type"}
    if given != keys:
        missing, extra = sorted(keys - given), sorted(given - keys)
        raise SpecError(f"architecture {kind!r}: missing parameters {missing}, unexpected {extra}")
    return builder(arch, channels, bits)


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


@register("paper-cnn", {"filters", "kernel", "pool", "dropout"})
def paper_cnn(arch: Mapping[str, Any], channels: int, bits: int) -> nn.Module:
    """The paper's network (Fig. 6): conv 'same' + ReLU, 2x2 pooling, dropout, global average pool, dense."""
    filters = param_int(arch, "filters", 1, 1024)
    kernel = param_int(arch, "kernel", 1, 15)
    pool = nn.MaxPool2d(2) if param_choice(arch, "pool", ("max", "avg")) == "max" else nn.AvgPool2d(2)
    before = (kernel - 1) // 2  # 'same' padding as Keras does it: the extra row/column goes after
    after = kernel - 1 - before
    return nn.Sequential(
        # Explicit padding: torch's padding="same" warns for even kernels (the paper's is 2x2).
        nn.ZeroPad2d((before, after, before, after)),
        nn.Conv2d(channels, filters, kernel),
        nn.ReLU(),
        pool,
        nn.Dropout(param_float(arch, "dropout", 0.0, 0.9)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(filters, bits),
    )


class _Block(nn.Module):
    """Residual block: two 3x3 convolutions with batch norm; a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.skip = (nn.Identity() if stride == 1 and cin == cout
                     else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return torch.relu(self.body(x) + self.skip(x))


class _GeM(nn.Module):
    """Generalised-mean pooling (p = 3): between average and max, the usual choice for retrieval."""

    def forward(self, x):  # type: ignore[no-untyped-def]
        return x.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1.0 / 3)


class CopyNet(nn.Module):
    """Residual CNN, GeM pooling and a linear head; with `mirror`, features of the image and of its
    left-right mirror are averaged before the head, so a mirrored copy has exactly the same hash."""

    def __init__(self, channels: int, width: int, stages: int, bits: int, mirror: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(inplace=True)]
        cin = width
        for stage in range(stages):
            cout = width * 2 ** (stage + 1)
            layers.append(_Block(cin, cout, 2))
            cin = cout
        self.features = nn.Sequential(*layers, _GeM())
        self.head = nn.Linear(cin, bits)
        self.mirror = mirror

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the head reads (mirror-averaged when `mirror`)."""
        if not self.mirror:
            return self.features(x)
        both = self.features(torch.cat([x, x.flip(3)]))
        return (both[: len(x)] + both[len(x):]) / 2

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.head(self.pooled(x))


@register("copy-cnn", {"width", "stages", "mirror"})
def copy_cnn(arch: Mapping[str, Any], channels: int, bits: int) -> nn.Module:
    """vetohash's copy-detection network (see CopyNet)."""
    mirror = arch["mirror"]
    if type(mirror) is not bool:
        raise SpecError(f"architecture parameter 'mirror' must be true or false, got {mirror!r}")
    return CopyNet(channels, param_int(arch, "width", 4, 128), param_int(arch, "stages", 1, 5), bits, mirror)
