"""The torch modules of the registered architectures (vetohash.architectures), for training.

Each maps a (N, channels, size, size) float tensor to a (N, bits) embedding, and its state dict holds
exactly the weights its architecture lists. Only code that trains, or hashes without ONNX Runtime, imports
this module (and so torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .architectures import CopyParams, PaperParams, weight_shapes


def build_network(arch: Mapping[str, Any], channels: int, bits: int) -> nn.Module:
    """A freshly initialised module for the architecture `arch` describes (its parameters checked first)."""
    weight_shapes(arch, channels, bits)
    if arch["type"] == "paper-cnn":
        return paper_cnn(PaperParams.of(arch), channels, bits)
    params = CopyParams.of(arch)
    return CopyNet(channels, params.width, params.stages, bits, params.mirror)


def paper_cnn(p: PaperParams, channels: int, bits: int) -> nn.Module:
    """The paper's network (Fig. 6): conv 'same' + ReLU, 2x2 pooling, dropout, global average pool, dense."""
    before = (p.kernel - 1) // 2  # 'same' padding as Keras does it: the extra row/column goes after
    after = p.kernel - 1 - before
    return nn.Sequential(
        # Explicit padding: torch's padding="same" warns for even kernels (the paper's is 2x2).
        nn.ZeroPad2d((before, after, before, after)),
        nn.Conv2d(channels, p.filters, p.kernel),
        nn.ReLU(),
        nn.MaxPool2d(2) if p.pool == "max" else nn.AvgPool2d(2),
        nn.Dropout(p.dropout),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(p.filters, bits),
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
