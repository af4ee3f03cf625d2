"""The paper's distance and contrastive loss (NOTES.md, section 2.2), exactly as written there.

D = sqrt(max(sum((a - b)^2), eps)); L = Y * D^2 + (1 - Y) * max(margin - D, 0)^2, with Y = 1 for a pair that
must be close (an image and its altered copy) and Y = 0 for one that must be far apart. The batch loss is the
mean over pairs.
"""

from __future__ import annotations

import torch

EPSILON = 1e-7  # Keras' backend epsilon, which the paper's formula names `eps`


def euclidean(a: torch.Tensor, b: torch.Tensor, eps: float = EPSILON) -> torch.Tensor:
    """Row-wise distance sqrt(max(sum((a - b)^2), eps)) between (N, D) embeddings -> (N,)."""
    return torch.sqrt(torch.clamp(torch.sum((a - b) ** 2, dim=1), min=eps))


def contrastive_terms(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, margin: float,
                      eps: float = EPSILON) -> torch.Tensor:
    """Per-pair contrastive loss, (N,)."""
    d = euclidean(a, b, eps)
    return y * d**2 + (1 - y) * torch.clamp(margin - d, min=0) ** 2


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, margin: float,
                     eps: float = EPSILON) -> torch.Tensor:
    """Mean contrastive loss of a batch of pairs."""
    return contrastive_terms(a, b, y, margin, eps).mean()
