"""Training settings, the held-out split and the pairs: balanced, disjoint, reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vetohash_authority.config import ConfigError, TrainingConfig, from_dict, load_config
from vetohash_authority.pairs import draw_edit, make_pairs, pair_is_validation, plan_copies, validation_numbers

DIGESTS = [f"{i:064x}" for i in range(12)]


def test_default_config_is_the_papers_recipe() -> None:
    config = TrainingConfig()
    assert (config.epochs, config.batch_size, config.validation_share) == (70, 64, 0.25)
    assert config.spec().name == "paper-cnn"
    assert {(plan.name, plan.count) for plan in config.alterations} == {
        ("rotation", 100), ("blur", 100), ("overlay", 100), ("translation", 100)}


def test_config_file_overrides_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text('epochs = 3\nmargin = 2.5\ndropout = 0.1\n[alterations.jpeg]\ncount = 7\nquality = [30, 40]\n'
                    '[alterations.blur]\ncount = 5\n')
    config = load_config(path)
    assert (config.epochs, config.margin, config.spec().arch["dropout"]) == (3, 2.5, 0.1)
    assert [(p.name, p.count) for p in config.alterations] == [("blur", 5), ("jpeg", 7)]
    assert from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("text", "message"), [
    ("epochs = 0", "epochs must be an integer"),
    ("epoch = 3", "unknown setting epoch"),
    ("preset = 'nope'", "unknown model preset"),
    ("[alterations.spin]\ncount = 3", "unknown alteration kind"),
    ("[alterations.blur]\ncount = 0", "count must be an integer"),
    ("epochs = ", "not valid TOML"),
])
def test_bad_config_files_fail_with_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_config_path_that_is_no_readable_file_fails_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="a folder, not a regular file"):
        load_config(tmp_path)
    (tmp_path / "latin1.toml").write_bytes(b"name = '\xe9'")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "latin1.toml")


def test_a_quarter_of_each_images_copies_of_each_kind_is_held_out() -> None:
    config = TrainingConfig()
    copies = plan_copies(DIGESTS, config.alterations, seed=3, share=0.25)
    assert len(copies) == 12 * 4 * 100
    for source in range(12):
        for plan in range(4):
            mine = (copies.source == source) & (copies.plan == plan)
            assert mine.sum() == 100 and copies.validation[mine].sum() == 25


def test_pairs_are_balanced_and_validation_copies_never_train() -> None:
    config = TrainingConfig()
    copies = plan_copies(DIGESTS, config.alterations, seed=3, share=0.25)
    pairs = make_pairs(copies, len(DIGESTS), seed=3)
    n = len(DIGESTS)
    assert len(pairs.train) == 2 * 3600 and len(pairs.validation) == 2 * 1200  # 75/25 of 4800, x2
    for part in (pairs.train, pairs.validation):
        positive = part.label == 1
        assert positive.sum() == (~positive).sum()  # as many negatives as positives
        # positives: a source with one of its own copies; negatives: two different sources
        assert (part.left[positive] < n).all() and (part.right[positive] >= n).all()
        assert (copies.source[part.right[positive] - n] == part.left[positive]).all()
        assert (part.left[~positive] < n).all() and (part.right[~positive] < n).all()
        assert (part.left[~positive] != part.right[~positive]).all()
    train_copies = set(pairs.train.right[pairs.train.label == 1] - n)
    val_copies = set(pairs.validation.right[pairs.validation.label == 1] - n)
    assert not train_copies & val_copies
    assert val_copies == set(np.flatnonzero(copies.validation))

    def unordered(part):  # type: ignore[no-untyped-def]
        negative = part.label == 0
        return {tuple(sorted(p)) for p in zip(part.left[negative], part.right[negative])}

    assert not unordered(pairs.train) & unordered(pairs.validation)  # negative pairings apart too
    assert not pairs.shared_negatives


def test_negatives_repeat_evenly() -> None:
    copies = plan_copies(DIGESTS, TrainingConfig().alterations, seed=1, share=0.25)
    train = make_pairs(copies, len(DIGESTS), seed=1).train
    negative = train.label == 0
    keys = np.minimum(train.left, train.right)[negative] * 100 + np.maximum(train.left, train.right)[negative]
    counts = np.unique(keys, return_counts=True)[1]
    assert counts.max() - counts.min() <= 1


def test_split_and_edits_depend_on_seed_and_content_not_order() -> None:
    plans = TrainingConfig().alterations
    a = validation_numbers(5, DIGESTS[0], "blur", 100, 0.25)
    assert a == validation_numbers(5, DIGESTS[0], "blur", 100, 0.25)
    assert a != validation_numbers(6, DIGESTS[0], "blur", 100, 0.25)
    assert draw_edit(plans[0], 5, DIGESTS[0], 7).params == draw_edit(plans[0], 5, DIGESTS[0], 7).params
    forward = plan_copies(DIGESTS, plans, 5, 0.25)
    backward = plan_copies(DIGESTS[::-1], plans, 5, 0.25)
    per_source = forward.validation.reshape(12, -1)
    assert np.array_equal(per_source[::-1], backward.validation.reshape(12, -1))


def test_pairs_are_reproducible_under_a_seed() -> None:
    copies = plan_copies(DIGESTS, TrainingConfig().alterations, seed=2, share=0.25)
    one, two = make_pairs(copies, 12, seed=2), make_pairs(copies, 12, seed=2)
    assert all(np.array_equal(getattr(one.train, f), getattr(two.train, f)) for f in ("left", "right", "label"))


def test_two_images_share_their_only_negative_pair_and_say_so() -> None:
    copies = plan_copies(DIGESTS[:2], TrainingConfig().alterations, seed=0, share=0.25)
    pairs = make_pairs(copies, 2, seed=0)
    assert pairs.shared_negatives
    assert (pairs.validation.label == 0).sum() == (pairs.validation.label == 1).sum()


def test_pair_split_is_symmetric() -> None:
    i, j = np.triu_indices(50, 1)
    assert np.array_equal(pair_is_validation(i, j, 9, 0.25), pair_is_validation(j, i, 9, 0.25))
    assert 0.15 < pair_is_validation(i, j, 9, 0.25).mean() < 0.35
