"""A spec plus its weights: the one object that turns preprocessed images into hashes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from .hashes import pack_signs
from .matching import Nearest, nearest_by_owner
from .preprocess import to_array
from .specs import ModelSpec
from .weights import decode_arrays, encode_arrays, layout, load_arrays, module_arrays

BATCH = 256


class Hasher:
    """Hashes images with a spec's network in evaluation mode on the CPU, in fixed-size batches."""

    def __init__(self, spec: ModelSpec, network: torch.nn.Module) -> None:
        self.spec = spec
        self.network = network.eval()

    @classmethod
    def from_encoded(cls, spec: ModelSpec, encoded_weights: object) -> Hasher:
        """Build the spec's network and load weights given in their encoded (bundle or model file) form.

        The weights are checked against the shapes the spec implies before the network is built: a signed but
        absurd spec (in range, yet gigabytes of parameters) is refused without allocating them, and a spec
        that passes costs no more memory than its weights, which the file's size already bounds.
        """
        with torch.device("meta"):
            skeleton = spec.build()
        arrays = decode_arrays(encoded_weights, layout(skeleton))
        network = spec.build()
        load_arrays(network, arrays)
        return cls(spec, network)

    def encoded_weights(self) -> dict[str, dict[str, object]]:
        """The weights in their encoded form, for model files and bundles."""
        return encode_arrays(module_arrays(self.network))

    def arrays(self) -> Mapping[str, np.ndarray]:
        """The weights as numpy arrays by state-dict name."""
        return module_arrays(self.network)

    @torch.no_grad()
    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, S, S) float32 preprocessed images -> (N, bits) float32 embeddings."""
        out = [self.network(torch.from_numpy(batch[i:i + BATCH])).numpy() for i in range(0, len(batch), BATCH)]
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
