"""`platform ingest` and `platform bundles`: only fresh, trusted, intact bundles get in, atomically."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from vetohash.keys import public_key_of

from .helpers import file_digest, resign


@pytest.fixture
def trusted(platform, pubkey_file: Path) -> None:
    assert platform("trust", "add", pubkey_file, "--name", "acme").code == 0


def write(tmp_path: Path, data: bytes, name: str = "list.vhb") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def bundles(platform) -> list[dict]:
    return [json.loads(line) for line in platform("bundles", "--json").stdout.splitlines()]


def test_a_trusted_bundle_is_stored_and_listed(platform, trusted, make_bundle, tmp_path: Path, key):
    result = platform("ingest", write(tmp_path, make_bundle(sequence=3)))
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("ingested list 'test-list' from 'Test Authority'")
    assert "sequence 3: 4 hashes, threshold 9, expires " in result.stdout
    [listed] = bundles(platform)
    assert listed["status"] == "active" and listed["authority"] == "Test Authority"
    assert listed["key_id"] == public_key_of(key).key_id and listed["list"] == "test-list"
    assert (listed["sequence"], listed["hashes"], listed["threshold"]) == (3, 4, 9)
    assert (listed["target_fpr"], listed["measured_fpr"]) == (0.001, 0.0005)
    table = platform("bundles").stdout
    assert "active" in table and "test-list" in table and "0.001/0.0005" in table


def test_a_bounded_calibration_is_listed_with_its_bound(platform, trusted, make_bundle, tmp_path: Path):
    """A format version 4 bundle's calibration (the bound, its confidence, the innocent groups) is kept and
    listed: TARGET/MEASURED/BOUND in the table, every field in JSON."""
    from vetohash.bundle import Calibration

    bounded = Calibration(target_fpr=0.01, measured_fpr=0.004, innocent_images=540, bound_fpr=0.009,
                          confidence=0.9, innocent_groups=4)
    assert platform("ingest", write(tmp_path, make_bundle(calibration=bounded))).code == 0
    [listed] = bundles(platform)
    assert {key: listed[key] for key in bounded.to_dict()} == bounded.to_dict()
    assert "0.01/0.004/0.009" in platform("bundles").stdout


def test_ingesting_the_same_bundle_again_changes_nothing(platform, trusted, make_bundle, tmp_path, db):
    path = write(tmp_path, make_bundle())
    platform("ingest", path)
    before = file_digest(db)
    again = platform("ingest", path)
    assert again.code == 0
    assert again.stdout.startswith("already ingested, nothing changed")
    assert file_digest(db) == before


def test_a_newer_sequence_replaces_the_older_one_of_the_same_list(platform, trusted, make_bundle, tmp_path):
    platform("ingest", write(tmp_path, make_bundle(sequence=1), "one.vhb"))
    newer = platform("ingest", write(tmp_path, make_bundle(sequence=2, threshold=5), "two.vhb"))
    assert newer.code == 0 and "replacing sequence 1" in newer.stdout
    [listed] = bundles(platform)
    assert (listed["sequence"], listed["threshold"]) == (2, 5)


def test_lists_of_several_authorities_coexist(platform, trusted, make_bundle, tmp_path, other_key):
    platform("trust", "add", public_key_of(other_key).to_text(), "--name", "other")
    platform("ingest", write(tmp_path, make_bundle(), "a.vhb"))
    platform("ingest", write(tmp_path, make_bundle(list_name="second"), "b.vhb"))
    platform("ingest", write(tmp_path, make_bundle(signer=other_key, authority="Other"), "c.vhb"))
    found = {(b["authority"], b["list"]) for b in bundles(platform)}
    assert found == {("Test Authority", "test-list"), ("Test Authority", "second"), ("Other", "test-list")}


def refused(platform, db: Path, path: Path, expected: str) -> None:
    """The bundle is refused in one line with a non-zero exit, and the database file is byte for byte unchanged."""
    before = file_digest(db)
    result = platform("ingest", path)
    assert result.code == 2, result
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert file_digest(db) == before


@pytest.fixture
def stored(platform, trusted, make_bundle, tmp_path) -> None:
    """One bundle (sequence 5) already stored, so refusals are checked against a non-empty database."""
    assert platform("ingest", write(tmp_path, make_bundle(sequence=5), "stored.vhb")).code == 0


def test_a_flipped_bit_is_refused(platform, stored, make_bundle, tmp_path, db):
    data = bytearray(make_bundle(sequence=6))
    data[len(data) // 2] ^= 0x01
    refused(platform, db, write(tmp_path, bytes(data)), "signature does not verify")


def test_a_truncated_bundle_is_refused(platform, stored, make_bundle, tmp_path, db):
    data = make_bundle(sequence=6)
    refused(platform, db, write(tmp_path, data[: len(data) - 100]), "not well-formed")


def test_an_expired_bundle_is_refused_with_its_date(platform, stored, make_bundle, tmp_path, db):
    expired = make_bundle(sequence=6, created=1_700_000_000, expires=1_700_086_400)
    refused(platform, db, write(tmp_path, expired), "expired on 2023-11-15T22:13:20Z")


@pytest.mark.parametrize("sequence", [5, 4])
def test_a_replayed_or_rolled_back_sequence_is_refused(platform, stored, make_bundle, tmp_path, db, sequence):
    # Different bytes (a new creation time), validly signed, but not a newer sequence.
    older = make_bundle(sequence=sequence, created=int(time.time()) - 3600)
    refused(platform, db, write(tmp_path, older), f"sequence {sequence} of list 'test-list'")
    assert bundles(platform)[0]["sequence"] == 5


def test_a_bundle_from_an_untrusted_key_is_refused(platform, stored, make_bundle, tmp_path, db, other_key):
    refused(platform, db, write(tmp_path, make_bundle(signer=other_key, sequence=6)), "untrusted key")


def test_without_any_trusted_key_the_error_says_how_to_add_one(platform, make_bundle, tmp_path, db):
    platform("trust", "list")  # creates the empty database
    refused(platform, db, write(tmp_path, make_bundle()), "platform trust add")


def test_wrong_shaped_weights_are_refused_even_when_signed(platform, stored, make_bundle, tmp_path, db, key):
    def transpose_a_weight(payload: dict) -> None:
        entry = payload["weights"]["7.weight"]  # the dense layer, (128, 64)
        entry["shape"] = list(reversed(entry["shape"]))

    bad = resign(make_bundle(sequence=6), key, transpose_a_weight)
    refused(platform, db, write(tmp_path, bad), "shape [64, 128], expected [128, 64]")


def test_hashes_of_the_wrong_width_are_refused_even_when_signed(platform, stored, make_bundle, tmp_path, db, key):
    def drop_a_byte(payload: dict) -> None:
        payload["hashes"] = payload["hashes"][:-1]

    refused(platform, db, write(tmp_path, resign(make_bundle(sequence=6), key, drop_a_byte)), "bundle hashes hold")


def test_a_missing_file_and_a_non_bundle_are_refused(platform, stored, tmp_path, db):
    refused(platform, db, tmp_path / "nope.vhb", f"error: {tmp_path / 'nope.vhb'}: no such bundle")
    refused(platform, db, write(tmp_path, b"hello\n", "text.vhb"), "not well-formed")


def test_a_removed_key_takes_its_bundles_out_of_use_until_trusted_again(platform, stored, pubkey_file):
    platform("trust", "remove", "acme")
    [listed] = bundles(platform)
    assert listed["status"] == "untrusted" and "removed from trust" in listed["reason"]
    assert "not used: Test Authority/test-list: key" in platform("bundles").stdout
    nothing = platform("screen", "-", input=b"")
    assert nothing.code == 2 and "no active bundles" in nothing.stderr
    platform("trust", "add", pubkey_file)
    assert bundles(platform)[0]["status"] == "active"


def test_an_expired_stored_bundle_is_no_longer_used(platform, stored, monkeypatch):
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 2 * 86_400)  # the bundle lives one day
    [listed] = bundles(platform)
    assert listed["status"] == "expired" and f"expired on {listed['expires']}" in listed["reason"]
    assert "no active bundles" in platform("screen", "-", input=b"").stderr
