"""Files, the one way vetohash touches them: bounded reads that refuse anything but a regular file, atomic
writes of a file or a whole folder with explicit modes, and image files found under folders in a stable order.

Every file vetohash reads may be hostile (a bundle, a model, a key, an image, a path typed by someone else):
a FIFO would block a read forever, /dev/zero would never end, a folder or a device is never what was meant.
Every file or folder it writes is written whole or not at all, with the mode it names whatever the umask.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from .errors import VetohashError

# Formats Pillow may try (vetohash.preprocess.open_image). Others are refused as unreadable: each extra plugin
# is attack surface, and some hand the bytes to outside programs (EPS runs Ghostscript).
IMAGE_FORMATS = ("BMP", "GIF", "JPEG", "PNG", "TIFF", "WEBP")
# Their lower-case suffixes, e.g. ".jpg", ".png", ".webp": what folders are searched for.
IMAGE_SUFFIXES = frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in IMAGE_FORMATS)

FILE_MODE = 0o644  # what a written file is given unless a caller names another
FOLDER_MODE = 0o755  # what a created folder is given unless a caller names another


def read_bounded(path: str | os.PathLike[str], limit: int, what: str, error: type[VetohashError],
                 label: str | None = None, too_large: type[VetohashError] | None = None) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them; anything else raises `error` (or
    `too_large`, for a file over the limit) with one line naming the file (`label`, default the path) and
    saying what is wrong. `what` names the kind of file, in the singular ("bundle", "image file").

    The file is opened non-blocking and checked with fstat before a byte is read, so a FIFO, a device or a
    folder is refused at once (a FIFO would otherwise wait for a writer forever), and the check holds for the
    very file read even if the path is swapped meanwhile.
    """
    name = os.fspath(path) if label is None else label

    def check(info: os.stat_result) -> None:
        kind = _kind(info.st_mode)
        if kind is not None:
            raise error(f"{name}: {kind}, not a regular file")
        if info.st_size > limit:
            raise (too_large or error)(f"{name}: {info.st_size} bytes, over the {limit}-byte limit for {what}s")

    try:
        check(os.stat(path))  # refuses a device, or a file too large, without even opening it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            check(os.fstat(file.fileno()))  # the file actually opened, whatever the path points to now
            data = file.read(limit + 1)  # one byte over refuses a file that grew since fstat
    except FileNotFoundError:
        raise error(f"{name}: no such {what}") from None
    except OSError as exc:
        raise error(f"{name}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise (too_large or error)(f"{name}: over the {limit}-byte limit for {what}s")
    return data


def _kind(mode: int) -> str | None:
    """None for a regular file, else what the file is, in words."""
    if stat.S_ISREG(mode):
        return None
    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "not a file"


def write_atomic(path: Path, data: bytes, error: type[VetohashError], *, mode: int = FILE_MODE,
                 overwrite: bool = True) -> None:
    """Write `data` to `path` whole or not at all, with exactly `mode` whatever the umask: a temporary file
    beside it, synced, then renamed over `path` (or, with `overwrite=False`, linked, which refuses a file
    that exists, even one that appeared a moment ago). The folder must exist (make_folder); any failure
    removes the temporary file and raises `error`."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600 from birth
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            os.link(temp, path)
        _sync_folder(path.parent)
    except FileExistsError:
        raise error(f"{path} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        Path(temp).unlink(missing_ok=True)


@contextmanager
def folder_aside(final: Path, error: type[VetohashError], *, mode: int = FOLDER_MODE) -> Iterator[Path]:
    """A new empty folder beside `final` (a hidden temporary name in the same parent, which must exist:
    make_folder) to build `final`'s contents in, then put in place with place_folder. Whatever is left of it
    when the block ends, by an error or without being placed, is removed; an OSError in the block (a full
    disk, say) raises `error`."""
    try:
        temp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))  # 0700 from birth
    except OSError as exc:
        raise error(f"cannot write {final}: {exc.strerror or exc}") from None
    try:
        os.chmod(temp, mode)
        yield temp
    except OSError as exc:
        raise error(f"cannot write {final}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def place_folder(temp: Path, final: Path, error: type[VetohashError], *, mode: int = FOLDER_MODE,
                 overwrite: bool = False) -> None:
    """Put the folder `temp` (from folder_aside) in place as `final`, whole or not at all: every folder under
    it given `mode` and every file `mode` less its execute bits, all synced, then one rename. An existing
    `final` is refused, or with `overwrite` removed first (so it must hold nothing anyone still reads)."""
    try:
        for root, _folders, names in os.walk(temp):
            for name in names:
                fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.fchmod(fd, mode & 0o666)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.chmod(root, mode)
            _sync_folder(root)
        if os.path.lexists(final):
            if not overwrite:
                raise error(f"{final} already exists; refusing to overwrite it")
            shutil.rmtree(final)
        os.rename(temp, final)
        _sync_folder(final.parent)
    except OSError as exc:
        raise error(f"cannot write {final}: {exc.strerror or exc}") from None


def _sync_folder(path: str | os.PathLike[str]) -> None:
    """Make the entries of a folder (files created or renamed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folder(path: Path, error: type[VetohashError], mode: int = FOLDER_MODE) -> None:
    """Create `path` and its missing parents, each with exactly `mode` whatever the umask; folders that exist
    are left as they are."""
    missing = [folder for folder in (path, *path.parents) if not folder.is_dir()][::-1]
    try:
        for folder in missing:
            folder.mkdir(mode=mode)
            os.chmod(folder, mode)  # mkdir's mode is narrowed by the umask, never widened
    except FileExistsError:
        if not path.is_dir():
            raise error(f"cannot create the folder {path}: a file of that name is in the way") from None
    except OSError as exc:
        raise error(f"cannot create the folder {path}: {exc.strerror or exc}") from None


def image_files(paths: Iterable[Path], warn: Callable[[str], None] | None = None) -> list[Path]:
    """Paths given directly, as they are, plus every regular file with an image suffix under given folders
    (recursive, sorted; symbolic links to folders are not followed).

    A path given directly is kept whatever it is, so that reading it gives that one entry its error while the
    others go on. Inside a folder, an entry with an image suffix that is not a regular file (a FIFO, a
    dangling link or a link loop, a device) is skipped and passed to `warn` as one line.
    """
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        for entry in sorted(path.rglob("*")):
            if entry.suffix.lower() not in IMAGE_SUFFIXES or entry.is_dir():
                continue
            try:
                kind = _kind(entry.stat().st_mode)
            except OSError as exc:  # a dangling link, a link loop, no permission
                kind = f"unreadable ({exc.strerror or exc})"
            if kind is None:
                found.append(entry)
            elif warn is not None:
                warn(f"{entry}: skipped: {kind}, not a regular file")
    return found
