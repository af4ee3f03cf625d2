"""The hasher is deterministic: same image, same hash, in this process, in a fresh one, alone or in a batch."""

import io
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from vetohash.hasher import Hasher
from vetohash.preprocess import open_image
from vetohash.specs import preset


def make_hasher(seed: int = 0) -> Hasher:
    torch.manual_seed(seed)
    spec = preset("paper-cnn")
    return Hasher(spec, spec.build())


def photo_like_png(seed: int, size: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    # Smooth structure plus detail, so hashes are not dominated by noise.
    base = rng.normal(size=(size // 8, size // 8, 3))
    image = Image.fromarray(np.uint8(np.clip(base * 60 + 128, 0, 255))).resize((size, size), Image.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_the_same_bytes_hash_identically_twice():
    hasher = make_hasher()
    data = photo_like_png(1)
    first = hasher.hash_images([open_image(data)])
    second = hasher.hash_images([open_image(data)])
    assert first.tobytes() == second.tobytes()


def test_a_batch_hashes_each_image_as_it_would_alone():
    hasher = make_hasher()
    images = [open_image(photo_like_png(seed)) for seed in range(5)]
    batch = hasher.hash_images(images)
    singles = np.concatenate([hasher.hash_images([image]) for image in images])
    assert np.array_equal(batch, singles)


def test_weights_survive_their_encoded_form_exactly():
    hasher = make_hasher(3)
    copy = Hasher.from_encoded(hasher.spec, hasher.encoded_weights())
    batch = hasher.preprocess([open_image(photo_like_png(7))])
    assert np.array_equal(hasher.embed(batch), copy.embed(batch))


def test_a_fresh_process_gives_the_same_hash(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(photo_like_png(2))
    program = (
        "import sys, torch\n"
        "from vetohash.hasher import Hasher\n"
        "from vetohash.preprocess import open_image\n"
        "from vetohash.specs import preset\n"
        "torch.manual_seed(0)\n"
        "spec = preset('paper-cnn')\n"
        "print(Hasher(spec, spec.build()).hash_images([open_image(sys.argv[1])])[0].tobytes().hex())\n"
    )
    result = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == make_hasher().hash_images([open_image(path)])[0].tobytes().hex()
