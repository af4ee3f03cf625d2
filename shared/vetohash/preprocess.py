"""Untrusted image bytes in, the exact tensor a model spec asks for out, identically on any machine.

Decoding is bounded (file bytes, pixel count, an allowlist of formats) and every failure becomes
an `ImageError` that names the file. The tensor is computed with Pillow and numpy only, so the same
bytes give the same array bit for bit wherever the same Pillow runs.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vetohash.errors import ImageError, ImageTooLargeError, SpecError
from vetohash.files import IMAGE_FORMATS, read_bounded
from vetohash.upright import upright_views

MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 64 * 1024 * 1024

_CHANNELS = {"L": 1, "RGB": 3}
_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_MIN_SIZE, _MAX_SIZE = 8, 1024
_FIELDS = ("mode", "size", "resample", "mean", "std", "trim", "upright", "draft")
# Fields older model files and bundles lack, with the value they meant.
_OPTIONAL: dict[str, bool | int] = {"trim": False, "upright": False, "draft": 0}
_MAX_DRAFT = 4096

# Flat-margin trimming (see trim_margins): margins are found on a copy at most this many pixels on a side...
TRIM_WORK_SIDE = 256
# ...a row or column is flat when every channel's standard deviation along it is at most this (0..255)...
TRIM_FLAT_STD = 6
# ...and at most this share of a side is cut from each edge, so a mostly flat image is left alone.
TRIM_MAX_SHARE = 0.4

# What Pillow's plugins raise on malformed input (UnidentifiedImageError is an OSError; struct.error
# and IndexError come from short headers and bad offsets). Warning is here for processes that turn
# warnings into errors: Pillow's warnings about damaged files then refuse the file, not escape.
_DECODE_ERRORS = (
    Warning,
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    EOFError,
    IndexError,
    KeyError,
    ZeroDivisionError,
    struct.error,
)


@dataclass(frozen=True)
class Preprocess:
    """How a model turns an RGB image into its input: colour mode, side, filter, normalisation."""

    mode: str
    size: int
    resample: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    trim: bool = False  # cut flat margins (borders, letterboxing, the band a shift leaves) before resizing
    upright: bool = False  # also hash a query turned back upright when its corners show a rotation
    draft: int = 0  # decode reduced, the shorter side kept at least this long (open_image); 0: at full size

    def __post_init__(self) -> None:
        if not isinstance(self.mode, str) or self.mode not in _CHANNELS:
            raise SpecError(
                f"preprocess.mode must be one of {sorted(_CHANNELS)}, not {self.mode!r}."
            )
        if type(self.size) is not int or not _MIN_SIZE <= self.size <= _MAX_SIZE:
            raise SpecError(
                f"preprocess.size must be an int from {_MIN_SIZE} to {_MAX_SIZE}, "
                f"not {self.size!r}."
            )
        if not isinstance(self.resample, str) or self.resample not in _FILTERS:
            raise SpecError(
                f"preprocess.resample must be one of {sorted(_FILTERS)}, not {self.resample!r}."
            )
        for field in ("mean", "std"):
            values = getattr(self, field)
            if not isinstance(values, tuple):
                raise SpecError(f"preprocess.{field} must be a tuple, not {type(values).__name__}.")
            if len(values) != self.channels:
                raise SpecError(
                    f"preprocess.{field} must hold {self.channels} values for mode {self.mode}, "
                    f"not {len(values)}."
                )
            for v in values:
                # bool is an int subclass and numpy scalars are float subclasses: both are refused.
                if type(v) is not float or not math.isfinite(v):
                    raise SpecError(f"preprocess.{field} must hold finite floats, not {v!r}.")
        if any(s <= 0.0 for s in self.std):
            raise SpecError(f"preprocess.std must be positive, not {self.std!r}.")
        for flag in ("trim", "upright"):
            if type(getattr(self, flag)) is not bool:
                raise SpecError(f"preprocess.{flag} must be true or false, not {getattr(self, flag)!r}.")
        if type(self.draft) is not int or not (self.draft == 0 or _MIN_SIZE <= self.draft <= _MAX_DRAFT):
            raise SpecError(f"preprocess.draft must be 0 or an int from {_MIN_SIZE} to {_MAX_DRAFT}, "
                            f"not {self.draft!r}.")

    @property
    def channels(self) -> int:
        """Number of channels in the tensor: 1 for "L", 3 for "RGB"."""
        return _CHANNELS[self.mode]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocess:
        """Build from a decoded spec, refusing missing or unexpected keys and any loose type."""
        if not isinstance(d, Mapping):
            raise SpecError(f"preprocess must be a map, not {type(d).__name__}.")
        missing = sorted(set(_FIELDS) - set(d) - set(_OPTIONAL))
        unexpected = sorted(map(repr, set(d) - set(_FIELDS)))
        if missing or unexpected:
            problems = [f"missing {', '.join(missing)}"] if missing else []
            problems += [f"unexpected {', '.join(unexpected)}"] if unexpected else []
            raise SpecError(f"preprocess keys are wrong: {'; '.join(problems)}.")
        for field in ("mean", "std"):
            if not isinstance(d[field], list | tuple):
                kind = type(d[field]).__name__
                raise SpecError(f"preprocess.{field} must be a list, not {kind}.")
        return cls(
            mode=d["mode"],
            size=d["size"],
            resample=d["resample"],
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            trim=d.get("trim", _OPTIONAL["trim"]),
            upright=d.get("upright", _OPTIONAL["upright"]),
            draft=d.get("draft", _OPTIONAL["draft"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain msgpack-able form; `from_dict(to_dict())` gives back an equal value. An optional field at
        its default is left out, so specs that do not use it keep the bytes they always had."""
        out: dict[str, Any] = {
            "mode": self.mode,
            "size": self.size,
            "resample": self.resample,
            "mean": list(self.mean),
            "std": list(self.std),
        }
        out.update({key: getattr(self, key) for key, default in _OPTIONAL.items() if getattr(self, key) != default})
        return out


def open_image(
    source: bytes | str | os.PathLike[str],
    *,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
    draft: int = 0,
) -> Image.Image:
    """Decode untrusted bytes or a file into a fully loaded RGB image, upright, first frame only.

    With `draft` (a spec's Preprocess.draft), the image is reduced so its shorter side is from `draft` to
    2 * `draft` - 1 pixels (when it is longer): a JPEG is first decoded at 1/2, 1/4 or 1/8 of its size by
    libjpeg (Pillow's Image.draft: the largest scale keeping both sides at least `draft`; several times
    cheaper than a full decode); then, made RGB and upright, the image is box-averaged (Image.reduce) by the
    whole factor shorter side // `draft`, when that is 2 or more. The same bytes give the same pixels wherever
    the same Pillow runs, as without `draft`.

    Raises ImageTooLargeError above `max_pixels` (checked from the header, before any pixel is
    decoded; Pillow's own global bomb limit still caps it) and ImageError for anything unreadable.
    The process's warning filters are left alone (changing them is not thread-safe, and files are
    decoded on threads): Pillow's warnings print as usual, go to the file's result (route_warnings,
    collected_warnings), or refuse the file where they are errors.
    """
    if isinstance(source, bytes):
        label = name or "<bytes>"
        data = source
    else:
        label = name or os.fspath(source)
        data = read_image_file(source, label)
    if not data:
        raise ImageError(f"{label}: not a readable image (empty).")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label}: over the {MAX_FILE_BYTES}-byte limit for image files")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"{label}: {width}x{height} pixels is more than the limit of {max_pixels}."
                )
            if draft and im.format == "JPEG":
                im.draft(im.mode, (draft, draft))
            im.load()  # the first frame: Image.open leaves an animation at frame 0
            rgb = _to_rgb(ImageOps.exif_transpose(im))
            factor = min(rgb.size) // draft if draft else 1
            return rgb.reduce(factor) if factor > 1 else rgb
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{label}: too many pixels ({_one_line(exc)}).") from exc
    except UnidentifiedImageError as exc:  # Pillow's text names its BytesIO object: noise, and new each run
        raise ImageError(f"{label}: not a readable image (unknown image format; {', '.join(IMAGE_FORMATS)} are "
                         f"read).") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{label}: not a readable image ({_one_line(exc)}).") from exc


def header_pixels(data: bytes) -> int:
    """Width times height from an image's header, decoding no pixel; 0 when the header cannot be read
    (open_image then says why). For callers that budget memory before decoding."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
            width, height = im.size
            return int(width) * int(height)
    except (Image.DecompressionBombError, *_DECODE_ERRORS):
        return 0


# Warnings shown while a thread decodes inside collected_warnings() go to that thread's list (see route_warnings).
_collecting = threading.local()


def route_warnings() -> None:
    """Send each warning shown while a thread is inside `collected_warnings()` to that thread's list, not to
    stderr, and show every one of Pillow's (not only the first from each line of its code), so each file's
    warnings can be reported with that file. Process-wide, so for command lines and services, before any
    decoding thread starts; once is enough. Warnings that are errors still raise, and refuse the file."""
    if getattr(warnings.showwarning, "routes_vetohash", False):
        return
    shown = warnings.showwarning

    def route(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              file: Any = None, line: str | None = None) -> None:
        caught = getattr(_collecting, "caught", None)
        if caught is None:
            shown(message, category, filename, lineno, file, line)
        else:
            caught.append(f"{category.__name__}: {' '.join(str(message).split())}")

    route.routes_vetohash = True  # type: ignore[attr-defined]
    warnings.showwarning = route
    warnings.filterwarnings("always", module=r"PIL(\.|$)")


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """The warnings this thread shows meanwhile, one line each (`Category: text`), once route_warnings() is
    in force; without it they print as usual and the list stays empty."""
    caught: list[str] = []
    _collecting.caught = caught
    try:
        yield caught
    finally:
        _collecting.caught = None


def to_array(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """The float32 (channels, size, size) tensor `pre` describes, from Pillow and numpy alone.

    The image is squashed to a square (no aspect keeping) with the named filter, which antialiases
    when shrinking; pixels go to [0, 1] by /255, then each channel c to (x - mean[c]) / std[c].
    "L" is Pillow's ITU-R 601-2 luma. A non-RGB image is first made RGB by open_image's rules. With
    `pre.trim`, flat margins are cut first (trim_margins).
    """
    rgb = image if image.mode == "RGB" else _to_rgb(image)
    if pre.trim:
        rgb = trim_margins(rgb)
    resized = (rgb if pre.mode == "RGB" else rgb.convert(pre.mode)).resize((pre.size, pre.size),
                                                                          resample=_FILTERS[pre.resample])
    x = np.asarray(resized, dtype=np.float32).reshape(pre.size, pre.size, pre.channels)
    x = x.transpose(2, 0, 1) / np.float32(255)
    mean = np.asarray(pre.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(pre.std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def query_arrays(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """The (views, channels, size, size) inputs a query is hashed from: `to_array(image)` first, then, when
    `pre.upright` and the image's corners show a rotation, the image turned back upright (vetohash.upright).
    A query's distance to a banned hash is the least over its views; banned images are hashed as they are."""
    images = [image] + (upright_views(image) if pre.upright else [])
    return np.stack([to_array(view, pre) for view in images])


def trim_margins(image: Image.Image) -> Image.Image:
    """`image` without its flat margins: the rows and columns at each edge along which the colour barely
    changes, such as an added border, letterboxing, or the band a shift leaves uncovered.

    A border moves and shrinks the picture inside the frame, which a copy detector then has to see through;
    cutting it makes the bordered copy look like its original again. The margins are measured on a copy at
    most TRIM_WORK_SIDE pixels on a side (Pillow's box filter), with integer arithmetic only, so every
    machine cuts the same rows; at most TRIM_MAX_SHARE of each side goes, so a mostly flat image is kept.
    """
    width, height = image.size
    work = image
    if max(width, height) > TRIM_WORK_SIDE:
        factor = TRIM_WORK_SIDE / max(width, height)
        work = image.resize((max(1, round(width * factor)), max(1, round(height * factor))), Image.Resampling.BOX)
    # Channels first (contiguous lines sum fast); int32 holds squares and sums of <= 256 of them.
    pixels = np.ascontiguousarray(np.asarray(work if work.mode == "RGB" else work.convert("RGB"),
                                             dtype=np.int32).transpose(2, 0, 1))
    squares = pixels * pixels
    rows, columns = _flat_lines(pixels, squares, 2), _flat_lines(pixels, squares, 1)
    top, bottom = _leading(rows), _leading(rows[::-1])
    left, right = _leading(columns), _leading(columns[::-1])
    if not top + bottom + left + right:
        return image
    w, h = work.size
    box = (left * width // w, top * height // h, width - right * width // w, height - bottom * height // h)
    return image.crop(box)


def _flat_lines(pixels: np.ndarray, squares: np.ndarray, axis: int) -> np.ndarray:
    """For each row (`axis` 2) or column (`axis` 1) of the (channels, height, width) `pixels` (`squares` their
    squares), whether every channel's standard deviation along it is at most TRIM_FLAT_STD: n * sum(x^2) -
    sum(x)^2 is n^2 times the variance, exactly, in integers."""
    count = pixels.shape[axis]
    total = pixels.sum(axis=axis).astype(np.int64)
    squares = squares.sum(axis=axis).astype(np.int64)
    return (count * squares - total * total <= (TRIM_FLAT_STD * count) ** 2).all(axis=0)


def _leading(flat: np.ndarray) -> int:
    """How many leading entries of `flat` are true, capped at TRIM_MAX_SHARE of them."""
    run = len(flat) if flat.all() else int(np.argmin(flat))
    return min(run, int(len(flat) * TRIM_MAX_SHARE))


def load_array(
    source: bytes | str | os.PathLike[str],
    pre: Preprocess,
    *,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """`to_array(open_image(source))`, decoded as `pre` says: the tensor for one untrusted image."""
    return to_array(open_image(source, max_pixels=max_pixels, name=name, draft=pre.draft), pre)


def read_image_file(path: str | os.PathLike[str], label: str) -> bytes:
    """An image file's bytes, at most MAX_FILE_BYTES, refusing anything but a regular file before reading it
    (ImageError naming `label`); for callers that need the bytes themselves, e.g. to digest them, before
    `open_image`."""
    return read_bounded(path, MAX_FILE_BYTES, "image file", ImageError, label)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB, by fixed rules so every decoder path gives the same pixels.

    High-bit-depth grey keeps its top 8 bits (I;16 and I: clip to 0..65535, >> 8); float grey is
    taken as 0..255 (rounded, clipped, NaN as 0). Transparent images are composited over white,
    because the colour hidden under a transparent pixel is arbitrary and would otherwise leak into
    the hash. ICC profiles are ignored: colour management would tie the result to a CMS build.
    """
    if im.mode == "I" or im.mode.startswith("I;16"):
        grey = np.asarray(im).astype(np.int64)
        im = Image.fromarray((np.clip(grey, 0, 65535) >> 8).astype(np.uint8))
    elif im.mode == "F":
        grey = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        im = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
    if im.has_transparency_data:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9A-Fa-f]+>")


def _one_line(exc: BaseException) -> str:
    """An exception as `Type: text` on one line, for messages printed as they are; an object's repr with its
    memory address (`<_io.BytesIO object at 0x7f...>`) becomes `<...>`, so a message is the same each run."""
    text = _OBJECT_REPR.sub("<...>", " ".join(str(exc).split()))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
