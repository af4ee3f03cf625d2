"""The paper network's feature block as one small C function, compiled on first use: the fastest CPU path.

`paperblock.c` computes convolution, ReLU, max pooling, dropout and global average pooling window by window,
so the 64x32x32 feature maps that make the network memory-bound are never stored. It is compiled with the
system's C compiler (`cc`, or $CC) into a cache folder the first time training needs it (well under a
second) and loaded with ctypes; there is no Python extension module, no build step at install time and no
dependency. Where no compiler works, or with VETOHASH_NATIVE=0, training falls back to fastpath.py, which
computes the same function with torch operations, and then to the module itself.

The weights stay the `spec.build()` module's own parameters, so everything after training sees an ordinary
network. `tests/authority_tests/test_fastpath.py` pins equality of outputs and gradients with the module.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SOURCE = Path(__file__).with_name("paperblock.c")
FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-std=c99")

Embedder = Callable[[torch.Tensor], torch.Tensor]
_u8 = ctypes.POINTER(ctypes.c_uint8)
_f32 = ctypes.POINTER(ctypes.c_float)


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "vetohash"


@cache
def library() -> ctypes.CDLL | None:
    """The compiled block, built once per source, compiler flags and platform; None where it cannot be."""
    if os.environ.get("VETOHASH_NATIVE", "1") == "0" or not SOURCE.exists():
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        return None
    source = SOURCE.read_bytes()
    tag = hashlib.sha256(source + " ".join(FLAGS).encode() + compiler.encode()
                         + sysconfig.get_platform().encode()).hexdigest()[:16]
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / f"vetohash-{os.getuid()}"):
        target = folder / f"paperblock-{tag}.so"
        try:
            if not target.exists():
                folder.mkdir(parents=True, exist_ok=True)
                fd, temp = tempfile.mkstemp(dir=folder, suffix=".so")
                os.close(fd)
                result = subprocess.run([compiler, *FLAGS, "-o", temp, str(SOURCE)], capture_output=True,
                                        timeout=120, check=False)
                if result.returncode != 0:
                    Path(temp).unlink(missing_ok=True)
                    return None
                os.replace(temp, target)
            return _bind(ctypes.CDLL(str(target)))
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.paper_forward.restype = ctypes.c_int
    lib.paper_forward.argtypes = [_f32, _f32, _f32, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_float, ctypes.c_uint64, _f32, _u8, _u8]
    lib.paper_backward.restype = ctypes.c_int
    lib.paper_backward.argtypes = [_f32, _f32, _u8, _u8, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                   ctypes.c_int, ctypes.c_float, _f32, _f32]
    return lib


def _loaded() -> ctypes.CDLL:
    lib = library()
    if lib is None:  # paper_embedder() hands the block out only once the library has loaded
        raise RuntimeError("the native paper block is not available")
    return lib


def _ptr(tensor: torch.Tensor, kind: Any) -> Any:
    return ctypes.cast(tensor.data_ptr(), kind)


class _Block(torch.autograd.Function):
    """(N, C, S, S) images -> (N, F) pooled features; gradients for the conv weight and bias only."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, rate: float,
                seed: int) -> torch.Tensor:
        lib = _loaded()
        x = x.detach().contiguous()
        n, c, s, _ = x.shape
        filters = weight.shape[0]
        weight_t = weight.detach().reshape(filters, -1).t().contiguous()
        windows = (s // 2) ** 2
        gap = torch.empty(n, filters, dtype=torch.float32)
        keep = torch.empty(n, windows, filters, dtype=torch.uint8)
        winner = torch.empty(n, windows, filters, dtype=torch.uint8)
        status = lib.paper_forward(_ptr(x, _f32), _ptr(weight_t, _f32), _ptr(bias.detach().contiguous(), _f32),
                                   n, c, s, filters, rate, seed, _ptr(gap, _f32), _ptr(keep, _u8),
                                   _ptr(winner, _u8))
        if status:
            raise RuntimeError("paperblock: unsupported sizes")
        ctx.save_for_backward(x, keep, winner)
        ctx.rate = rate
        ctx.weight_shape = weight.shape
        return gap

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, torch.Tensor, None, None]:
        lib = _loaded()
        x, keep, winner = ctx.saved_tensors
        n, c, s, _ = x.shape
        filters = ctx.weight_shape[0]
        grad = grad.contiguous()
        grad_weight_t = torch.zeros(c * 4, filters, dtype=torch.float32)
        grad_bias = torch.zeros(filters, dtype=torch.float32)
        lib.paper_backward(_ptr(x, _f32), _ptr(grad, _f32), _ptr(keep, _u8), _ptr(winner, _u8), n, c, s,
                           filters, ctx.rate, _ptr(grad_weight_t, _f32), _ptr(grad_bias, _f32))
        return None, grad_weight_t.t().reshape(ctx.weight_shape), grad_bias, None, None


def paper_embedder(network: nn.Module, rng: np.random.Generator) -> Embedder | None:
    """A native embedding function sharing `network`'s parameters, or None when the library is not available
    or the network is not the paper's layout (2x2 kernel, max pooling, float32, at most 1024 filters)."""
    from .fastpath import paper_layers

    layers = paper_layers(network)
    if layers is None or library() is None:
        return None
    conv, dropout, dense = layers
    if conv.weight.dtype != torch.float32 or conv.out_channels > 1024 or conv.in_channels * 4 > 64:
        return None

    def embed(x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32 or x.shape[2] % 2 or x.shape[2] != x.shape[3]:
            return network(x)
        rate = float(dropout.p) if network.training else 0.0
        seed = int(rng.integers(0, 2**63)) if rate > 0 else 0
        return dense(_Block.apply(x, conv.weight, conv.bias, rate, seed))

    return embed
