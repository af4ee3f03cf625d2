"""Model specs: the paper's network exactly, strict validation, plain-dict round trips."""

import pytest
import torch

from vetohash.errors import SpecError
from vetohash.specs import PRESETS, ModelSpec, preset


def test_paper_cnn_has_the_papers_8640_parameters():
    network = preset("paper-cnn").build()
    assert sum(p.numel() for p in network.parameters() if p.requires_grad) == 8640


def test_paper_cnn_maps_a_32x32_grayscale_image_to_128_floats():
    spec = preset("paper-cnn")
    assert (spec.preprocess.mode, spec.preprocess.size, spec.bits) == ("L", 32, 128)
    out = spec.build().eval()(torch.zeros(3, 1, 32, 32))
    assert out.shape == (3, 128) and out.dtype == torch.float32


def test_paper_cnn_pools_with_max_as_the_model_summary_and_avg_on_request():
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in preset("paper-cnn").build().modules())
    avg = preset("paper-cnn-avg").build()
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in avg.modules())
    assert sum(p.numel() for p in avg.parameters()) == 8640


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_its_plain_dict(name):
    spec = PRESETS[name]
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "change",
    [
        {"bits": 100},  # not a multiple of 8
        {"bits": True},  # bool is not an int here
        {"name": ""},
        {"arch": {"type": "no-such-net"}},
        {"arch": {"type": "paper-cnn", "filters": 64, "kernel": 2, "pool": "max"}},  # dropout missing
        {"arch": {"type": "paper-cnn", "filters": 64, "kernel": 2, "pool": "median", "dropout": 0.1}},
        {"arch": {"type": "paper-cnn", "filters": -1, "kernel": 2, "pool": "max", "dropout": 0.1}},
        {"extra": 1},
    ],
)
def test_malformed_specs_are_refused_with_spec_error(change):
    data = {**preset("paper-cnn").to_dict(), **change}
    with pytest.raises(SpecError):
        ModelSpec.from_dict(data)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(SpecError, match="paper-cnn"):
        preset("nope")


def copy_spec(mirror: bool) -> ModelSpec:
    return ModelSpec.from_dict({
        "name": "copy-test", "bits": 64,
        "arch": {"type": "copy-cnn", "width": 4, "stages": 2, "mirror": mirror},
        "preprocess": {"mode": "RGB", "size": 32, "resample": "bilinear", "mean": [0.5] * 3, "std": [0.25] * 3},
    })


def test_mirror_symmetric_copy_cnn_gives_a_mirrored_image_exactly_the_same_embedding():
    torch.manual_seed(0)
    network = copy_spec(mirror=True).build().eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(network(x), network(x.flip(3)))


def test_copy_cnn_without_mirror_tells_an_image_from_its_mirror():
    torch.manual_seed(0)
    network = copy_spec(mirror=False).build().eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(network(x), network(x.flip(3)))


def test_copy_cnn_mirror_flag_must_be_a_boolean():
    data = copy_spec(True).to_dict()
    data["arch"]["mirror"] = 1
    with pytest.raises(SpecError, match="mirror"):
        ModelSpec.from_dict(data)
