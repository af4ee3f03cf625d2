"""Bundles with a DCT signal (format v2) on the platform: ingest, the verdict (which signals matched: network, dct), the
overrides, the featureless guard on both signals, the log, `hash` and `bundles`; and v1 bundles beside them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from vetohash.keys import public_key_of
from vetohash.bundle import DctSignal
from vetohash.hashes import Hash

from .helpers import THRESHOLD, dct_of, distance, encode, hash_files, records

DCT_THRESHOLD = 24


@pytest.fixture
def fused(platform, pubkey_file: Path, make_bundle, images, tmp_path: Path) -> Path:
    """A trusted key and one ingested v2 bundle. Its network hashes are of banned-0..3; its DCT hashes are of
    banned-1..3 too, but row 0 (id b-000) holds the DCT hash of unrelated-0, whose network hash is far from
    every banned one: unrelated-0 is then a DCT-only match, banned-0 a neural-only one, banned-1 both."""
    dct = dct_of(images["unrelated-0"], images["banned-1"], images["banned-2"], images["banned-3"])
    bundle = tmp_path / "fused.vhb"
    bundle.write_bytes(make_bundle(sequence=9, dct=DctSignal(hashes=dct, threshold=DCT_THRESHOLD)))
    assert platform("trust", "add", pubkey_file, "--name", "acme").code == 0
    ingested = platform("ingest", bundle)
    assert ingested.code == 0 and f"threshold {THRESHOLD}, DCT threshold {DCT_THRESHOLD} (either" in ingested.stdout
    return bundle


def test_premise_the_dct_only_image_is_far_by_network_and_the_others_far_by_dct(images, hasher):
    """What the fixture relies on, checked rather than assumed."""
    network = hash_files(hasher, [images["unrelated-0"], images["banned-0"]])
    banned = hash_files(hasher, [images[f"banned-{i}"] for i in range(4)])
    assert min(distance(network[0], b) for b in banned) >= THRESHOLD
    dct = dct_of(images["banned-0"], images["unrelated-1"], images["unrelated-0"])
    assert distance(dct[0], dct[2]) >= DCT_THRESHOLD and distance(dct[1], dct[2]) >= DCT_THRESHOLD


def test_the_verdict_says_which_signal_matched_with_both_distances(platform, fused, images):
    result = platform("screen", "--json", images["unrelated-0"], images["banned-0"], images["banned-1"],
                      images["unrelated-1"])
    assert result.code == 1
    by_dct, by_neural, by_both, clean = (r["results"][0] for r in records(result.stdout))
    assert by_dct["by"] == ["dct"] and by_dct["match"] is True
    assert by_dct["distance"] >= THRESHOLD and by_dct["dct_distance"] == 0 and by_dct["dct_nearest_id"] == "b-000"
    assert by_dct["dct_threshold"] == DCT_THRESHOLD and by_dct["threshold"] == THRESHOLD
    assert by_dct["dct_hash"] == Hash(dct_of(images["unrelated-0"])[0].tobytes()).hex
    assert by_neural["by"] == ["network"] and by_neural["distance"] == 0
    assert by_neural["dct_distance"] >= DCT_THRESHOLD
    assert by_both["by"] == ["network", "dct"] and by_both["distance"] == 0 and by_both["dct_distance"] == 0
    assert by_both["nearest_id"] == by_both["dct_nearest_id"] == "b-001"
    assert clean["by"] == [] and clean["match"] is False
    assert clean["distance"] >= THRESHOLD and clean["dct_distance"] >= DCT_THRESHOLD


def test_text_lines_show_both_distances_and_the_signal(platform, fused, images, key):
    result = platform("screen", images["unrelated-0"], images["unrelated-1"])
    dct_only, clean = result.stdout.splitlines()
    label = f"Test Authority/test-list#9 (key {public_key_of(key).key_id})"
    assert dct_only.startswith(f"MATCH  {images['unrelated-0']}  {label}  nearest b-")
    assert f"  dct nearest b-000  distance 0 < {DCT_THRESHOLD}  by dct  hash " in dct_only
    assert clean.startswith("clean  ") and f">= {DCT_THRESHOLD}  hash " in clean and " by " not in clean


def test_thresholds_given_on_the_command_line_replace_each_signal_s_own(platform, fused, images):
    assert platform("screen", "--dct-threshold", "0", images["unrelated-0"]).code == 0  # dct switched off
    neural_off = records(platform("screen", "--json", "--threshold", "0", images["banned-1"]).stdout)
    assert neural_off[0]["results"][0]["by"] == ["dct"]
    assert platform("screen", "--threshold", "0", "--dct-threshold", "0", images["banned-1"]).code == 0
    assert platform("screen", "--dct-threshold", "257", images["banned-1"]).code == 2


def test_a_dct_match_is_logged_with_its_signal_and_both_sides(platform, fused, images):
    platform("screen", images["unrelated-0"], images["banned-1"])
    dct_only, both = records(platform("log", "--json").stdout)
    assert dct_only["by"] == ["dct"] and dct_only["dct_hash_id"] == "b-000" and dct_only["dct_distance"] == 0
    assert dct_only["dct_threshold"] == DCT_THRESHOLD and dct_only["distance"] >= THRESHOLD
    assert dct_only["dct_hash"] == Hash(dct_of(images["unrelated-0"])[0].tobytes()).hex
    assert both["by"] == ["network", "dct"] and both["hash_id"] == both["dct_hash_id"] == "b-001"
    table = platform("log").stdout.splitlines()
    assert "  BY  " in table[0] and re.search(r"  dct +network b-", table[1]) and f"  dct b-000 0/{DCT_THRESHOLD}  " in table[1]


def test_hash_shows_the_dct_hash(platform, fused, images, hasher):
    text = platform("hash", images["banned-2"]).stdout.splitlines()
    dct = Hash(dct_of(images["banned-2"])[0].tobytes()).hex
    assert text == [f"{Hash(hash_files(hasher, [images['banned-2']])[0].tobytes()).hex}  {images['banned-2']}",
                    f"{dct}  {images['banned-2']}  [dct256-v1]"]
    assert records(platform("hash", "--json", images["banned-2"]).stdout)[0]["dct"] == dct


def test_bundles_lists_both_thresholds(platform, fused):
    table = platform("bundles").stdout.splitlines()
    assert "  SIGNALS  " in table[0]
    assert f"  network<{THRESHOLD} dct<{DCT_THRESHOLD}  " in table[1]
    [row] = records(platform("bundles", "--json").stdout)
    assert (row["threshold"], row["dct_threshold"], row["decision"]) == (THRESHOLD, DCT_THRESHOLD, "neural-or-dct")


def test_a_v1_bundle_beside_a_v2_one_decides_by_the_network_alone(platform, fused, make_bundle, images, tmp_path):
    old = tmp_path / "old.vhb"
    old.write_bytes(make_bundle(list_name="old-list", sequence=1))
    assert platform("ingest", old).code == 0
    [record] = records(platform("screen", "--json", images["unrelated-0"]).stdout)
    verdicts = {r["list"]: r for r in record["results"]}
    assert verdicts["test-list"]["by"] == ["dct"]
    assert verdicts["old-list"]["by"] == [] and verdicts["old-list"]["dct_distance"] is None
    assert verdicts["old-list"]["dct_hash"] is None and verdicts["old-list"]["dct_threshold"] is None
    rows = {r["list"]: r for r in records(platform("bundles", "--json").stdout)}
    assert rows["old-list"]["dct_threshold"] is None and rows["old-list"]["decision"] == "neural"


def test_a_featureless_image_never_matches_by_dct_either(platform, pubkey_file, make_bundle, images, tmp_path):
    """The DCT hash of a flat image is as arbitrary as its network hash: the detail guard covers both."""
    flat = tmp_path / "flat.png"
    flat.write_bytes(encode(Image.new("RGB", (200, 200), (90, 90, 90)), "PNG"))
    dct = dct_of(flat, images["banned-1"], images["banned-2"], images["banned-3"])
    bundle = tmp_path / "flat.vhb"
    bundle.write_bytes(make_bundle(dct=DctSignal(hashes=dct, threshold=DCT_THRESHOLD)))
    assert platform("trust", "add", pubkey_file).code == 0 and platform("ingest", bundle).code == 0
    result = platform("screen", "--json", flat)
    [record] = records(result.stdout)
    assert result.code == 0 and record["verdict"] == "featureless"
    assert record["results"][0]["dct_distance"] == 0 and record["results"][0]["by"] == []
    assert records(platform("log", "--json").stdout) == []


def test_a_version_6_bundle_matches_when_two_signals_agree_and_not_one_alone(platform, pubkey_file: Path,
                                                                             make_bundle, images, tmp_path: Path):
    """Thresholds alone of 0 and agreement thresholds of THRESHOLD and DCT_THRESHOLD: banned-1 (near by both
    hashes) matches by the two together; banned-0 (near by its network hash only) and unrelated-0 (by its DCT
    hash only) do not. The listing shows both thresholds of each signal, and the log keeps them."""
    from vetohash.bundle import Calibration

    dct = dct_of(images["unrelated-0"], images["banned-1"], images["banned-2"], images["banned-3"])
    bundle = tmp_path / "agree.vhb"
    bundle.write_bytes(make_bundle(
        sequence=9, threshold=0, dct=DctSignal(hashes=dct, threshold=0), agree={"network": THRESHOLD, "dct": 24},
        calibration=Calibration(target_fpr=0.001, measured_fpr=0.0, innocent_images=2000, bound_fpr=0.0009,
                                confidence=0.9, innocent_groups=10)))
    assert platform("trust", "add", pubkey_file, "--name", "acme").code == 0
    ingested = platform("ingest", bundle)
    assert ingested.code == 0 and f"or two below their agreement thresholds {THRESHOLD}/24" in ingested.stdout
    both, network_only, dct_only = records(platform("screen", "--json", images["banned-1"], images["banned-0"],
                                                    images["unrelated-0"]).stdout)
    result = both["results"][0]
    assert (result["match"], result["by"], result["threshold"], result["agree"], result["dct_threshold"],
            result["dct_agree"]) == (True, ["network", "dct"], 0, THRESHOLD, 0, 24)
    assert network_only["results"][0]["distance"] == 0 and network_only["verdict"] == "clean"
    assert dct_only["results"][0]["dct_distance"] == 0 and dct_only["verdict"] == "clean"
    assert f"network<0|{THRESHOLD} dct<0|24" in platform("bundles").stdout
    [logged] = records(platform("log", "--json").stdout)
    assert (logged["by"], logged["agree"], logged["dct_agree"]) == (["network", "dct"], THRESHOLD, 24)
