"""The fast CPU path for the paper's network computes the module's function and the module's gradients."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vetohash_authority
from vetohash.specs import preset
from vetohash_authority.fastpath import dropout_scale, paper_embedder

from .fixtures import one_thread  # noqa: F401  (autouse)


def gradients(network: torch.nn.Module, embed, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    network.zero_grad()
    torch.manual_seed(0)
    (embed(x) ** 2).sum().backward()
    return [p.grad.clone() for p in network.parameters()]


@pytest.mark.parametrize("flat", [False, True])
def test_same_outputs_and_gradients_as_the_module(flat: bool) -> None:
    torch.manual_seed(1)
    network = preset("paper-cnn").build().eval()  # evaluation mode: no dropout, so both are deterministic
    x = torch.randn(6, 1, 32, 32, dtype=torch.float32)
    if flat:  # flat and black regions make the four positions of a pooling window tie
        x[:3] = -1.0
        x[3:, :, :16] = 0.25
    embed = paper_embedder(network, np.random.default_rng(0))
    assert embed is not None
    with torch.no_grad():
        assert torch.allclose(embed(x), network(x), atol=1e-5)
    for fast, slow in zip(gradients(network, embed, x), gradients(network, network, x)):
        assert torch.allclose(fast, slow, rtol=1e-4, atol=1e-4)


def test_other_layouts_train_through_the_module() -> None:
    assert paper_embedder(preset("paper-cnn-avg").build(), np.random.default_rng(0)) is None
    assert paper_embedder(torch.nn.Linear(3, 3), np.random.default_rng(0)) is None


def test_dropout_drops_the_given_share_and_keeps_the_mean() -> None:
    scale = dropout_scale(torch.Size([200, 500]), 0.25, np.random.default_rng(3))
    assert float((scale == 0).float().mean()) == pytest.approx(0.25, abs=0.01)
    assert float(scale.mean()) == pytest.approx(1.0, abs=0.02)


def test_training_never_compiles_or_loads_native_code() -> None:
    """The authority process holds the signing key: it compiles nothing and loads no shared library (the C
    block it once compiled was loaded from a folder others could plant a library in; issue 16 item 2)."""
    package = Path(vetohash_authority.__file__).parent
    assert not list(package.glob("*.c"))
    for module in package.glob("*.py"):
        text = module.read_text(encoding="utf-8")
        for forbidden in ("import ctypes", "import subprocess", "CDLL"):
            assert forbidden not in text, f"{module.name}: {forbidden}"
