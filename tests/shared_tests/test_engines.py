"""The inference engines: ONNX Runtime (the `onnx` extra, which `make setup` installs) computes what torch
computes within the documented tolerance, the same bits whatever its thread count or batch, and reading a
bundle or a model file builds no network and imports neither engine.

That the authority's published hashes and the platform's screening hashes of the same images are the same
bits is pinned end to end in tests/test_end_to_end.py (exact copies, distance 0): both go through
vetohash.engines.engine.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vetohash.engines import TOLERANCE, engine_name, onnx_engine, torch_engine
from vetohash.hasher import Hasher
from vetohash.hashes import pack_signs
from vetohash.modelfile import read_model
from vetohash.preprocess import open_image
from vetohash.specs import PRESETS
from vetohash.weights import module_arrays

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "authority" / "vetohash_authority" / "models" / "copy-base.vhm"
EXAMPLES = sorted((ROOT / "examples" / "banned").glob("*.jpg"))[:24] + \
    sorted((ROOT / "examples" / "unrelated").glob("*.jpg"))[:24]


@pytest.fixture(scope="module")
def base() -> Hasher:
    return read_model(BASE)[0]


def random_hasher(name: str, mirror: bool | None = None) -> Hasher:
    torch.manual_seed(0)
    spec = PRESETS[name]
    if mirror is not None:
        spec = dataclasses.replace(spec, arch=dict(spec.arch, mirror=mirror))
    network = spec.build()
    with torch.no_grad():  # batch-norm statistics away from their identity defaults, so folding them is tested
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.2, 0.2)
    return Hasher(spec, network)


def test_the_onnx_extra_is_installed_so_onnx_runtime_is_the_engine():
    assert engine_name() == "onnxruntime"


@pytest.mark.parametrize("name,mirror", [("paper-cnn", None), ("paper-cnn-avg", None), ("copy-cnn", True),
                                         ("copy-cnn", False)])
def test_onnx_runtime_computes_the_torch_network_within_the_tolerance(name, mirror):
    hasher = random_hasher(name, mirror)
    pre = hasher.spec.preprocess
    batch = np.random.default_rng(1).normal(size=(16, pre.channels, pre.size, pre.size)).astype(np.float32)
    ours = onnx_engine(hasher.spec, hasher.arrays())(batch)
    theirs = torch_engine(hasher.spec, hasher.arrays())(batch)
    assert ours.shape == theirs.shape == (16, hasher.spec.bits)
    assert np.abs(ours - theirs).max() <= TOLERANCE


def test_the_shipped_model_hashes_the_examples_alike_in_both_engines(base):
    batch = base.preprocess([open_image(path) for path in EXAMPLES])
    ours = onnx_engine(base.spec, base.arrays())(batch)
    theirs = torch_engine(base.spec, base.arrays())(batch)
    assert np.abs(ours - theirs).max() <= TOLERANCE
    # Bits can differ only where an embedding value is within the tolerance of zero.
    differ = (ours > 0) != (theirs > 0)
    assert np.all(np.abs(theirs[differ]) <= TOLERANCE)
    assert np.array_equal(pack_signs(ours), base.hash_arrays(batch))


def test_onnx_runtime_gives_the_same_bits_on_any_thread_count_and_batch(base):
    batch = base.preprocess([open_image(path) for path in EXAMPLES[:12]])
    one = onnx_engine(base.spec, base.arrays(), threads=1)(batch)
    assert np.array_equal(one, onnx_engine(base.spec, base.arrays(), threads=2)(batch))
    singles = np.concatenate([onnx_engine(base.spec, base.arrays(), threads=1)(batch[i:i + 1])
                              for i in range(len(batch))])
    assert np.array_equal(one, singles)


def test_the_torch_network_holds_exactly_the_weights_its_spec_lists():
    for name, spec in PRESETS.items():
        arrays = module_arrays(spec.build())
        assert {k: (a.dtype.str, a.shape) for k, a in arrays.items()} == spec.weight_shapes(), name


def test_reading_a_model_file_imports_no_engine_until_it_hashes():
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from vetohash.modelfile import read_model\n"
        f"hasher, meta = read_model(Path({str(BASE)!r}))\n"
        "assert not {'torch', 'onnxruntime'} & set(sys.modules), sorted({'torch', 'onnxruntime'} & set(sys.modules))\n"
        "hasher.hash_arrays(__import__('numpy').zeros((1, 3, 64, 64), 'float32'))\n"
        "assert 'onnxruntime' in sys.modules and 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_reading_a_bundle_builds_no_network_and_imports_no_engine(base, tmp_path):
    from vetohash.bundle import Bundle, sign_bundle
    from vetohash.keys import generate_private_key, public_key_of

    key = generate_private_key()
    hashes = np.zeros((1, base.spec.hash_bytes), np.uint8)
    bundle = Bundle(spec=base.spec, weights=base.encoded_weights(), hashes=hashes, ids=("h1",), threshold=10,
                    authority="Test", key_id=public_key_of(key).key_id, list_name="test", sequence=1,
                    created=1_700_000_000, expires=4_000_000_000)
    (tmp_path / "list.vhb").write_bytes(sign_bundle(bundle, key))
    (tmp_path / "key.pub").write_text(public_key_of(key).to_text())
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from vetohash.bundle import read_bundle_file\n"
        "from vetohash.keys import read_public_key\n"
        f"key = read_public_key(Path({str(tmp_path / 'key.pub')!r}))\n"
        f"bundle, _ = read_bundle_file(Path({str(tmp_path / 'list.vhb')!r}), {{key.key_id: key}})\n"
        "assert len(bundle.hashes) == 1\n"
        "assert not {'torch', 'onnxruntime'} & set(sys.modules), sorted({'torch', 'onnxruntime'} & set(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
