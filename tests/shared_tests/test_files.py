"""Image discovery and parallel decoding keep order and isolate bad files."""

import pytest
from PIL import Image

from vetohash.errors import VetohashError
from vetohash.files import image_files


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
