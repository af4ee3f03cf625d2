"""What runs a hasher's network: ONNX Runtime when the `onnx` extra is installed, else torch.

Every party that hashes (the authority's evaluate and publish, the platform's screen and hash) goes through
`engine`, so on machines with the same packages the authority's published hashes and the platform's are the
same bits. The ONNX graph (vetohash.graphs) is built from the spec and the weights, without torch; it
computes what the torch module computes, its embeddings within TOLERANCE of torch's, so a bit can differ
between the two engines only where an embedding value is that close to zero (tests pin both).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping

import numpy as np

from .specs import ModelSpec

# Largest difference from torch's embeddings measured on the presets with trained and random weights
# (tests/shared_tests/test_engines.py), with a margin: float32 rounding of a different summation order.
TOLERANCE = 1e-4

Engine = Callable[[np.ndarray], np.ndarray]


def onnx_available() -> bool:
    """Whether ONNX Runtime and the onnx package are installed (the `onnx` extra)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def engine_name() -> str:
    """The engine `engine` picks on this machine: "onnxruntime" or "torch"."""
    return "onnxruntime" if onnx_available() else "torch"


def engine(spec: ModelSpec, arrays: Mapping[str, np.ndarray], threads: int = 0) -> Engine:
    """A function from (N, C, S, S) float32 inputs to (N, bits) float32 embeddings, by the engine_name()
    engine, on `threads` threads (0: the engine's default, one per core)."""
    return onnx_engine(spec, arrays, threads) if onnx_available() else torch_engine(spec, arrays, threads)


def onnx_engine(spec: ModelSpec, arrays: Mapping[str, np.ndarray], threads: int = 0) -> Engine:
    """The network as an ONNX Runtime session on the CPU."""
    import onnxruntime

    from .graphs import INPUT, OUTPUT, build_graph

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers and the like are not the user's concern
    session = onnxruntime.InferenceSession(build_graph(spec, arrays).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT], {INPUT: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    return run


def torch_engine(spec: ModelSpec, arrays: Mapping[str, np.ndarray], threads: int = 0) -> Engine:
    """The network as its torch module in evaluation mode (`threads` > 0 sets torch's thread count, which is
    process-wide)."""
    import torch

    from .weights import load_arrays

    network = spec.build().eval()
    load_arrays(network, arrays)
    if threads:
        torch.set_num_threads(threads)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return network(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    return run
