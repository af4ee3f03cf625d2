"""vetohash.preprocess: hostile bytes are refused with ImageError, every mode becomes the same RGB,
and a spec gives the same tensor bit for bit, in this process and in a fresh one."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vetohash
from vetohash import files, preprocess
from vetohash.errors import ImageError, ImageTooLargeError, SpecError
from vetohash.preprocess import Preprocess, load_array, open_image, to_array

RGB_SPEC = {
    "mode": "RGB",
    "size": 16,
    "resample": "bilinear",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
L_SPEC = {"mode": "L", "size": 8, "resample": "box", "mean": [0.5], "std": [0.25]}
IDENTITY_RGB = Preprocess("RGB", 8, "nearest", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def gradient(width: int = 40, height: int = 24) -> Image.Image:
    """A non-square image where every pixel differs, so a wrong rotation or flip shows."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def png_with_header_size(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR then claims width x height (CRC fixed, so only the size lies)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# --- Preprocess spec ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [RGB_SPEC, L_SPEC])
def test_spec_round_trips_through_plain_types(spec: dict) -> None:
    """to_dict gives lists, not tuples (msgpack-able), and from_dict gives back an equal value."""
    pre = Preprocess.from_dict(spec)
    assert pre.to_dict() == spec
    assert all(type(v) is list for k, v in pre.to_dict().items() if k in ("mean", "std"))
    assert Preprocess.from_dict(pre.to_dict()) == pre
    assert pre.channels == len(spec["mean"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mode": "RGBA"}, "mode"),
        ({"mode": b"RGB"}, "mode"),
        ({"size": 7}, "size"),
        ({"size": 1025}, "size"),
        ({"size": 16.0}, "size"),
        ({"size": True}, "size"),
        ({"resample": "cubic"}, "resample"),
        ({"resample": 2}, "resample"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"mean": [0.5, 0.5, 0.5, 0.5]}, "mean"),
        ({"mean": [0, 0.5, 0.5]}, "mean"),
        ({"mean": [False, 0.5, 0.5]}, "mean"),
        ({"mean": [float("nan"), 0.5, 0.5]}, "mean"),
        ({"mean": "0.5"}, "mean"),
        ({"std": [0.2, 0.0, 0.2]}, "std"),
        ({"std": [0.2, -0.1, 0.2]}, "std"),
        ({"std": [0.2, float("inf"), 0.2]}, "std"),
        ({"std": (np.float64(0.2),) * 3}, "std"),
    ],
)
def test_spec_rejects_wrong_types_and_values(change: dict, field: str) -> None:
    """Every field is checked exactly (bool is not int, int is not float, finite, std > 0)."""
    with pytest.raises(SpecError, match=f"preprocess.{field}") as info:
        Preprocess.from_dict({**RGB_SPEC, **change})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({k: v for k, v in RGB_SPEC.items() if k != "std"}, "std"),
        ({**RGB_SPEC, "crop": 0.9}, "'crop'"),
        ({**RGB_SPEC, 1: 2}, "1"),
    ],
)
def test_spec_rejects_wrong_key_set(spec: dict, named: str) -> None:
    """The key set is exact: a missing or unexpected key is named, never ignored."""
    with pytest.raises(SpecError, match=named):
        Preprocess.from_dict(spec)


def test_spec_rejects_non_mapping() -> None:
    """A spec that is not a map at all is a SpecError, not a TypeError."""
    with pytest.raises(SpecError):
        Preprocess.from_dict([("mode", "RGB")])  # type: ignore[arg-type]


def test_constructor_validates_like_from_dict() -> None:
    """Direct construction goes through the same checks, so no invalid Preprocess exists."""
    with pytest.raises(SpecError, match="preprocess.mean"):
        Preprocess("L", 8, "box", (0.5, 0.5), (1.0,))
    with pytest.raises(SpecError, match="preprocess.std"):
        Preprocess("L", 8, "box", (0.5,), [1.0])  # type: ignore[arg-type]


# --- to_array -------------------------------------------------------------------------------------


def test_rgb_array_shape_dtype_and_normalisation() -> None:
    """RGB: float32 (3, size, size), each channel (v / 255 - mean[c]) / std[c], in float32."""
    pre = Preprocess.from_dict(RGB_SPEC)
    arr = to_array(Image.new("RGB", (50, 30), (255, 128, 0)), pre)
    assert arr.shape == (3, 16, 16) and arr.dtype == np.float32 and arr.flags.c_contiguous
    for c, v in enumerate((255, 128, 0)):
        scaled = np.float32(v) / np.float32(255)
        expected = (scaled - np.float32(pre.mean[c])) / np.float32(pre.std[c])
        assert np.all(arr[c] == expected)


def test_l_array_uses_itu_601_luma() -> None:
    """L: one channel of Pillow's 601-2 luma (pure red is 76), normalised the same way."""
    pre = Preprocess.from_dict(L_SPEC)
    arr = to_array(Image.new("RGB", (9, 9), (255, 0, 0)), pre)
    assert arr.shape == (1, 8, 8) and arr.dtype == np.float32
    assert np.all(arr == (np.float32(76) / np.float32(255) - np.float32(0.5)) / np.float32(0.25))


def test_resize_squashes_and_uses_the_named_filter() -> None:
    """Any aspect becomes size x size; a shrunk checkerboard averages under box, not nearest."""
    board = Image.fromarray((np.indices((64, 32)).sum(axis=0) % 2 * 255).astype(np.uint8))
    near = to_array(board, Preprocess("L", 8, "nearest", (0.0,), (1.0,)))
    box = to_array(board, Preprocess("L", 8, "box", (0.0,), (1.0,)))
    assert near.shape == box.shape == (1, 8, 8)
    assert set(np.unique(near)) <= {0.0, 1.0}
    assert np.allclose(box, 0.5, atol=1 / 255)


def test_to_array_accepts_any_mode_like_open_image() -> None:
    """An RGBA image handed straight to to_array is flattened over white, as open_image does."""
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.all(to_array(clear, IDENTITY_RGB) == 1.0)


# --- open_image: modes ----------------------------------------------------------------------------


def _palette_with_transparency() -> bytes:
    im = Image.new("P", (8, 8), 0)
    im.putpalette([255, 0, 0, 0, 0, 255])
    im.paste(1, (0, 0, 4, 8))
    return encode(im, "PNG", transparency=0)


def _palette_with_alpha_bytes() -> bytes:
    im = Image.new("P", (8, 8), 0)
    im.putpalette([255, 0, 0, 0, 0, 255])
    return encode(im, "PNG", transparency=bytes([100, 255]))


def _rgba() -> bytes:
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    im.paste((0, 0, 0, 128), (0, 0, 4, 8))
    return encode(im, "PNG")


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (8, 8), c) for c in ((0, 0, 255), (255, 0, 0), (0, 255, 0))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


# Each case: file bytes, then the expected RGB at the left (x=0) and right (x=7) of row 0.
MODE_CASES: dict[str, tuple[Callable[[], bytes], tuple[int, ...], tuple[int, ...]]] = {
    # Transparent index 0 hides red: white shows, not the hidden colour; opaque blue stays.
    "palette_transparency": (_palette_with_transparency, (0, 0, 255), (255, 255, 255)),
    # A tRNS chunk giving red alpha 100: red blended over white.
    "palette_alpha_bytes": (_palette_with_alpha_bytes, (255, 155, 155), (255, 155, 155)),
    # Fully transparent red is white; half-transparent black over white is mid-grey.
    "rgba": (_rgba, (127, 127, 127), (255, 255, 255)),
    "la": (lambda: encode(Image.new("LA", (8, 8), (0, 0)), "PNG"), (255,) * 3, (255,) * 3),
    # 16-bit grey keeps its top byte: 0x1234 >> 8 == 0x12.
    "i16_png": (
        lambda: encode(Image.fromarray(np.full((8, 8), 0x1234, np.uint16)), "PNG"),
        (0x12,) * 3,
        (0x12,) * 3,
    ),
    # 32-bit int grey is clipped to 16 bits first; float grey is taken as 0..255.
    "i32_tiff": (
        lambda: encode(Image.fromarray(np.full((8, 8), 70000, np.int32)), "TIFF"),
        (255,) * 3,
        (255,) * 3,
    ),
    "f_tiff": (
        lambda: encode(Image.fromarray(np.full((8, 8), 100.4, np.float32)), "TIFF"),
        (100,) * 3,
        (100,) * 3,
    ),
    "cmyk_jpeg": (
        lambda: encode(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), "JPEG", quality=100),
        (0, 255, 255),
        (0, 255, 255),
    ),
    "ycbcr_tiff": (
        lambda: encode(Image.new("YCbCr", (8, 8), (128, 128, 128)), "TIFF"),
        (128,) * 3,
        (128,) * 3,
    ),
    # CIELab goes through Pillow's own LAB -> RGB conversion (mid-grey L=128 gives 119).
    "lab_tiff": (
        lambda: encode(Image.new("LAB", (8, 8), (128, 128, 128)), "TIFF"),
        (119,) * 3,
        (119,) * 3,
    ),
    # The first frame is used, not a later one or a blend.
    "animated_gif": (_animated_gif, (0, 0, 255), (0, 0, 255)),
}


@pytest.mark.parametrize("case", sorted(MODE_CASES))
def test_every_mode_becomes_loaded_rgb(case: str) -> None:
    """Each decoder mode becomes 8-bit RGB by a fixed rule (see the comments on MODE_CASES)."""
    make, left, right = MODE_CASES[case]
    im = open_image(make())
    assert im.mode == "RGB" and im.size == (8, 8)
    assert im.getpixel((0, 0)) == pytest.approx(left, abs=1)
    assert im.getpixel((7, 0)) == pytest.approx(right, abs=1)


def test_one_bit_image_is_black_and_white() -> None:
    """A 1-bit image maps 0 to black and 1 to white."""
    im = Image.new("1", (8, 8), 0)
    im.paste(1, (4, 0, 8, 8))
    rgb = open_image(encode(im, "PNG"))
    assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((7, 0)) == (255, 255, 255)


def test_exif_orientation_6_equals_rotating_by_hand(tmp_path: Path) -> None:
    """Orientation 6 (rotate 90 clockwise to view) gives the array of the hand-rotated image.

    The JPEG is encoded twice from the same pixels, with and without EXIF; the EXIF segment does
    not change the compressed data, so the two decode to the same pixels before rotation."""
    src = gradient()
    exif = Image.Exif()
    exif[0x0112] = 6
    with_exif = tmp_path / "rotated.jpg"
    with_exif.write_bytes(encode(src, "JPEG", quality=95, exif=exif.tobytes()))
    plain = Image.open(io.BytesIO(encode(src, "JPEG", quality=95))).convert("RGB")
    by_hand = plain.transpose(Image.Transpose.ROTATE_270)

    upright = open_image(with_exif)
    assert upright.size == (24, 40)
    assert np.array_equal(np.asarray(upright), np.asarray(by_hand))
    pre = Preprocess.from_dict(RGB_SPEC)
    assert np.array_equal(load_array(with_exif, pre), to_array(by_hand, pre))


def _damaged_exif_jpeg() -> bytes:
    """Orientation 6, then a description that runs past the end of the EXIF block."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "x" * 200
    return encode(Image.new("RGB", (4, 2)), "JPEG", exif=exif.tobytes()[:-100])


@pytest.mark.filterwarnings("ignore:Tag data larger than file")
def test_damaged_exif_decodes_where_warnings_are_not_errors() -> None:
    """Pillow only warns about damaged EXIF; with the default filters the image decodes, upright."""
    assert open_image(_damaged_exif_jpeg()).size == (2, 4)


def test_warnings_raised_as_errors_become_image_error() -> None:
    """Where warnings are errors (as under pytest), Pillow's warning refuses the file as ImageError
    rather than escaping as a bare UserWarning."""
    assert "Tag data larger than file" in str(_refused(_damaged_exif_jpeg(), name="exif.jpg"))


def test_decoding_leaves_warning_filters_alone() -> None:
    """open_image never edits the process-wide warning filters (files are decoded on threads)."""
    before = list(warnings.filters)
    open_image(_rgba())
    _refused(png_with_header_size(10_000, 10_000), name="bomb.png", max_pixels=2 * 10**8)
    assert warnings.filters == before


def test_threads_decode_like_one_thread(tmp_path: Path) -> None:
    """Decoding many files at once on threads gives the same arrays as one after another."""
    pre = Preprocess.from_dict(RGB_SPEC)
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(encode(gradient(60 + i, 40), "PNG"))
    serial = [load_array(p, pre).tobytes() for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert [a.tobytes() for a in pool.map(lambda p: load_array(p, pre), paths)] == serial


def test_path_and_bytes_give_the_same_image(tmp_path: Path) -> None:
    """A str path, a PathLike and the bytes themselves decode identically."""
    path = tmp_path / "g.png"
    path.write_bytes(encode(gradient(), "PNG"))
    arrays = [np.asarray(open_image(s)) for s in (path, str(path), path.read_bytes())]
    assert all(np.array_equal(arrays[0], a) for a in arrays[1:])


# --- open_image: refusals -------------------------------------------------------------------------


def _refused(source: bytes | Path, name: str | None = None, **kwargs: int) -> ImageError:
    """open_image's error, checked to be one line that names the file."""
    with pytest.raises(ImageError) as info:
        open_image(source, name=name, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name or source}: ")
    assert not re.search(r"\b0x[0-9a-fA-F]+", message), message  # no memory address: it differs each run
    return info.value


@pytest.mark.parametrize(
    ("side", "max_pixels"),
    [
        # Over twice Pillow's global limit, caller allows it: Pillow's DecompressionBombError.
        (100_000, 10**11),
        # Over Pillow's global limit, caller allows it: Pillow only warns, which pytest makes an
        # error; it must come out as ImageTooLargeError, not as the bare warning.
        (10_000, 2 * 10**8),
        # Under Pillow's limit, over MAX_PIXELS: refused from the header by open_image itself.
        (8_000, preprocess.MAX_PIXELS),
    ],
)
def test_decompression_bomb_is_too_large(tmp_path: Path, side: int, max_pixels: int) -> None:
    """A tiny PNG declaring a huge size is refused before decoding, leaving Pillow's limit alone."""
    limit_before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_header_size(side, side))
    assert isinstance(_refused(path, max_pixels=max_pixels), ImageTooLargeError)
    assert Image.MAX_IMAGE_PIXELS == limit_before


def test_bomb_warning_shown_by_default_still_refused() -> None:
    """Where Pillow's bomb warning is only shown (default filters), the header check refuses."""
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLargeError):
        open_image(png_with_header_size(10_000, 10_000))


def test_max_pixels_is_the_callers_limit() -> None:
    """max_pixels is inclusive: 100x100 passes at 10_000 and is too large at 9_999."""
    data = encode(gradient(100, 100), "PNG")
    assert open_image(data, max_pixels=10_000).size == (100, 100)
    assert isinstance(_refused(data, "g.png", max_pixels=9_999), ImageTooLargeError)


def _truncated_jpeg() -> bytes:
    data = encode(gradient(), "JPEG")
    return data[: len(data) // 2]


BAD_FILES: dict[str, Callable[[], bytes]] = {
    "truncated.jpg": _truncated_jpeg,
    "random.png": lambda: np.random.default_rng(0).bytes(4096),
    "text.txt": lambda: b"just some text, not an image\n",
    "empty.png": lambda: b"",
    "bad_header.png": lambda: png_with_header_size(0, 0),
    # A real image in a format outside FORMATS (Pillow could read it, open_image will not).
    "image.ppm": lambda: encode(gradient(), "PPM"),
}


@pytest.mark.parametrize("filename", sorted(BAD_FILES))
def test_unreadable_files_raise_image_error(tmp_path: Path, filename: str) -> None:
    """Corrupt, empty, non-image and disallowed files are all ImageError naming the file."""
    path = tmp_path / filename
    data = BAD_FILES[filename]()
    path.write_bytes(data)
    assert not isinstance(_refused(path), ImageTooLargeError)
    _refused(data, name=filename)


@pytest.mark.parametrize("filename", ["text.txt", "random.png", "image.ppm"])
def test_an_unknown_format_is_named_as_such(tmp_path: Path, filename: str) -> None:
    """Bytes no allowed decoder recognises say so, and which formats are read, in words that do not change."""
    path = tmp_path / filename
    path.write_bytes(BAD_FILES[filename]())
    message = str(_refused(path))
    assert message == f"{path}: not a readable image (unknown image format; BMP, GIF, JPEG, PNG, TIFF, WEBP are read)."
    assert str(_refused(path.read_bytes(), name="upload")) == message.replace(str(path), "upload", 1)


def test_missing_path_and_directory_raise_image_error(tmp_path: Path) -> None:
    """A path that cannot be read as a file is an ImageError too, not an OSError."""
    _refused(tmp_path / "missing.png")
    _refused(tmp_path)


def test_file_byte_limit_is_checked_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file or byte string over MAX_FILE_BYTES is refused whatever it contains; a file is refused
    from its size alone, without being opened."""
    data = encode(gradient(), "PNG")
    path = tmp_path / "big.png"
    path.write_bytes(data)
    monkeypatch.setattr(preprocess, "MAX_FILE_BYTES", len(data) - 1)
    with monkeypatch.context() as patched:
        patched.setattr(files.os, "open", lambda *a: pytest.fail("opened"))
        assert f"over the {len(data) - 1}-byte limit for image files" in str(_refused(path))
    assert f"over the {len(data) - 1}-byte limit for image files" in str(_refused(data, name="big.png"))


def test_bytes_without_a_name_are_labelled() -> None:
    """Bytes with no name still give a message that says what was read."""
    with pytest.raises(ImageError, match=r"^<bytes>: "):
        open_image(b"x")


# --- determinism ----------------------------------------------------------------------------------

_DIGEST_SCRIPT = """
import hashlib, json, sys
from vetohash.preprocess import Preprocess, load_array
arr = load_array(sys.argv[1], Preprocess.from_dict(json.loads(sys.argv[2])))
print(hashlib.sha256(arr.tobytes()).hexdigest())
"""


def test_same_file_same_bits_here_and_in_a_fresh_process(tmp_path: Path) -> None:
    """The array is a pure function of the bytes: twice here, once more in a new interpreter."""
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    path.write_bytes(encode(gradient(333, 211), "JPEG", quality=90, exif=exif.tobytes()))
    pre = Preprocess.from_dict(RGB_SPEC)
    first, second = load_array(path, pre), load_array(path, pre)
    assert first.tobytes() == second.tobytes()

    shared = str(Path(vetohash.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([shared, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _DIGEST_SCRIPT, str(path), json.dumps(RGB_SPEC)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert out.stdout.strip() == hashlib.sha256(first.tobytes()).hexdigest()
