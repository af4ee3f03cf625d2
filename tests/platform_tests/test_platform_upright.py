"""A bundle whose spec asks for upright views: the platform screens a rotated copy by the nearest of its views."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from PIL import Image

from vetohash.hasher import Hasher
from vetohash.matching import hamming_matrix
from vetohash.preprocess import open_image, query_arrays

from .helpers import encode


def test_a_rotated_copy_is_screened_by_its_nearest_view_only_under_an_upright_spec(platform, pubkey_file: Path,
                                                                                  make_bundle, hasher, images,
                                                                                  banned_hashes, tmp_path: Path):
    rotated = open_image(images["banned-2"]).rotate(50, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    path = tmp_path / "rotated.png"
    path.write_bytes(encode(rotated, "PNG"))
    spec = dataclasses.replace(hasher.spec, preprocess=dataclasses.replace(hasher.spec.preprocess, upright=True))
    upright = Hasher(spec, hasher.network)
    views = query_arrays(open_image(path), spec.preprocess)
    assert len(views) == 9  # the copy as it is, turned back by the angle its corners show four ways, and their whole parts
    view_hashes = upright.hash_arrays(views)
    # List one upright view's hash in place of the source's: only a platform that screens views can find it.
    apart = hamming_matrix(view_hashes[:1], view_hashes)[0]
    assert apart.max() > 0
    listed = banned_hashes.copy()
    listed[2] = view_hashes[int(apart.argmax())]
    per_view = hamming_matrix(view_hashes, listed).min(axis=1)

    assert platform("trust", "add", pubkey_file, "--name", "acme").code == 0
    reported = {}
    for sequence, bundle_spec in ((1, hasher.spec), (2, spec)):
        bundle = tmp_path / f"{sequence}.vhb"
        bundle.write_bytes(make_bundle(spec=bundle_spec, sequence=sequence, hashes=listed))
        assert platform("ingest", bundle).code == 0
        result = json.loads(platform("screen", "--json", path).stdout)["results"][0]
        reported[bundle_spec.preprocess.upright] = result
    assert reported[False]["distance"] == per_view[0] > 0
    assert reported[True]["distance"] == per_view.min() == 0 and reported[True]["nearest_id"] == "b-002"
    # The hash shown is the image's own, whatever view matched.
    assert reported[True]["hash"] == reported[False]["hash"]
