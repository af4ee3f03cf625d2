"""Image discovery and parallel decoding keep order and isolate bad files."""

import numpy as np
import pytest
from PIL import Image

from vetohash.errors import ImageError, VetohashError
from vetohash.files import image_files, load_arrays
from vetohash.specs import preset


def test_folders_are_searched_recursively_in_sorted_order_and_non_images_skipped(tmp_path):
    (tmp_path / "b").mkdir()
    for rel in ("b/2.png", "a.jpg", "b/1.webp"):
        Image.new("RGB", (8, 8)).save(tmp_path / rel)
    (tmp_path / "notes.txt").write_text("not an image")
    found = image_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.jpg", "b/1.webp", "b/2.png"]


def test_a_missing_path_is_an_error_not_an_empty_set(tmp_path):
    with pytest.raises(VetohashError, match="no such file"):
        image_files([tmp_path / "typo"])


def test_parallel_decoding_yields_in_order_and_reports_bad_files_in_place(tmp_path):
    pre = preset("paper-cnn").preprocess
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.new("L", (16, 16), color=i * 40).save(path)
        paths.append(path)
    (tmp_path / "2.png").write_bytes(b"broken")
    results = list(load_arrays(paths, pre, workers=2))
    assert [path for path, _ in results] == paths
    assert isinstance(results[2][1], ImageError)
    for i in (0, 1, 3, 4):
        array = results[i][1]
        assert isinstance(array, np.ndarray) and np.allclose(array, (i * 40 / 255 - 0.5) / 0.5, atol=1e-6)
