"""`platform screen`, `platform hash` and `platform log`: verdicts, per-file errors, exit codes, JSON Lines."""

from __future__ import annotations

import hashlib
import os
import json
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from vetohash.detail import MIN_DETAIL
from vetohash.hashes import Hash
from vetohash.keys import public_key_of
from vetohash.preprocess import MAX_FILE_BYTES
from vetohash_platform.active import Status, stored_bundles
from vetohash_platform.screening import Screener
from vetohash_platform.store import Store

from .helpers import THRESHOLD, console_script, encode, file_digest, hash_files, photo_like, records


def test_a_banned_image_matches_with_exit_1(platform, active, images, key):
    result = platform("screen", images["banned-2"])
    assert result.code == 1, result.stderr
    label = f"Test Authority/test-list#7 (key {public_key_of(key).key_id})"
    assert result.stdout.startswith(f"MATCH  {images['banned-2']}  {label}  nearest b-002  "
                                    f"distance 0 < {THRESHOLD}  hash ")
    assert "1 matched, 0 clean, 0 error(s)" in result.stderr


def test_an_unrelated_image_is_clean_with_exit_0(platform, active, images, key):
    result = platform("screen", images["unrelated-0"])
    assert result.code == 0, result.stderr
    label = f"Test Authority/test-list#7 (key {public_key_of(key).key_id})"
    assert result.stdout.startswith(f"clean  {images['unrelated-0']}  {label}  nearest b-")
    assert f">= {THRESHOLD}" in result.stdout


def test_recompressed_and_png_copies_of_banned_images_match(platform, active, images):
    copies = images["recompressed-0"].parent
    result = platform("screen", "--json", copies)
    assert result.code == 1
    found = {Path(r["path"]).stem: r for r in records(result.stdout)}
    assert sorted(found) == sorted([f"recompressed-{i}" for i in range(4)] + [f"png-{i}" for i in range(4)])
    for name, record in found.items():
        assert record["verdict"] == "match", record
        assert record["results"][0]["nearest_id"] == f"b-00{name[-1]}"
    assert all(found[f"png-{i}"]["results"][0]["distance"] == 0 for i in range(4))  # same pixels, new container


def test_json_lines_carry_hash_nearest_id_distance_threshold_and_verdict(platform, active, images, hasher, key):
    result = platform("screen", "--json", images["banned-1"], images["unrelated-1"])
    banned, unrelated = records(result.stdout)
    assert banned["verdict"] == "match" and unrelated["verdict"] == "clean"
    [verdict] = banned["results"]
    assert verdict == {
        "authority": "Test Authority", "key_id": public_key_of(key).key_id, "list": "test-list", "sequence": 7,
        "bundle_sha256": hashlib.sha256(active.read_bytes()).hexdigest(),
        "hash": Hash(hash_files(hasher, [images["banned-1"]])[0].tobytes()).hex,
        "nearest_id": "b-001", "distance": 0, "threshold": THRESHOLD, "agree": THRESHOLD, "match": True,
        "by": ["network"], "dct_hash": None, "dct_nearest_id": None, "dct_distance": None, "dct_threshold": None,
        "dct_agree": None, "crops_nearest_id": None, "crops_distance": None, "crops_threshold": None,
        "crops_agree": None}
    assert unrelated["results"][0]["distance"] >= THRESHOLD and unrelated["results"][0]["match"] is False
    assert banned["sha256"] == hashlib.sha256(images["banned-1"].read_bytes()).hexdigest()
    assert result.stderr == ""


def test_threshold_override_changes_the_verdict(platform, active, images):
    assert platform("screen", "--threshold", "0", images["banned-0"]).code == 0  # distance 0 is not < 0
    assert platform("screen", "--threshold", "128", images["unrelated-0"]).code == 1
    too_big = platform("screen", "--threshold", "129", images["unrelated-0"])
    assert too_big.code == 2 and "outside 0..128" in too_big.stderr


def test_stdin_dash_reads_image_bytes(platform, active, images):
    result = platform("screen", "--json", "-", input=images["banned-3"].read_bytes())
    [record] = records(result.stdout)
    assert result.code == 1 and record["path"] == "<stdin>" and record["results"][0]["nearest_id"] == "b-003"


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's opening."""
    data = bytearray(encode(photo_like(0, 16), "PNG"))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    return bytes(data)


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "bad"
    folder.mkdir()
    files = {
        "corrupt": (folder / "corrupt.jpg", encode(photo_like(5))[:300]),
        "random": (folder / "random.png", bytes(range(256)) * 8),
        "empty": (folder / "empty.jpg", b""),
        "text": (folder / "notes.txt", b"not an image at all\n"),
        "bomb": (folder / "bomb.png", png_claiming(8_000, 8_000)),
    }
    for path, data in files.values():
        path.write_bytes(data)
    oversized = folder / "huge.jpg"
    with oversized.open("wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: refused from its size, never read
    return {name: path for name, (path, _) in files.items()} | {"oversized": oversized}


def test_each_bad_file_gets_its_own_error_and_the_batch_goes_on(platform, active, images, bad_files):
    paths = [images["unrelated-0"], *bad_files.values(), images["unrelated-1"]]
    result = platform("screen", *paths)
    assert result.code == 2  # errors, no match
    assert result.stdout.count("clean  ") == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad_files)
    expected = {"corrupt": "not a readable image", "random": "not a readable image", "empty": "(empty)",
                "text": "not a readable image", "bomb": "more than the limit",
                "oversized": f"over the {MAX_FILE_BYTES}-byte limit for image files"}
    for name, path in bad_files.items():
        [line] = [e for e in errors if e.startswith(f"error: {path}:")]
        assert expected[name] in line, line
    assert "Traceback" not in result.stderr


def test_a_match_wins_over_errors_in_the_exit_status(platform, active, images, bad_files):
    result = platform("screen", "--json", bad_files["empty"], images["banned-0"])
    assert result.code == 1
    error, match = records(result.stdout)
    assert error == {"path": str(bad_files["empty"]), "verdict": "error", "error": error["error"], "warnings": []}
    assert match["verdict"] == "match"


def test_folders_are_searched_recursively_for_image_files_only(platform, active, images, bad_files):
    result = platform("screen", "--json", images["banned-0"].parent)
    paths = {Path(r["path"]).name for r in records(result.stdout)}
    assert "notes.txt" not in paths and "banned-0.jpg" in paths and "unrelated-3.jpg" in paths


def test_screening_without_active_bundles_is_an_error(platform, images):
    result = platform("screen", images["banned-0"])
    assert result.code == 2 and result.stderr.startswith("error: no active bundles")


def test_a_missing_path_is_an_error_of_its_own(platform, active, tmp_path):
    result = platform("screen", tmp_path / "nope")
    assert result.code == 2 and result.stderr.startswith(f"error: {tmp_path / 'nope'}: no such image file\n")


def test_hash_prints_the_hex_of_the_library_hash(platform, active, images, hasher):
    result = platform("hash", images["banned-0"], images["unrelated-2"])
    assert result.code == 0
    expected = [Hash(h.tobytes()).hex for h in hash_files(hasher, [images["banned-0"], images["unrelated-2"]])]
    assert result.stdout == f"{expected[0]}  {images['banned-0']}\n{expected[1]}  {images['unrelated-2']}\n"
    [record] = records(platform("hash", "--json", images["banned-0"]).stdout)
    assert record["hashes"][0]["hash"] == expected[0] and record["hashes"][0]["lists"] == ["Test Authority/test-list"]
    assert Hash.from_hex(expected[0], 128).data == hash_files(hasher, [images["banned-0"]])[0].tobytes()


def test_hash_reports_bad_files_and_exits_2(platform, active, bad_files):
    result = platform("hash", "--json", bad_files["text"])
    assert result.code == 2 and "not a readable image" in records(result.stdout)[0]["error"]


def test_matches_are_logged_without_the_image(platform, active, images, db):
    platform("screen", images["banned-1"], images["unrelated-0"], images["recompressed-2"])
    logged = records(platform("log", "--json").stdout)
    assert [(r["hash_id"], r["list"], r["sequence"]) for r in logged] == [("b-001", "test-list", 7),
                                                                          ("b-002", "test-list", 7)]
    import hashlib
    assert logged[0]["image_sha256"] == hashlib.sha256(images["banned-1"].read_bytes()).hexdigest()
    assert logged[0]["distance"] == 0 and logged[0]["threshold"] == THRESHOLD
    assert images["banned-1"].read_bytes() not in db.read_bytes()
    assert str(images["banned-1"]).encode() not in db.read_bytes()  # not even the file name
    table = platform("log").stdout
    assert "b-001" in table and "Test Authority/test-list#7" in table
    assert len(records(platform("log", "--json", "--limit", "1").stdout)) == 1


def test_a_clean_screen_leaves_the_database_unchanged(platform, active, images, db):
    before = file_digest(db)
    assert platform("screen", images["unrelated-0"], images["unrelated-1"]).code == 0
    assert file_digest(db) == before


def test_the_console_script_gives_one_line_errors_and_reads_stdin(active, images, db):
    script = console_script()
    env = {"VETOHASH_DB": str(db), "PATH": "/usr/bin:/bin", "HOME": str(db.parent)}
    done = subprocess.run([*script, "screen", "--json", "-"], input=images["banned-0"].read_bytes(),
                          capture_output=True, env=env, check=False, timeout=120)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["verdict"] == "match"
    broken = subprocess.run([*script, "trust", "remove", "nobody"], capture_output=True, env=env,
                            check=False, timeout=120)
    assert broken.returncode == 2
    assert broken.stderr.startswith(b"error: no trusted key") and broken.stderr.count(b"\n") == 1


def test_a_closed_output_pipe_exits_2_not_1_and_still_logs(active, images, db):
    # Click's own handling would exit 1, which a caller of `screen` must be able to read as "matched".
    script = console_script()
    env = {"VETOHASH_DB": str(db), "PATH": "/usr/bin:/bin", "HOME": str(db.parent)}
    with subprocess.Popen([*script, "screen", str(images["banned-0"])], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader goes away before the first line is written
        errors = process.stderr.read()
        assert process.wait(timeout=120) == 2
    assert b"Traceback" not in errors
    with Store.open(db) as store:
        assert [row.side("network").hash_id for row in store.matches()] == ["b-000"]


def test_batch_size_and_worker_count_do_not_change_any_result(platform, active, images):
    folder = images["banned-0"].parent
    baseline = platform("screen", "--json", folder).stdout
    assert len(records(baseline)) == 16
    for options in (["--batch-size", "1"], ["--batch-size", "3", "--workers", "1"], ["--workers", "7"]):
        assert platform("screen", "--json", *options, folder).stdout == baseline, options


def test_lists_sharing_a_model_build_it_once_and_each_gives_a_verdict(platform, active, make_bundle, tmp_path,
                                                                      images, db, key):
    second = tmp_path / "second.vhb"
    second.write_bytes(make_bundle(list_name="second", hashes=np.zeros((0, 16), np.uint8), ids=()))
    assert platform("ingest", second).code == 0
    with Store.open(db) as store:
        screener = Screener([s for s in stored_bundles(store) if s.status is Status.ACTIVE])
    assert [len(model.lists) for model in screener.models] == [2]
    result = platform("screen", images["banned-0"])
    assert result.code == 1
    assert sorted(line.split("  ")[2] for line in result.stdout.splitlines()) == [
        f"Test Authority/{name} (key {public_key_of(key).key_id})" for name in ("second#1", "test-list#7")]
    assert "clean  " in result.stdout and "empty list" in result.stdout  # nothing is banned in an empty list


def test_a_folder_without_images_is_warned_about(platform, active, tmp_path):
    (tmp_path / "empty").mkdir()
    result = platform("screen", tmp_path / "empty")
    assert result.code == 0 and f"warning: {tmp_path / 'empty'}: no image files found" in result.stderr


def test_json_stays_valid_ascii_for_a_file_name_that_is_not_utf8(platform, active, images, tmp_path):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/odd\xffname.jpg"))
    odd.write_bytes(images["banned-0"].read_bytes())
    line = platform("screen", "--json", odd).stdout
    assert line.isascii()
    assert os.fsencode(json.loads(line)["path"]) == bytes(tmp_path) + b"/odd\xffname.jpg"


@pytest.fixture
def blank_list(platform, pubkey_file: Path, make_bundle, hasher, tmp_path: Path) -> dict[str, Path]:
    """An ingested list holding the hash of a flat grey image, signed with the library (bypassing the
    authority's refusal), and a slightly different flat grey upload whose hash lies within the threshold."""
    from PIL import Image

    banned, upload = tmp_path / "grey.png", tmp_path / "uploads" / "grey-upload.jpg"
    upload.parent.mkdir()
    banned.write_bytes(encode(Image.new("RGB", (300, 200), (128, 128, 128)), "PNG"))
    upload.write_bytes(encode(Image.new("RGB", (640, 480), (131, 129, 126)), "JPEG", quality=40))
    hashes = hash_files(hasher, [banned, upload])
    assert int(np.bitwise_count(hashes[0] ^ hashes[1]).sum()) < THRESHOLD  # the premise: it would match
    bundle = tmp_path / "blank.vhb"
    bundle.write_bytes(make_bundle(hashes=hashes[:1], ids=("b-blank",)))
    assert platform("trust", "add", pubkey_file).code == 0
    assert platform("ingest", bundle).code == 0
    return {"upload": upload}


def test_a_featureless_upload_is_reported_never_matched_and_exits_0(platform, blank_list, images, db, key):
    # A flat image's hash is near-arbitrary and near every other flat image's: a "match" would mean nothing.
    upload = blank_list["upload"]
    result = platform("screen", upload, images["unrelated-0"])
    assert result.code == 0, result.stderr
    first, second = result.stdout.splitlines()
    label = f"Test Authority/test-list#1 (key {public_key_of(key).key_id})"
    assert first.startswith(f"featureless  {upload}  {label}  detail 0.")
    assert "never a match (nearest b-blank  distance " in first
    assert second.startswith(f"clean  {images['unrelated-0']}  ")
    assert "0 matched, 1 clean, 1 featureless, 0 error(s)" in result.stderr
    featureless, clean = records(platform("screen", "--json", upload, images["unrelated-0"]).stdout)
    assert featureless["verdict"] == "featureless" and featureless["detail"] < 1
    [verdict] = featureless["results"]
    assert verdict["distance"] < verdict["threshold"] and verdict["match"] is False
    assert clean["verdict"] == "clean" and clean["detail"] >= MIN_DETAIL
    assert records(platform("log", "--json").stdout) == []  # nothing logged as a match


def test_hash_still_prints_a_featureless_image_s_hash_and_flags_it(platform, blank_list, images):
    upload = blank_list["upload"]
    result = platform("hash", upload)
    assert result.code == 0 and result.stdout.endswith(f"  {upload}\n")
    assert result.stderr.startswith(f"warning: {upload} is featureless (detail 0.")
    flat, photo = records(platform("hash", "--json", upload, images["banned-0"]).stdout)
    assert flat["featureless"] is True and flat["detail"] < 1
    assert photo["featureless"] is False and photo["detail"] >= MIN_DETAIL
