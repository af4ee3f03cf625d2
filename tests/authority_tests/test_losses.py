"""The contrastive loss equals the paper's formula computed pair by pair in plain Python."""

from __future__ import annotations

import math

import pytest
import torch

from vetohash_authority.losses import EPSILON, contrastive_loss, euclidean


def brute_force(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, margin: float) -> float:
    total = 0.0
    for i in range(len(a)):
        squared = sum((float(a[i, k]) - float(b[i, k])) ** 2 for k in range(a.shape[1]))
        d = math.sqrt(max(squared, EPSILON))
        label = float(y[i])
        total += label * d**2 + (1 - label) * max(margin - d, 0.0) ** 2
    return total / len(a)


@pytest.mark.parametrize("margin", [0.5, 1.0, 4.0])
def test_matches_a_brute_force_loop(margin: float) -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(40, 16, generator=generator, dtype=torch.float64)
    b = a + torch.randn(40, 16, generator=generator, dtype=torch.float64) * torch.rand(40, 1, generator=generator,
                                                                                            dtype=torch.float64)
    y = (torch.rand(40, generator=generator) < 0.5).to(torch.float64)
    assert float(contrastive_loss(a, b, y, margin)) == pytest.approx(brute_force(a, b, y, margin), rel=1e-9)


def test_close_pairs_cost_their_squared_distance_far_pairs_their_margin_shortfall() -> None:
    a = torch.zeros(2, 2, dtype=torch.float64)
    b = torch.tensor([[3.0, 4.0], [0.3, 0.4]], dtype=torch.float64)  # distances 5 and 0.5
    assert float(contrastive_loss(a[:1], b[:1], torch.ones(1, dtype=torch.float64), 1.0)) == pytest.approx(25)
    assert float(contrastive_loss(a[:1], b[:1], torch.zeros(1, dtype=torch.float64), 1.0)) == 0  # beyond margin
    assert float(contrastive_loss(a[1:], b[1:], torch.zeros(1, dtype=torch.float64), 1.0)) == pytest.approx(0.25)


def test_identical_embeddings_use_eps_and_keep_gradients_finite() -> None:
    a = torch.ones(3, 8, requires_grad=True)
    b = torch.ones(3, 8)
    assert torch.allclose(euclidean(a, b), torch.full((3,), math.sqrt(EPSILON)))
    loss = contrastive_loss(a, b, torch.zeros(3), 1.0)
    loss.backward()
    assert torch.isfinite(a.grad).all()
    assert float(loss.detach()) == pytest.approx((1 - math.sqrt(EPSILON)) ** 2, rel=1e-6)
