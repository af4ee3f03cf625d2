"""A tiny siamese training run lowers the loss, is reproducible under a seed, and records how to evaluate it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vetohash_authority.config import TrainingConfig, from_dict
from vetohash_authority.sources import load_sources
from vetohash_authority.training import train

from .fixtures import one_thread, write_pictures  # noqa: F401  (autouse)

CONFIG = from_dict({"epochs": 3, "batch_size": 8, "learning_rate": 0.003,
                    "alterations": {"rotation": {"count": 6}, "overlay": {"count": 6}}})


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list:
    folder = tmp_path_factory.mktemp("banned")
    write_pictures(folder, range(5))
    return load_sources(folder, CONFIG.spec().preprocess)


def test_tiny_run_lowers_the_loss(sources: list) -> None:
    result = train(sources, CONFIG, seed=0, device="cpu")
    train_losses = [e.train_loss for e in result.history]
    val_losses = [e.val_loss for e in result.history]
    assert len(result.history) == 3
    assert train_losses[-1] < train_losses[0]
    assert val_losses[-1] < val_losses[0]
    # 5 images x 2 kinds x 6 copies, round(6 * 0.25) = 2 held out of each: 40 + 40 training, 20 + 20 validation
    assert result.meta["pairs"] == {"train": 80, "validation": 40, "shared_negatives": False}


def test_same_seed_same_weights_other_seed_other_weights(sources: list) -> None:
    small = from_dict({**CONFIG.to_dict(), "epochs": 1})
    one, two, other = (train(sources, small, seed=s, device="cpu") for s in (7, 7, 8))
    for name, array in one.hasher.arrays().items():
        assert np.array_equal(array, two.hasher.arrays()[name])
    assert any(not np.array_equal(a, other.hasher.arrays()[n]) for n, a in one.hasher.arrays().items())


def test_metadata_holds_what_evaluate_needs(sources: list) -> None:
    result = train(sources, from_dict({**CONFIG.to_dict(), "epochs": 1}), seed=4, device="cpu")
    meta = result.meta
    assert meta["seed"] == 4 and meta["trainer"] == "vetohash-authority"
    assert from_dict(meta["config"]).to_dict() == meta["config"]
    assert meta["sources"] == [s.digest for s in sources]
    assert set(meta["final"]) == {"train_loss", "val_loss"}


def test_needs_two_images(sources: list) -> None:
    from vetohash.errors import VetohashError

    with pytest.raises(VetohashError, match="at least 2"):
        train(sources[:1], TrainingConfig(epochs=1), seed=0, device="cpu")


def test_unreadable_files_are_skipped_and_named(tmp_path: Path) -> None:
    write_pictures(tmp_path, range(3))
    (tmp_path / "broken.jpg").write_bytes(b"not an image at all")
    warnings: list[str] = []
    found = load_sources(tmp_path, CONFIG.spec().preprocess, warn=warnings.append)
    assert len(found) == 3
    assert len(warnings) == 1 and "broken.jpg" in warnings[0]
