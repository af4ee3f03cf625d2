"""The authority's source images: found recursively, decoded safely, identified by content, never by name.

A source is identified by the SHA-256 of its file bytes, so its alterations depend on what the image is, not
on where it sits in a folder; `evaluate` finds the same held-out alterations that `train` set aside even if
the folder was renamed or reordered. Unreadable files are skipped and reported, never fatal on their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vetohash.dcthash import dct_hashes
from vetohash.detail import detail
from vetohash.errors import ImageError, VetohashError
from vetohash.files import IMAGE_SUFFIXES, image_files
from vetohash.preprocess import Preprocess, open_image, query_arrays, read_image_file


@dataclass(frozen=True)
class Source:
    """One of the authority's own images, banned or innocent (on the platform, an image to screen is an
    Upload): where it was read, its content digest, a working copy to alter, its model inputs as a query
    (the image as it is first, then any upright views: preprocess.query_arrays), its detail score and its DCT
    hash (vetohash.detail and vetohash.dcthash, from the image decoded as the spec says, Preprocess.draft, as
    the platform computes them for its queries)."""

    path: Path
    digest: str
    image: Image.Image
    views: np.ndarray  # (views, C, S, S)
    detail: float
    dct: np.ndarray  # (dcthash.HASH_BYTES,) uint8

    @property
    def array(self) -> np.ndarray:
        """The model input of the image as it is: what a banned image is hashed from."""
        return self.views[0]


Warn = Callable[[str], None]


def working_copy(image: Image.Image, work_size: int) -> Image.Image:
    """The image shrunk (aspect kept) so its shorter side is at most `work_size`; altering a 4000 px photo
    400 times would take minutes, and the model sees 32 px anyway. Alteration sizes scale with the side."""
    short = min(image.size)
    if short <= work_size:
        return image
    factor = work_size / short
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def read_one(path: Path, pre: Preprocess, work_size: int) -> Source:
    """Read, digest and decode one file; ImageError (naming the file) when it is unreadable."""
    data = read_image_file(path, str(path))
    image = open_image(data, name=str(path), draft=pre.draft)  # decoded as platforms decode it for this spec
    return Source(path, hashlib.sha256(data).hexdigest(), working_copy(image, work_size), query_arrays(image, pre),
                  detail(image), dct_hashes([image])[0])


def load_sources(folder: Path, pre: Preprocess, work_size: int = 256, warn: Warn | None = None,
                 workers: int = 2, minimum: int = 1) -> list[Source]:
    """Every readable image under `folder` (recursive, sorted by path), duplicates by content dropped.

    Each skipped file is passed to `warn` as one line. Raises VetohashError when the folder is missing,
    holds no image files, or fewer than `minimum` readable distinct images.
    """
    if not folder.exists():
        raise VetohashError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise VetohashError(f"{folder}: not a folder")
    paths = image_files([folder])
    if not paths:
        raise VetohashError(f"{folder}: no image files found (looked for {_suffix_hint()})")
    return read_sources(paths, pre, work_size, warn, workers, minimum, str(folder))


def read_sources(paths: Sequence[Path], pre: Preprocess, work_size: int = 256, warn: Warn | None = None,
                 workers: int = 2, minimum: int = 1, where: str = "the given files") -> list[Source]:
    """`load_sources` for an explicit list of files."""

    def one(path: Path) -> Source | ImageError:
        try:
            return read_one(path, pre, work_size)
        except ImageError as error:
            return error

    sources: list[Source] = []
    seen: dict[str, Path] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, result in zip(paths, pool.map(one, paths)):
            if isinstance(result, ImageError):
                if warn:
                    warn(f"skipped {result}")
                continue
            if result.digest in seen:
                if warn:
                    warn(f"skipped {path}: same bytes as {seen[result.digest]}.")
                continue
            seen[result.digest] = path
            sources.append(result)
    if len(sources) < minimum:
        if not sources:
            raise VetohashError(f"{where}: none of the {len(paths)} image files could be read")
        raise VetohashError(f"{where}: {len(sources)} readable distinct image(s); at least {minimum} needed")
    return sources


def _suffix_hint() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES))
