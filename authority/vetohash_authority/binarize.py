"""Fitting the sign binarisation so bits are balanced and decorrelated (iterative quantisation).

A trained network's raw outputs are neither centred nor independent: a few directions carry most of the
variance, so many bits flip together and unrelated images share long runs of equal bits. We centre each
output on its median over a sample of images (every bit is then 1 for half of them) and rotate the outputs
with the orthogonal matrix that best aligns them with the hypercube's corners (Gong & Lazebnik's ITQ). Both
are linear, so they fold into the network's last layer and the hash stays "bit k = output k > 0".
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def itq_rotation(embeddings: np.ndarray, iterations: int = 50, seed: int = 0) -> np.ndarray:
    """The orthogonal (d, d) matrix R minimising ||sign(V R) - V R|| for centred embeddings V (n, d)."""
    rng = np.random.default_rng(seed)
    d = embeddings.shape[1]
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    v = embeddings.astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12  # the hash sees directions, not lengths
    for _ in range(iterations):
        bits = np.sign(v @ rotation)
        bits[bits == 0] = 1
        u, _, wt = np.linalg.svd(v.T @ bits)
        rotation = u @ wt
    return rotation


METHODS = ("centre", "itq", "whiten-itq")


def fold_into_head(head: nn.Linear, embeddings: np.ndarray, method: str = "whiten-itq", seed: int = 0) -> None:
    """Rewrite `head` in place so its outputs are centred on their medians over `embeddings` (its outputs on a
    sample of images) and, by `method`, ITQ-rotated ("itq") or PCA-whitened then ITQ-rotated ("whiten-itq":
    for Gaussian-like outputs, bits of whitened data are pairwise uncorrelated whatever the rotation)."""
    if method not in METHODS:
        raise ValueError(f"unknown binarisation method {method!r}; known: {METHODS}")
    with torch.no_grad():
        weight = head.weight.double().numpy()
        bias = head.bias.double().numpy()
        median = np.median(embeddings, axis=0)
        bias, centred = bias - median, embeddings.astype(np.float64) - median
        if method == "whiten-itq":
            eigenvalues, eigenvectors = np.linalg.eigh(np.cov(centred, rowvar=False))
            scale = 1 / np.sqrt(np.maximum(eigenvalues, eigenvalues.max() * 1e-6))
            project = (eigenvectors * scale).T  # (d, d): rows are scaled principal directions
            weight, bias, centred = project @ weight, project @ bias, centred @ project.T
        if method != "centre":
            rotation = itq_rotation(centred, seed=seed)
            weight, bias, centred = rotation.T @ weight, rotation.T @ bias, centred @ rotation
            median = np.median(centred, axis=0)  # the linear maps moved the medians; centre again
            bias, centred = bias - median, centred - median
        head.weight.copy_(torch.from_numpy(weight).float())
        head.bias.copy_(torch.from_numpy(bias).float())


def bit_statistics(hashes_bits: np.ndarray) -> tuple[float, float]:
    """(largest |share of ones - 0.5| over bits, mean |correlation| between distinct bits) for (n, d) 0/1 bits."""
    bits = hashes_bits.astype(np.float64)
    imbalance = float(np.abs(bits.mean(axis=0) - 0.5).max())
    std = bits.std(axis=0)
    keep = std > 0
    corr = np.atleast_2d(np.corrcoef(bits[:, keep].T)) if keep.sum() > 1 else np.zeros((1, 1))
    off = corr[~np.eye(len(corr), dtype=np.bool_)]
    return imbalance, float(np.abs(off).mean()) if off.size else 0.0
