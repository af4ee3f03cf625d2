"""Version 4 (chunked) lists on the platform: ingest builds the indexed list beside the database, screening
matches through it, deltas apply atomically on their base only, and `platform bundles` shows the chain. A
refused bundle leaves the database and the list folder as they were."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vetohash.chunked import ListHeader, Signals, chunk_images, write_chunked
from vetohash.errors import VetohashError
from vetohash.hasher import Hasher
from vetohash_platform import index

from .helpers import THRESHOLD, dct_of, file_digest, hash_files, records

DCT_THRESHOLD = 24


@pytest.fixture
def trusted(platform, pubkey_file: Path) -> None:
    assert platform("trust", "add", pubkey_file, "--name", "acme").code == 0


@pytest.fixture(scope="module")
def signals_of(hasher: Hasher, images: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each image's network and DCT hashes, by fixture name."""
    return {name: (hash_files(hasher, [path])[0], dct_of(path)[0]) for name, path in images.items()}


def publish(folder: Path, hasher: Hasher, key: Ed25519PrivateKey, signals_of, names: dict[str, str], *,
            sequence: int, base: int | None = None, removed: tuple[str, ...] = (), total: int | None = None,
            chunk: int = 2) -> Path:
    """A version 4 bundle of the images `names` (id -> fixture image name), two images a chunk."""
    now = int(time.time())
    header = ListHeader(spec=hasher.spec, authority="Test Authority", list_name="big", sequence=sequence,
                        created=now - 60, expires=now + 86_400, signals=Signals(THRESHOLD, DCT_THRESHOLD),
                        base=base)
    ids = list(names)
    neural = np.stack([signals_of[names[i]][0] for i in ids]) if ids else np.zeros((0, 20), np.uint8)
    dct = np.stack([signals_of[names[i]][1] for i in ids]) if ids else np.zeros((0, 32), np.uint8)
    write_chunked(folder, header, hasher.encoded_weights(), chunk_images(ids, neural, dct, size=chunk), key,
                  VetohashError, removed=[removed] if removed else [], total_images=total)
    return folder


BANNED = {f"b-{i}": f"banned-{i}" for i in range(4)}


@pytest.fixture
def whole(tmp_path, hasher, key, signals_of) -> Path:
    return publish(tmp_path / "big-1.vhb4", hasher, key, signals_of, BANNED, sequence=1)


def bundles(platform) -> list[dict]:
    return [json.loads(line) for line in platform("bundles", "--json").stdout.splitlines()]


def screen(platform, *paths: Path) -> dict[str, dict]:
    done = platform("screen", "--json", *paths)
    return {Path(r["path"]).stem: r["results"][0] for r in records(done.stdout)}


def state(db: Path) -> tuple[str, list[str]]:
    """The database's digest and every file under the lists folder: what a refused ingest must not change."""
    lists = db.with_name(db.name + ".lists")
    return file_digest(db), sorted(str(p.relative_to(lists)) for p in lists.rglob("*")) if lists.exists() else []


def test_a_whole_list_is_ingested_and_screened_through_its_index(platform, trusted, whole, images, db) -> None:
    """Copies of the banned images match, naming the right id by both signals; unrelated images are clean;
    `bundles` lists it as format 4 with a one-step chain."""
    done = platform("ingest", whole)
    assert done.code == 0, done.stderr
    assert "whole list): 4 images, threshold 9, DCT threshold 24" in done.stdout
    found = screen(platform, *(images[f"recompressed-{i}"] for i in range(4)),
                   *(images[f"unrelated-{i}"] for i in range(4)))
    for i in range(4):
        copy = found[f"recompressed-{i}"]
        assert copy["match"] and copy["nearest_id"] == f"b-{i}" and copy["dct_nearest_id"] == f"b-{i}"
        assert not found[f"unrelated-{i}"]["match"]
    listed, = bundles(platform)
    assert listed["format"] == 4 and listed["hashes"] == 4 and listed["status"] == "active"
    assert [(c["sequence"], c["base"]) for c in listed["chain"]] == [(1, None)]
    assert sorted(p.name for p in (db.with_name(db.name + ".lists")).iterdir()) == [f"{listed['key_id']}-big"]
    generation = db.with_name(db.name + ".lists") / f"{listed['key_id']}-big" / "1"
    assert {p.stat().st_mode & 0o777 for p in [generation, *generation.rglob("*")]} == {0o700, 0o600}  # owner's


@pytest.mark.parametrize("shard_rows", [index.SHARD_ROWS, 3])
def test_the_index_gives_the_brute_force_distances(platform, trusted, whole, images, make_bundle, tmp_path,
                                                   monkeypatch, shard_rows) -> None:
    """The same images screened against the same hashes as a version 1 bundle (brute force) and as a version 4
    list (its index, in one shard or in shards of 3 hashes) get the same nearest ids and distances."""
    monkeypatch.setattr(index, "SHARD_ROWS", shard_rows)
    v1 = tmp_path / "v1.vhb"
    v1.write_bytes(make_bundle(ids=tuple(BANNED)))
    assert platform("ingest", whole).code == 0 and platform("ingest", v1).code == 0
    paths = [images[f"png-{i}"] for i in range(4)] + [images[f"unrelated-{i}"] for i in range(4)]
    done = platform("screen", "--json", *paths)
    for record in records(done.stdout):
        by_list = {r["list"]: r for r in record["results"]}
        assert set(by_list) == {"big", "test-list"}
        assert (by_list["big"]["nearest_id"], by_list["big"]["distance"]) == \
            (by_list["test-list"]["nearest_id"], by_list["test-list"]["distance"])


def test_a_delta_applies_on_its_base_and_the_chain_is_shown(platform, trusted, whole, hasher, key, signals_of,
                                                            images, tmp_path) -> None:
    """Removing b-0 and adding unrelated-0 as b-9: copies of banned-0 are clean, unrelated-0 matches as b-9, the
    others still match; the chain shows 1 -> 2 (+1 -1)."""
    assert platform("ingest", whole).code == 0
    delta = publish(tmp_path / "big-2.vhb4", hasher, key, signals_of, {"b-9": "unrelated-0"}, sequence=2,
                    base=1, removed=("b-0",), total=4)
    done = platform("ingest", delta)
    assert done.code == 0, done.stderr
    assert "delta on sequence 1: 1 added, 1 removed" in done.stdout
    found = screen(platform, images["recompressed-0"], images["recompressed-1"], images["unrelated-0"])
    assert not found["recompressed-0"]["match"] and found["recompressed-0"]["nearest_id"] != "b-0"
    assert found["recompressed-1"]["match"] and found["recompressed-1"]["nearest_id"] == "b-1"
    assert found["unrelated-0"]["match"] and found["unrelated-0"]["nearest_id"] == "b-9"
    listed, = bundles(platform)
    assert [(c["sequence"], c["base"], c["added"], c["removed"]) for c in listed["chain"]] == \
        [(1, None, 4, 0), (2, 1, 1, 1)]
    assert "chain of big" in platform("bundles").stdout and "1 -> 2 (+1 -1)" in platform("bundles").stdout


@pytest.mark.parametrize(("base", "removed", "total", "message"), [
    (0, ("b-0",), 4, "applies to sequence 0 of list 'big', but this platform holds sequence 1"),
    (1, ("b-7",), 4, "removes id 'b-7', which its base does not hold"),
    (1, ("b-0",), 5, "would hold 4 images, but the manifest signs 5"),
])
def test_a_delta_that_does_not_fit_is_refused_and_changes_nothing(platform, trusted, whole, hasher, key,
                                                                   signals_of, tmp_path, db, base, removed, total,
                                                                   message) -> None:
    assert platform("ingest", whole).code == 0
    before = state(db)
    delta = publish(tmp_path / "d.vhb4", hasher, key, signals_of, {"b-9": "unrelated-0"}, sequence=2, base=base,
                    removed=removed, total=total)
    done = platform("ingest", delta)
    assert done.code != 0 and message in done.stderr, done.stderr
    assert state(db) == before


def test_a_delta_adding_an_id_the_base_holds_is_refused(platform, trusted, whole, hasher, key, signals_of,
                                                        tmp_path, db) -> None:
    assert platform("ingest", whole).code == 0
    before = state(db)
    delta = publish(tmp_path / "d.vhb4", hasher, key, signals_of, {"b-1": "unrelated-0"}, sequence=2, base=1,
                    total=5)
    done = platform("ingest", delta)
    assert done.code != 0 and "adds an id its base already holds" in done.stderr
    assert state(db) == before


def test_a_delta_without_its_base_is_refused(platform, trusted, hasher, key, signals_of, tmp_path, db) -> None:
    delta = publish(tmp_path / "d.vhb4", hasher, key, signals_of, {"b-9": "unrelated-0"}, sequence=2, base=1,
                    total=1)
    done = platform("ingest", delta)
    assert done.code != 0 and "holds nothing of it" in done.stderr
    assert bundles(platform) == []


def test_a_damaged_chunk_is_refused_and_nothing_is_kept(platform, trusted, whole, db) -> None:
    """One flipped byte in one images chunk: refused by its digest, nothing stored, no files left behind."""
    chunk = sorted(whole.glob("*.chunk"), key=lambda p: p.stat().st_size)[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 1
    chunk.write_bytes(bytes(data))
    before = state(db)
    done = platform("ingest", whole)
    assert done.code != 0 and "does not hash to the SHA-256 the manifest signs" in done.stderr
    assert state(db) == before and bundles(platform) == []


def test_replays_and_repeats(platform, trusted, whole, hasher, key, signals_of, tmp_path) -> None:
    """The same manifest again changes nothing; a lower sequence is refused as a rollback; a higher whole
    list replaces the list and restarts the chain."""
    assert platform("ingest", whole).code == 0
    assert "already ingested, nothing changed" in platform("ingest", whole / "manifest.vhb").stdout
    newer = publish(tmp_path / "big-5.vhb4", hasher, key, signals_of, {"c-0": "unrelated-1"}, sequence=5)
    assert platform("ingest", newer).code == 0
    older = publish(tmp_path / "big-3.vhb4", hasher, key, signals_of, BANNED, sequence=3)
    done = platform("ingest", older)
    assert done.code != 0 and "replay or rollback" in done.stderr
    listed, = bundles(platform)
    assert listed["sequence"] == 5 and [c["sequence"] for c in listed["chain"]] == [5]
