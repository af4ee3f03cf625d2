"""A bundle whose spec trims flat margins: the platform cuts a border before hashing, as the authority did."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from PIL import ImageOps

from vetohash.preprocess import open_image

from .helpers import THRESHOLD, encode


def test_a_bordered_copy_screens_at_distance_zero_only_under_a_trimming_spec(platform, pubkey_file: Path, make_bundle,
                                                                             hasher, images, tmp_path: Path):
    banned = open_image(images["banned-0"])
    bordered = tmp_path / "bordered.png"
    bordered.write_bytes(encode(ImageOps.expand(banned, border=(30, 10, 30, 10), fill=(255, 255, 255)), "PNG"))
    trimming = dataclasses.replace(hasher.spec, preprocess=dataclasses.replace(hasher.spec.preprocess, trim=True))
    assert platform("trust", "add", pubkey_file, "--name", "acme").code == 0
    distances = {}
    for sequence, spec in ((1, hasher.spec), (2, trimming)):
        bundle = tmp_path / f"{sequence}.vhb"
        # The banned images have no flat margins, so their hashes are the same under both specs.
        bundle.write_bytes(make_bundle(spec=spec, sequence=sequence))
        assert platform("ingest", bundle).code == 0
        result = platform("screen", "--json", bordered)
        distances[spec.preprocess.trim] = json.loads(result.stdout)["results"][0]["distance"]
    assert distances[True] == 0 < THRESHOLD <= distances[False]
