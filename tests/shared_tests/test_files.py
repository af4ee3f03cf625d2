"""vetohash.files: image discovery, one bounded read that refuses all but regular files, one atomic write of a
file and one of a folder."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from vetohash.errors import VetohashError
from vetohash.files import folder_aside, image_files, make_folder, place_folder, read_bounded, write_atomic


class Refused(VetohashError):
    pass


@pytest.fixture
def umask_000() -> Iterator[None]:
    """The loosest umask a user can have: modes must come from the code, not from it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_folders_are_searched_recursively_in_sorted_order_and_non_images_skipped(tmp_path):
    (tmp_path / "b").mkdir()
    for rel in ("b/2.png", "a.jpg", "b/1.webp"):
        Image.new("RGB", (8, 8)).save(tmp_path / rel)
    (tmp_path / "notes.txt").write_text("not an image")
    found = image_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.jpg", "b/1.webp", "b/2.png"]


def test_paths_given_directly_are_kept_whatever_they_are_for_the_reader_to_refuse(tmp_path):
    # A typo or a FIFO given directly becomes that entry's error when read, not the end of the whole run.
    assert image_files([tmp_path / "typo.jpg", tmp_path / "x.png"]) == [tmp_path / "typo.jpg", tmp_path / "x.png"]


def test_odd_entries_inside_a_folder_are_skipped_with_one_warning_each(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    warnings: list[str] = []
    assert image_files([tmp_path], warnings.append) == [tmp_path / "good.png"]
    assert len(warnings) == 4
    assert all("skipped" in line and "\n" not in line for line in warnings)
    assert any("fifo.png" in line and "a FIFO" in line for line in warnings)
    assert any("zero.png" in line and "character device" in line for line in warnings)


def test_a_bounded_read_returns_a_regular_files_bytes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_bounded(path, 10, "thing", Refused) == b"x" * 10
    with pytest.raises(Refused, match=r"f: 11 bytes, over the 10-byte limit for things"):
        path.write_bytes(b"x" * 11)
        read_bounded(path, 10, "thing", Refused)


def test_a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_bounded(fifo, 100, "bundle", Refused)
        except BaseException as error:  # noqa: BLE001 (handed to the test thread)
            outcome.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock the reader before failing, so the test run can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], Refused)
    assert "a FIFO, not a regular file" in str(outcome[0])


@pytest.mark.parametrize("make", ["folder", "devzero", "loop", "dangling", "missing"])
def test_anything_but_a_regular_file_is_one_clear_error(tmp_path, make):
    path = tmp_path / "odd"
    if make == "folder":
        path.mkdir()
    elif make == "devzero":
        path.symlink_to("/dev/zero")
    elif make == "loop":
        path.symlink_to(path)
    elif make == "dangling":
        path.symlink_to(tmp_path / "nowhere")
    expected = {"folder": "a folder, not a regular file", "devzero": "a character device, not a regular file",
                "loop": "cannot read the model file", "dangling": "no such model file",
                "missing": "no such model file"}[make]
    with pytest.raises(Refused) as caught:
        read_bounded(path, 1 << 20, "model file", Refused)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_an_atomic_write_replaces_whole_files_with_the_mode_it_names(tmp_path, umask_000):
    path = tmp_path / "new" / "deeper" / "out.bin"
    make_folder(path.parent, Refused)
    write_atomic(path, b"one", Refused)
    write_atomic(path, b"two", Refused)
    write_atomic(tmp_path / "secret", b"key", Refused, mode=0o600)
    assert path.read_bytes() == b"two"
    assert path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "new" / "deeper").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.bin"]  # no temporary file left


def test_an_atomic_write_without_overwrite_refuses_an_existing_file_and_leaves_it(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(b"old")
    with pytest.raises(Refused, match="already exists"):
        write_atomic(path, b"new", Refused, overwrite=False)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_failed_atomic_write_is_one_error_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(Refused, match="cannot create the folder"):
        make_folder(tmp_path / "file" / "below", Refused)
    with pytest.raises(Refused, match="cannot write"):
        write_atomic(tmp_path / "missing" / "x", b"x", Refused)
    (tmp_path / "folder").mkdir()
    with pytest.raises(Refused, match="cannot write"):
        write_atomic(tmp_path / "folder", b"x", Refused)  # a folder is in the way of the rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]


def test_make_folder_sets_the_mode_it_names_and_leaves_existing_folders_alone(tmp_path, umask_000):
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o750)
    os.chmod(existing, 0o750)
    make_folder(existing / "a" / "b", Refused, 0o700)
    assert existing.stat().st_mode & 0o777 == 0o750
    assert (existing / "a").stat().st_mode & 0o777 == 0o700
    assert (existing / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_a_folder_built_aside_appears_whole_with_the_modes_it_names(tmp_path, umask_000):
    """Nothing is at the final name until place_folder; then every folder has the mode and every file the
    mode less its execute bits, and no temporary folder is left."""
    final = tmp_path / "list"
    with folder_aside(final, Refused, mode=0o700) as temp:
        (temp / "sub").mkdir()
        (temp / "sub" / "chunk").write_bytes(b"data")
        assert not final.exists() and temp.parent == tmp_path and temp.name.startswith(".list.")
        place_folder(temp, final, Refused, mode=0o700)
    assert (final / "sub" / "chunk").read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == ["list"]
    assert {p.stat().st_mode & 0o777 for p in (final, final / "sub")} == {0o700}
    assert (final / "sub" / "chunk").stat().st_mode & 0o777 == 0o600


def test_a_folder_that_fails_while_built_or_placed_leaves_nothing_new(tmp_path):
    """An error in the block removes the folder aside (an OSError becomes the caller's error); an existing
    final folder is refused and kept, unless overwrite is asked for."""
    final = tmp_path / "list"
    with pytest.raises(Refused, match=f"cannot write {final}"):
        with folder_aside(final, Refused) as temp:
            (temp / "a").write_bytes(b"x")
            (temp / "missing" / "b").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []
    final.mkdir()
    (final / "old").write_bytes(b"old")
    with pytest.raises(Refused, match="already exists"):
        with folder_aside(final, Refused) as temp:
            place_folder(temp, final, Refused)
    assert [p.name for p in tmp_path.iterdir()] == ["list"] and (final / "old").read_bytes() == b"old"
    with folder_aside(final, Refused) as temp:
        (temp / "new").write_bytes(b"new")
        place_folder(temp, final, Refused, overwrite=True)
    assert [p.name for p in final.iterdir()] == ["new"] and [p.name for p in tmp_path.iterdir()] == ["list"]
