"""Instance-discrimination losses against brute-force loops, and the fitted binarisation's guarantees."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from vetohash_authority.binarize import METHODS, bit_statistics, fold_into_head
from vetohash_authority.pretraining import info_nce, koleo


def brute_info_nce(a, b, t):
    views = [v / v.norm() for v in torch.cat([a, b])]
    n, total = len(a), 0.0
    for i, v in enumerate(views):
        positive = (i + n) % (2 * n)
        scores = [math.exp(float(v @ w) / t) for j, w in enumerate(views) if j != i]
        total += -(float(v @ views[positive]) / t - math.log(sum(scores)))
    return total / (2 * n)


def test_info_nce_matches_a_brute_force_loop():
    torch.manual_seed(0)
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    assert math.isclose(float(info_nce(a, b, 0.3)), brute_info_nce(a, b, 0.3), rel_tol=1e-5)


def test_koleo_matches_a_brute_force_loop_and_prefers_spread_points():
    torch.manual_seed(1)
    z = torch.randn(6, 4)
    unit = [v / v.norm() for v in z]
    brute = -sum(math.log(min(float((u - w).norm()) for j, w in enumerate(unit) if j != i) + 1e-8)
                 for i, u in enumerate(unit)) / len(unit)
    assert math.isclose(float(koleo(z)), brute, rel_tol=1e-5)
    crowded = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    spread = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert koleo(spread) < koleo(crowded)


@pytest.mark.parametrize("method", METHODS)
def test_every_fitted_head_balances_its_bits(method):
    x, head, before = skewed_head()
    fold_into_head(head, before, method)
    with torch.no_grad():
        after = head(x).numpy()
    assert bit_statistics(before > 0)[0] > 0.4  # off-centre outputs: nearly constant bits
    assert bit_statistics(after > 0)[0] <= 0.01


def test_whitening_decorrelates_the_bits_that_centring_leaves_correlated():
    x, head, before = skewed_head()
    centred, whitened = copy.deepcopy(head), copy.deepcopy(head)
    fold_into_head(centred, before, "centre")
    fold_into_head(whitened, before, "whiten-itq")
    with torch.no_grad():
        corr_centred = bit_statistics(centred(x).numpy() > 0)[1]
        corr_whitened = bit_statistics(whitened(x).numpy() > 0)[1]
    assert corr_whitened < 0.05 < corr_centred


def skewed_head():
    """A linear head over features where one direction dominates and every output is off-centre."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    head = nn.Linear(32, 32)
    x = torch.from_numpy(rng.normal(size=(4000, 32)) * np.geomspace(10, 0.1, 32) + 3.0).float()
    with torch.no_grad():
        return x, head, head(x).numpy()


def test_pretrain_command_writes_a_copy_cnn_model_from_a_folder_and_generated_images(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from vetohash.modelfile import read_model
    from vetohash_authority.cli import cli

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "base.vhm"
    result = CliRunner().invoke(cli, ["pretrain", str(folder), "--out", str(out), "--synthetic", "3", "--steps", "2",
                                      "--batch", "4", "--fit-sample", "16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    hasher, meta = read_model(out)
    assert hasher.spec.name == "copy-cnn" and meta["steps"] == 2 and meta["sources"] == 6
