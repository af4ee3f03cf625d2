"""Hostile input at the platform's command line: odd paths, FIFOs, names that would rewrite the terminal.

Each test pins one hole an audit found (issue 16); what was wrong is said in its comment.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vetohash.console import printable
from vetohash.errors import ImageError
from vetohash.keys import public_key_of
from vetohash.preprocess import read_image_file
from vetohash_platform.active import Status, stored_bundles
from vetohash_platform.screening import Screener, uploads
from vetohash_platform.store import Store

from .helpers import console_script, encode, photo_like, records


@pytest.fixture
def odd_paths(tmp_path: Path) -> list[Path]:
    """A FIFO, a link loop, a dangling link and a link to /dev/zero, each named like an image."""
    folder = tmp_path / "odd"
    folder.mkdir()
    os.mkfifo(folder / "fifo.png")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "dangling.jpg").symlink_to(folder / "nowhere.jpg")
    (folder / "zero.png").symlink_to("/dev/zero")
    return sorted(folder.iterdir())


def test_odd_paths_given_directly_are_errors_of_their_own_and_the_match_is_still_reported_and_logged(
        platform, active, images, odd_paths):
    # Was: `screen banned.jpg fifo.png` failed as a whole ("no such file or folder"), exit 2, nothing logged.
    result = platform("screen", images["banned-1"], *odd_paths)
    assert result.code == 1, result.stderr
    assert result.stdout.startswith(f"MATCH  {images['banned-1']}  ")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert sorted(errors) == sorted(f"error: {path}: {why}" for path, why in zip(odd_paths, [
        "no such image file", "a FIFO, not a regular file", "cannot read the image file (Too many levels of "
        "symbolic links)", "a character device, not a regular file"], strict=True))
    assert "1 matched, 0 clean, 4 error(s)" in result.stderr
    logged = records(platform("log", "--json").stdout)
    assert [row["hash_id"] for row in logged] == ["b-001"]


def test_odd_paths_give_json_error_records_beside_the_match(platform, active, images, odd_paths):
    found = records(platform("screen", "--json", *odd_paths, images["banned-0"]).stdout)
    assert [r["verdict"] for r in found] == ["error"] * 4 + ["match"]
    assert [r["path"] for r in found[:4]] == [str(p) for p in odd_paths]


def test_odd_entries_inside_a_folder_are_warned_about_not_skipped_silently(platform, active, images, odd_paths):
    # Was: 51 entries, 44 screened, no word about the other 7.
    folder = odd_paths[0].parent
    os.link(images["banned-2"], folder / "banned.jpg")
    result = platform("screen", folder)
    assert result.code == 1, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 4 and all("skipped" in line for line in warned)
    assert "screened 1 image(s)" in result.stderr


def test_ingest_and_trust_add_refuse_a_fifo_at_once(platform, active, tmp_path, db):
    # Was: both blocked forever, waiting for a writer.
    fifo = tmp_path / "bundle.vhb"
    os.mkfifo(fifo)
    before = db.read_bytes()
    for args in (("ingest", fifo), ("trust", "add", fifo)):
        result = platform(*args)
        assert result.code == 2
        assert result.stderr == f"error: {fifo}: a FIFO, not a regular file\n"
    assert db.read_bytes() == before


def test_every_screen_warns_while_a_trusted_list_is_expired(platform, active, make_bundle, images, tmp_path,
                                                           monkeypatch):
    # Was: with another list still in force, an expired list stopped matching without a word (clean, exit 0).
    lasting = tmp_path / "lasting.vhb"
    now = int(time.time())
    lasting.write_bytes(make_bundle(list_name="lasting", sequence=1, created=now - 60, expires=now + 5 * 86_400))
    assert platform("ingest", lasting).code == 0
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 2 * 86_400)  # test-list lives one day
    text = platform("screen", images["unrelated-0"])
    assert text.code == 0
    [warning] = [line for line in text.stderr.splitlines() if line.startswith("warning: ")]
    assert "Test Authority/test-list#7" in warning and "expired on" in warning
    as_json = platform("screen", "--json", images["unrelated-0"], images["banned-0"])
    assert as_json.code == 1  # the list still in force matches
    assert [record["warnings"] for record in records(as_json.stdout)] == [[warning.removeprefix("warning: ")]] * 2
    assert warning in as_json.stderr


@pytest.mark.parametrize("name", ["evil\rMATCH.png", "two\nlines.png", "esc\x1b[2Jape.png", "rtl\u202egnp.png"])
def test_file_names_are_printed_with_non_printable_characters_escaped(platform, active, images, tmp_path, name):
    # Was: a name with CR could overwrite its own verdict on screen; escapes could rewrite the terminal.
    path = tmp_path / name
    os.link(images["banned-0"], path)
    result = platform("screen", path, tmp_path / f"missing-{name}")
    assert result.code == 1
    assert result.stdout.startswith(f"MATCH  {tmp_path}/{ascii(name)[1:-1]}  ")
    assert result.stdout.count("\n") == 1 and "\r" not in result.stdout and "\x1b" not in result.stdout
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error.isprintable() and ascii(name)[1:-1] in error
    assert "\u202e" not in result.stdout + result.stderr
    found = records(platform("screen", "--json", path).stdout)
    assert found[0]["path"] == str(path)  # JSON keeps the exact name (escaped by JSON itself)


def test_two_keys_claiming_one_authority_and_list_are_told_apart_in_text(platform, active, make_bundle, images,
                                                                        other_key, key, tmp_path):
    # Was: `Test Authority/test-list#1 MATCH` beside `Test Authority/test-list#7 clean`, the key id only in JSON.
    assert platform("trust", "add", public_key_of(other_key).to_text()).code == 0
    impostor = tmp_path / "impostor.vhb"
    impostor.write_bytes(make_bundle(signer=other_key, sequence=1))  # same authority and list names
    assert platform("ingest", impostor).code == 0
    lines = platform("screen", images["banned-0"]).stdout.splitlines()
    labels = sorted(line.split("  ")[2] for line in lines)
    assert labels == sorted([f"Test Authority/test-list#1 (key {public_key_of(other_key).key_id})",
                             f"Test Authority/test-list#7 (key {public_key_of(key).key_id})"])
    logged = platform("log").stdout
    assert f"(key {public_key_of(other_key).key_id})" in logged and f"(key {public_key_of(key).key_id})" in logged


def test_a_sequence_far_ahead_is_refused_so_no_bundle_can_freeze_a_list(platform, active, make_bundle, tmp_path,
                                                                        db):
    # Was: sequence 2**63 - 1 was accepted, and then no later bundle of the list could ever be ingested.
    frozen = tmp_path / "frozen.vhb"
    frozen.write_bytes(make_bundle(sequence=2**63 - 1))
    before = db.read_bytes()
    result = platform("ingest", frozen)
    assert result.code == 2 and result.stderr.count("\n") == 1
    assert "list 'test-list'" in result.stderr and f"sequence {2**63 - 1} runs more than" in result.stderr
    assert db.read_bytes() == before
    # Sequences that count seconds (as `authority publish` writes them) still pass.
    timely = tmp_path / "timely.vhb"
    timely.write_bytes(make_bundle(sequence=int(time.time()) + 3600))
    assert platform("ingest", timely).code == 0


def test_a_bundle_valid_for_more_than_a_year_is_refused(platform, active, make_bundle, tmp_path, db):
    # Was: an expiry in the year 9999 was accepted.
    now = int(time.time())
    lasting = tmp_path / "lasting.vhb"
    lasting.write_bytes(make_bundle(sequence=8, created=now - 60, expires=253_402_300_799))
    before = db.read_bytes()
    result = platform("ingest", lasting)
    assert result.code == 2 and "more than the 366 a platform accepts" in result.stderr
    assert db.read_bytes() == before
    within = tmp_path / "within.vhb"
    within.write_bytes(make_bundle(sequence=8, created=now - 60, expires=now + 365 * 86_400))
    assert platform("ingest", within).code == 0


def test_pillow_warnings_go_into_that_files_result_not_loose_on_stderr(platform, active, tmp_path, images):
    # Was: 103 stray stderr lines over 2,376 odd images, multi-line, none naming its file. Run as a user runs
    # it (pytest turns warnings into errors, which would refuse the file instead).
    damaged = tmp_path / "damaged-exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "x" * 200
    damaged.write_bytes(encode(photo_like(7), "JPEG", exif=exif.tobytes()[:-100]))  # a tag runs past the end
    env = os.environ | {"PYTHONWARNINGS": "default"}
    text = subprocess.run([*console_script(), "screen", damaged, damaged, images["banned-0"]], capture_output=True,
                          text=True, env=env, check=False)
    assert text.returncode == 1, text.stderr
    lines = text.stderr.splitlines()
    warned = [line for line in lines if line.startswith("warning: ")]
    assert len(warned) == 2 and all(line.startswith(f"warning: {damaged}: UserWarning: ") for line in warned)
    assert all(line.startswith(("warning: ", "screened ")) for line in lines), lines
    found = subprocess.run([*console_script(), "screen", "--json", damaged], capture_output=True, text=True,
                           env=env, check=False)
    [record] = records(found.stdout)
    assert record["verdict"] in ("clean", "match") and len(record["warnings"]) == 1
    assert record["warnings"][0].startswith(f"{damaged}: UserWarning: ") and found.stderr == ""


def test_decoding_threads_together_stay_within_the_pools_memory_budget(active, images, db, monkeypatch):
    # Was: memory grew with the workers: eight 7000x7000 JPEGs took 940 MB on one thread, 4.5 GB on eight.
    from vetohash_platform import screening

    decoding, most = [0], [0]
    lock = threading.Lock()
    real_open = screening.open_image

    def slow_open(*args: object, **kwargs: object) -> Image.Image:
        with lock:
            decoding[0] += 1
            most[0] = max(most[0], decoding[0])
        time.sleep(0.05)  # long enough for all eight threads to try at once
        try:
            return real_open(*args, **kwargs)
        finally:
            with lock:
                decoding[0] -= 1

    monkeypatch.setattr(screening, "open_image", slow_open)
    paths = [images[f"unrelated-{i % 4}"] for i in range(16)]
    cost = max(path.stat().st_size + 96 * 96 * screening.DECODE_BYTES_PER_PIXEL for path in paths)
    with Store.open(db) as store:
        active_bundles = [s for s in stored_bundles(store) if s.status is Status.ACTIVE]
    screener = Screener(active_bundles, workers=8, decode_budget=2 * cost + 1)
    results = list(screener.run([screening.Upload(str(path), path=path) for path in paths]))
    assert [r.error for r in results] == [None] * 16
    assert most[0] == 2


_NAMES = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1,
                 max_size=30).filter(lambda name: name not in (".", ".."))
_KINDS = ["image", "missing", "fifo", "loop", "dangling", "folder"]


@settings(max_examples=60, deadline=5000, derandomize=True)
@given(st.lists(st.tuples(_NAMES, st.sampled_from(_KINDS)), min_size=1, max_size=5, unique_by=lambda e: e[0]))
def test_any_paths_give_one_entry_each_one_line_each_and_never_an_exception(entries):
    """Whatever the names (control characters, escapes, any script) and whatever the paths are, each path given
    directly is one entry that reads as an image or fails with one ImageError naming it; a folder's odd entries
    are one warning each; every line is printable."""
    with tempfile.TemporaryDirectory() as root:
        arguments, expected = [], []
        for name, kind in entries:
            path = Path(root) / name
            if kind == "image":
                path.write_bytes(encode(photo_like(1, 24), "PNG"))
            elif kind == "fifo":
                os.mkfifo(path)
            elif kind == "loop":
                path.symlink_to(path)
            elif kind == "dangling":
                path.symlink_to(Path(root) / "nowhere")
            elif kind == "folder":
                path.mkdir()
                os.mkfifo(path / "inside.png")
                (path / "inside.jpg").write_bytes(encode(photo_like(2, 24), "JPEG"))
            arguments.append(str(path))
            expected += [str(path / "inside.jpg")] if kind == "folder" else [str(path)]
        warned: list[str] = []
        found = uploads(arguments, io.BytesIO(), warned.append)
        assert [upload.name for upload in found] == expected
        assert len(warned) == sum(kind == "folder" for _, kind in entries)
        for upload in found:
            try:
                read_image_file(upload.path, upload.name)
            except ImageError as error:
                line = printable(f"error: {error}")
                assert line.isprintable() and str(error).startswith(upload.name)
        assert all(printable(line).isprintable() for line in warned + expected)
