"""List fitting: the discriminant projection, the folded head, and the copy recipe from the command line."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageOps

from vetohash.errors import SpecError, VetohashError
from vetohash.hasher import Hasher
from vetohash.modelfile import read_model, write_model
from vetohash.specs import preset
from vetohash_authority.cli import cli
from vetohash_authority.listfit import ListFitConfig, discriminant_projection, fit_to_list

from .fixtures import TINY_COPY_SPEC

TINY = TINY_COPY_SPEC


def photos(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(np.uint8(np.clip(rng.normal(128, 60, (6, 6, 3)), 0, 255))).resize((64, 64), Image.BICUBIC)
            for _ in range(count)]


def test_projection_prefers_directions_that_vary_between_images_but_not_under_edits():
    rng = np.random.default_rng(0)
    # Axis 0: large spread between images but edits move it as much. Axis 1: smaller spread, edits barely move it.
    total = rng.normal(size=(2000, 3)) * [10.0, 3.0, 0.5]
    within = rng.normal(size=(2000, 3)) * [10.0, 0.1, 0.5]
    top = discriminant_projection(total, within, 1, regularisation=0.0)[0]
    assert abs(top[1]) / np.linalg.norm(top) > 0.99


def test_fitted_model_has_the_requested_bits_balanced_and_round_trips(tmp_path):
    torch.manual_seed(0)
    base = Hasher(TINY, TINY.build())
    banned = photos(6)
    fitted, meta = fit_to_list(base, banned, ListFitConfig(views=8, background=40, bits=16), seed=3)
    assert fitted.spec.bits == 16 and meta["kind"] == "list-fit"
    images = banned + photos(40, seed=1)

    def imbalance(hasher):
        return float(np.abs(np.unpackbits(hasher.hash_images(images), axis=1).mean(axis=0) - 0.5).mean())

    # Centred on the fit set's medians; the untrained head's bits are nearly constant.
    assert imbalance(fitted) < 0.2 < imbalance(base)
    write_model(tmp_path / "m.vhm", fitted, meta)
    again, _ = read_model(tmp_path / "m.vhm")
    assert np.array_equal(again.hash_images(banned), fitted.hash_images(banned))


def test_a_bordered_copy_hashes_like_its_original_when_the_fit_trims():
    torch.manual_seed(0)
    base = Hasher(TINY, TINY.build())
    banned = photos(6)
    bordered = [ImageOps.expand(image, border=9, fill=(255, 255, 255)) for image in banned]
    for trim in (True, False):
        fitted, _ = fit_to_list(base, banned, ListFitConfig(views=4, background=20, bits=16, trim=trim), seed=0)
        same = np.array_equal(fitted.hash_images(bordered), fitted.hash_images(banned))
        assert same is trim


def test_list_fitting_refuses_the_paper_network_and_too_many_bits():
    paper = preset("paper-cnn")
    with pytest.raises(SpecError, match="copy-cnn"):
        fit_to_list(Hasher(paper, paper.build()), photos(2), ListFitConfig(views=2, background=0), seed=0)
    with pytest.raises(SpecError, match="bits"):
        fit_to_list(Hasher(TINY, TINY.build()), photos(2), ListFitConfig(views=2, background=0, bits=512), seed=0)


def test_copy_recipe_from_the_command_line_writes_a_model_and_refuses_paper_options(tmp_path):
    torch.manual_seed(0)
    base = tmp_path / "base.vhm"
    write_model(base, Hasher(TINY, TINY.build()), {"kind": "pretrained"})
    folder = tmp_path / "banned"
    folder.mkdir()
    for i, image in enumerate(photos(4)):
        image.save(folder / f"{i}.png")
    out = tmp_path / "fitted.vhm"
    args = ["train", str(folder), "--out", str(out), "--base", str(base), "--views", "4", "--background", "8",
            "--bits", "16", "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    fitted = read_model(out)[0]
    # Flat margins are cut and rotated queries turned upright by default; each can be turned off.
    assert fitted.spec.bits == 16 and fitted.spec.preprocess.trim and fitted.spec.preprocess.upright
    for flag, field in (("--no-trim", "trim"), ("--no-upright", "upright")):
        kept = CliRunner().invoke(cli, [*args, flag])
        assert kept.exit_code == 0, kept.output
        pre = read_model(out)[0].spec.preprocess
        assert not getattr(pre, field) and getattr(pre, {"trim": "upright", "upright": "trim"}[field])
    refused = CliRunner().invoke(cli, [*args, "--epochs", "3"])
    assert refused.exit_code == 2 and "--recipe paper" in refused.output


def test_more_fits_keep_the_one_that_catches_most_of_the_authoritys_own_copies(tmp_path):
    torch.manual_seed(0)
    base = tmp_path / "base.vhm"
    write_model(base, Hasher(TINY, TINY.build()), {"kind": "pretrained"})
    banned, innocent = tmp_path / "banned", tmp_path / "innocent"
    banned.mkdir()
    for i, image in enumerate(photos(5)):
        image.save(banned / f"{i}.png")
    for group in range(3):
        (innocent / f"g{group}").mkdir(parents=True)
        for i, image in enumerate(photos(12, seed=10 + group)):
            image.save(innocent / f"g{group}" / f"{i}.png")
    out = tmp_path / "fitted.vhm"
    args = ["train", str(banned), "--out", str(out), "--base", str(base), "--views", "2", "--background", "8",
            "--bits", "16", "--quiet", "--seed", "5"]
    result = CliRunner().invoke(cli, [*args, "--fits", "3", "--innocent", str(innocent), "--target-fpr", "0.1",
                                      "--json"])
    assert result.exit_code == 0, result.output
    selection = json.loads(result.stdout)["selection"]
    caught = selection["own_copies_caught"]
    # The fits differ, and the best is neither the first nor the last, so the choice means something.
    assert len(caught) == 3 and caught[1] > max(caught[0], caught[2])
    kept = 6
    model, meta = read_model(out)
    assert selection["kept_seed"] == kept == meta["seed"] and meta["selection"]["own_copies_caught"] == caught
    assert len(selection["thresholds"]) == 3 and set(selection["thresholds"][1]) == {"network", "crops", "dct"}
    # The model written is that fit itself.
    direct, _ = fit_to_list(read_model(base)[0], photos(5), ListFitConfig(views=2, background=8, bits=16), seed=kept)
    probe = photos(8, seed=99)
    assert np.array_equal(model.hash_images(probe), direct.hash_images(probe))
    for extra in (["--fits", "2"], ["--innocent", str(innocent)]):
        refused = CliRunner().invoke(cli, [*args, *extra])
        assert refused.exit_code == 2 and "needs --innocent" in refused.output
    missing = CliRunner().invoke(cli, [*args, "--fits", "2", "--innocent", str(tmp_path / "none")])
    assert isinstance(missing.exception, VetohashError) and "no such folder" in str(missing.exception)
