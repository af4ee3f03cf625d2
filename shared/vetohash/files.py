"""Finding image files: folders searched recursively, in a stable order."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from .errors import VetohashError
from .preprocess import FORMATS

# Lower-case suffixes of the formats open_image decodes, e.g. ".jpg", ".png", ".webp".
IMAGE_SUFFIXES = frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in FORMATS)


def image_files(paths: Iterable[Path]) -> list[Path]:
    """Files given directly, plus every file with an image suffix under given folders (recursive, sorted).

    Raises VetohashError for a path that does not exist, so a typo is not silently an empty set.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise VetohashError(f"{path}: no such file or folder")
    return found
