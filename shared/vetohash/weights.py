"""Weights as plain arrays: name -> little-endian dtype, shape and raw bytes. Never pickle.

Loading is strict: every tensor the spec's network expects must be present with the exact dtype and shape,
and nothing else may be; all problems are reported together before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .architectures import Shape
from .errors import WeightsError

if TYPE_CHECKING:
    from torch import nn

ALLOWED_DTYPES: dict[str, np.dtype[Any]] = {"<f4": np.dtype("<f4"), "<i8": np.dtype("<i8")}
ENTRY_KEYS = frozenset({"dtype", "shape", "data"})


def module_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's parameters and buffers as C-contiguous little-endian numpy arrays, by state-dict name."""
    out = {}
    for name, tensor in module.state_dict().items():
        array = tensor.detach().cpu().numpy()
        out[name] = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return out


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """The msgpack-ready form: {name: {"dtype": "<f4", "shape": [...], "data": bytes}}."""
    encoded = {}
    for name, array in arrays.items():
        dtype = array.dtype.newbyteorder("<").str
        if dtype not in ALLOWED_DTYPES:
            raise WeightsError(f"weight {name!r} has unsupported dtype {array.dtype}")
        encoded[name] = {"dtype": dtype, "shape": list(array.shape),
                         "data": np.ascontiguousarray(array, dtype=ALLOWED_DTYPES[dtype]).tobytes()}
    return encoded


def decode_arrays(encoded: Any, expected: Mapping[str, Shape]) -> dict[str, np.ndarray]:
    """Check `encoded` against the expected dtype and shape of each weight (a spec's weight_shapes) and return
    copies of the decoded arrays."""
    if not isinstance(encoded, Mapping):
        raise WeightsError("weights must be a mapping of name to array")
    missing = sorted(set(expected) - set(encoded))
    unexpected = sorted(str(k) for k in set(encoded) - set(expected))
    problems = []
    if missing or unexpected:
        problems.append(f"missing {missing}, unexpected {unexpected}")
    arrays = {}
    for name in sorted(set(expected) & set(encoded)):
        entry, (want_dtype, want_shape) = encoded[name], expected[name]
        nbytes = ALLOWED_DTYPES[want_dtype].itemsize * int(np.prod(want_shape, dtype=np.int64))
        if not isinstance(entry, Mapping) or set(entry) != ENTRY_KEYS:
            problems.append(f"{name}: entry needs exactly {sorted(ENTRY_KEYS)}")
            continue
        dtype, shape, data = entry["dtype"], entry["shape"], entry["data"]
        if dtype != want_dtype:
            problems.append(f"{name}: dtype {dtype!r}, expected {want_dtype!r}")
        elif not isinstance(shape, list) or list(want_shape) != shape:
            problems.append(f"{name}: shape {shape!r}, expected {list(want_shape)}")
        elif not isinstance(data, bytes) or len(data) != nbytes:
            problems.append(f"{name}: {len(data) if isinstance(data, bytes) else 'no'} data bytes, "
                            f"expected {nbytes}")
        else:
            array = np.frombuffer(data, dtype=ALLOWED_DTYPES[dtype]).reshape(want_shape).copy()
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                problems.append(f"{name}: holds NaN or infinite values")
            arrays[name] = array
    if problems:
        raise WeightsError("weights do not match the spec: " + "; ".join(problems))
    return arrays


def load_arrays(module: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy checked arrays into the module in place (strict: every name must match)."""
    import torch
    state = {name: torch.from_numpy(np.array(array, dtype=array.dtype.newbyteorder("="))) for name, array in arrays.items()}
    module.load_state_dict(state, strict=True)
