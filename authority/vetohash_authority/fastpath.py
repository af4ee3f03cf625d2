"""A faster CPU training path for the paper's network: the same function and gradients, less memory traffic.

On a small CPU the paper's network spends nearly all its time moving its 64 x 32 x 32 feature maps through
memory: padding, convolution, ReLU, pooling with int64 indices, each a full pass in both directions. Here the
2x2 convolution and the 2x2 max pooling are one operation computed in cache-sized chunks: for every pooling
window, its four 2x2 input patches are multiplied by the filters and only the maximum (and which of the four
it was) is kept. ReLU commutes with max, and the bias is the same for all four, so
pool(relu(conv(x))) = relu(max_window(patches @ W^T) + b). Backward sends each window's gradient to the patch
that won, exactly as max pooling does (first maximum on ties). Dropout draws its mask from torch's generator.

It reads and trains the very parameters of the module `spec.build()` made, so the model file, hashing and
every other stage see an ordinary network; `tests/authority_tests/test_fastpath.py` pins equality of outputs
and gradients with the module. Any other architecture, or any variation of this one it does not cover,
trains through the module itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHUNK_WINDOWS = 2048  # pooling windows per chunk: 2048 x 4 x 64 floats = 2 MiB, stays in cache

Embedder = Callable[[torch.Tensor], torch.Tensor]


class _WindowMax(torch.autograd.Function):
    """max over the 4 positions of (R, 4, K) patches @ (F, K)^T -> (R, F); gradient for the weights only.

    Forward keeps only the maxima. Backward recomputes each chunk's products (cheap) and sends the gradient to
    the position(s) equal to the maximum, split evenly among ties: tied positions hold identical patches in
    practice (flat or black areas), so this is exactly max pooling's gradient, and a valid subgradient
    otherwise.
    """

    @staticmethod
    def forward(ctx: Any, patches: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        rows, positions, k = patches.shape
        if positions != 4:
            raise ValueError("window max expects the 4 positions of a 2x2 pooling window")
        out = torch.empty(rows, weight.shape[0], dtype=patches.dtype)
        wt = weight.t()
        for start in range(0, rows, CHUNK_WINDOWS):
            z = (patches[start:start + CHUNK_WINDOWS].reshape(-1, k) @ wt).view(-1, positions, weight.shape[0])
            # Pairwise maxima of contiguous slices: several times faster than a reduction over dim 1 here.
            torch.maximum(torch.maximum(z[:, 0], z[:, 1]), torch.maximum(z[:, 2], z[:, 3]),
                          out=out[start:start + CHUNK_WINDOWS])
        ctx.save_for_backward(patches, weight, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        patches, weight, out = ctx.saved_tensors
        rows, positions, k = patches.shape
        filters = weight.shape[0]
        grad_weight = torch.zeros(filters, k, dtype=grad.dtype)
        wt = weight.t()
        for start in range(0, rows, CHUNK_WINDOWS):
            chunk = patches[start:start + CHUNK_WINDOWS].reshape(-1, k)
            z = (chunk @ wt).view(-1, positions, filters)
            won = (z == out[start:start + CHUNK_WINDOWS].unsqueeze(1)).to(grad.dtype)
            spread = won.mul_((grad[start:start + CHUNK_WINDOWS] / won.sum(dim=1)).unsqueeze(1))
            grad_weight.addmm_(spread.view(-1, filters).t(), chunk)
        return None, grad_weight


def dropout_scale(shape: torch.Size, rate: float, rng: np.random.Generator) -> torch.Tensor:
    """A dropout multiplier: 0 with probability `rate` (to 1/65536), else 1 / (1 - rate)."""
    count = int(np.prod(shape))
    draws = np.frombuffer(rng.bytes(2 * count), dtype=np.uint16)
    cut = round(rate * 65536)
    scale = np.where(draws >= cut, np.float32(65536 / (65536 - cut)), np.float32(0)).astype(np.float32)
    return torch.from_numpy(scale).view(shape)


def window_patches(x: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) -> (N * (S/2)^2, 4, C * 4): for each 2x2 pooling window (row-major), the 2x2 input patch
    under each of its four convolution positions (row-major), flattened as the conv weight is (c, dy, dx).
    Padding is one zero row and column after the image, as 'same' for a 2x2 kernel."""
    n, c, s, _ = x.shape
    padded = F.pad(x, (0, 1, 0, 1))
    patches = padded.unfold(2, 2, 1).unfold(3, 2, 1)  # (N, C, S, S, dy, dx)
    patches = patches.reshape(n, c, s // 2, 2, s // 2, 2, 2, 2).permute(0, 2, 4, 3, 5, 1, 6, 7)
    return patches.reshape(n * (s // 2) ** 2, 4, c * 4)


class PaperLayers(NamedTuple):
    """The layers of the paper's network that the fast paths compute with."""

    conv: nn.Conv2d
    dropout: nn.Dropout
    dense: nn.Linear


def paper_layers(network: nn.Module) -> PaperLayers | None:
    """`network`'s layers when it is exactly the paper's layout with a 2x2 kernel and 2x2 max pooling, else None."""
    if not isinstance(network, nn.Sequential) or len(network) != 8:
        return None
    pad, conv, relu, pool, dropout, gap, flatten, dense = network
    if (isinstance(pad, nn.ZeroPad2d) and tuple(pad.padding) == (0, 1, 0, 1)
            and isinstance(conv, nn.Conv2d) and conv.kernel_size == (2, 2) and conv.stride == (1, 1)
            and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.bias is not None and isinstance(relu, nn.ReLU)
            and isinstance(pool, nn.MaxPool2d) and pool.kernel_size in (2, (2, 2))
            and pool.stride in (2, (2, 2)) and pool.padding in (0, (0, 0)) and pool.dilation in (1, (1, 1))
            and not pool.ceil_mode and isinstance(dropout, nn.Dropout) and isinstance(gap, nn.AdaptiveAvgPool2d)
            and gap.output_size in (1, (1, 1)) and isinstance(flatten, nn.Flatten)
            and isinstance(dense, nn.Linear)):
        return PaperLayers(conv, dropout, dense)
    return None


def paper_embedder(network: nn.Module, rng: np.random.Generator) -> Embedder | None:
    """A fast embedding function sharing `network`'s parameters, or None when the network is not the paper's
    layout with a 2x2 kernel and max pooling (then train the module itself). Dropout masks come from `rng`
    (numpy's generator is several times faster than torch's here), with the rate rounded to 1/65536."""
    layers = paper_layers(network)
    if layers is None:
        return None
    conv, dropout, dense = layers

    def embed(x: torch.Tensor) -> torch.Tensor:
        n, _, s, _ = x.shape
        if s % 2 or x.shape[3] != s or x.device.type != "cpu":
            return network(x)
        filters = conv.out_channels
        pooled = _WindowMax.apply(window_patches(x), conv.weight.reshape(filters, -1))
        h = torch.relu(pooled + conv.bias)
        if network.training and dropout.p > 0:
            h = h * dropout_scale(h.shape, dropout.p, rng)
        return dense(h.view(n, -1, filters).mean(dim=1))

    return embed
