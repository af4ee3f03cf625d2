"""A spec plus its weights: the one object that turns preprocessed images into hashes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .engines import Engine, engine
from .hashes import pack_signs
from .matching import Nearest, nearest_by_owner
from .preprocess import to_array
from .specs import ModelSpec
from .weights import decode_arrays, encode_arrays

if TYPE_CHECKING:
    from torch import nn

BATCH = 256


class Hasher:
    """Hashes images with a spec's network on the CPU, in fixed-size batches, by the engine vetohash.engines
    picks. It holds the weights as plain arrays: the engine is built on the first hash, not before, so
    reading a bundle or a model file costs no network."""

    def __init__(self, spec: ModelSpec, network: nn.Module) -> None:
        """A hasher of the torch network's current weights (copied: training it later changes nothing here)."""
        from .weights import module_arrays

        self.spec = spec
        self._arrays = module_arrays(network)
        self._engine: Engine | None = None
        self.threads = 0

    @classmethod
    def from_arrays(cls, spec: ModelSpec, arrays: Mapping[str, np.ndarray]) -> Hasher:
        """A hasher of weight arrays already checked against the spec (vetohash.weights.decode_arrays)."""
        hasher = cls.__new__(cls)
        hasher.spec, hasher._arrays, hasher._engine, hasher.threads = spec, dict(arrays), None, 0
        return hasher

    @classmethod
    def from_encoded(cls, spec: ModelSpec, encoded_weights: object) -> Hasher:
        """Check weights given in their encoded (bundle or model file) form against the spec; no network is
        built (WeightsError on any mismatch)."""
        return cls.from_arrays(spec, decode_arrays(encoded_weights, spec.weight_shapes()))

    def with_threads(self, threads: int) -> Hasher:
        """The same hasher running its engine on `threads` threads (0: one per core)."""
        copy = Hasher.from_arrays(self.spec, self._arrays)
        copy.threads = threads
        return copy

    def encoded_weights(self) -> dict[str, dict[str, object]]:
        """The weights in their encoded form, for model files and bundles."""
        return encode_arrays(self._arrays)

    def arrays(self) -> Mapping[str, np.ndarray]:
        """The weights as numpy arrays by state-dict name."""
        return self._arrays

    @property
    def network(self) -> nn.Module:
        """A torch module holding these weights, in evaluation mode (a new one each time: for training)."""
        from .weights import load_arrays

        network = self.spec.build().eval()
        load_arrays(network, self._arrays)
        return network

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, S, S) float32 preprocessed images -> (N, bits) float32 embeddings."""
        if self._engine is None:
            self._engine = engine(self.spec, self._arrays, self.threads)
        out = [self._engine(batch[i:i + BATCH]) for i in range(0, len(batch), BATCH)]
        return np.concatenate(out) if out else np.zeros((0, self.spec.bits), np.float32)

    def hash_arrays(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, S, S) preprocessed images -> (N, bits // 8) packed uint8 hashes."""
        return pack_signs(self.embed(batch))

    def hash_queries(self, views: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Queries given as one (views, C, S, S) array each (preprocess.query_arrays) -> the packed hash of
        every view, and for each view the index of its query (increasing; a query's first view is itself)."""
        owners = np.repeat(np.arange(len(views)), [len(v) for v in views])
        if not views:
            return np.zeros((0, self.spec.hash_bytes), np.uint8), owners
        return self.hash_arrays(np.concatenate(views)), owners

    def nearest_queries(self, views: Sequence[np.ndarray], banned: np.ndarray) -> Nearest:
        """Each query's nearest banned hash over its views, as the platform screens."""
        return nearest_by_owner(*self.hash_queries(views), len(views), banned)

    def hash_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Decoded images -> packed hashes, preprocessed exactly as the spec pins."""
        return self.hash_arrays(self.preprocess(images))

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Decoded images -> the (N, C, S, S) float32 batch the network takes."""
        pre = self.spec.preprocess
        if not images:
            return np.zeros((0, pre.channels, pre.size, pre.size), np.float32)
        return np.stack([to_array(image, pre) for image in images])
