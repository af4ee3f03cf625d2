"""Finding image files and decoding many of them in parallel, in a stable order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ImageError, VetohashError
from .preprocess import FORMATS, Preprocess, load_array

# Lower-case suffixes of the formats open_image decodes, e.g. ".jpg", ".png", ".webp".
IMAGE_SUFFIXES = frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in FORMATS)
CHUNK = 256


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


def load_arrays(paths: Sequence[Path], pre: Preprocess, workers: int = 2) -> Iterator[tuple[Path, np.ndarray | ImageError]]:
    """Decode and preprocess files on a thread pool (Pillow releases the GIL); yield results in input order.

    A file that fails yields its ImageError instead of an array, so one bad file never stops a batch.
    """

    def one(path: Path) -> np.ndarray | ImageError:
        try:
            return load_array(path, pre, name=str(path))
        except ImageError as error:
            return error

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(paths), CHUNK):  # bounded look-ahead keeps memory flat on huge folders
            chunk = paths[start:start + CHUNK]
            yield from zip(chunk, pool.map(one, chunk))
