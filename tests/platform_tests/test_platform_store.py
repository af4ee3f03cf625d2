"""The database: where it lives, who may read it, schema versions, and all-or-nothing changes."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from vetohash_platform.store import (SCHEMA_VERSION, KeyRow, MatchSide, SignalRow, Store, StoreError,
                                     default_db_path)

from .helpers import file_digest


def test_the_default_location_follows_vetohash_db_then_xdg_then_home(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("VETOHASH_DB", str(tmp_path / "explicit.db"))
    assert default_db_path() == tmp_path / "explicit.db"
    monkeypatch.delenv("VETOHASH_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "vetohash" / "platform.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_db_path() == tmp_path / "home" / ".local" / "share" / "vetohash" / "platform.db"


def test_db_option_overrides_the_environment_before_or_after_the_command(platform, pubkey_file, tmp_path, db):
    chosen = tmp_path / "chosen.db"
    assert platform("--db", chosen, "trust", "add", pubkey_file).code == 0
    assert platform("trust", "list", "--json", "--db", chosen).stdout
    assert platform("trust", "list", "--json").stdout == ""  # $VETOHASH_DB names another database
    assert chosen.exists() and db.exists()


def test_a_new_database_and_its_folder_are_private(tmp_path: Path):
    path = tmp_path / "fresh" / "platform.db"
    Store.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_database_from_a_newer_vetohash_is_refused_untouched(tmp_path: Path):
    path = tmp_path / "newer.db"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    before = file_digest(path)
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}; this vetohash reads only version "
                                         f"{SCHEMA_VERSION}"):
        Store.open(path)
    assert file_digest(path) == before


def test_another_programs_database_or_a_non_database_is_refused(platform, tmp_path: Path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    connection.close()
    result = platform("--db", other, "trust", "list")
    assert result.code == 2 and "not a vetohash platform database" in result.stderr
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    result = platform("--db", junk, "bundles")
    assert result.code == 2 and result.stderr.startswith("error: database") and "not a database" in result.stderr


def test_a_failure_inside_a_transaction_leaves_the_file_as_it_was(tmp_path: Path):
    path = tmp_path / "platform.db"
    with Store.open(path) as store:
        before = file_digest(path)
        with pytest.raises(RuntimeError), store.transaction():
            store.put_key(KeyRow("0123456789abcdef", "half", "vetohash-ed25519:x", 0))
            raise RuntimeError("a later step failed")
        assert store.keys() == []
    assert file_digest(path) == before


def test_a_schema_1_database_is_migrated_keeping_its_rows(tmp_path: Path):
    """A database written before DCT signals existed (schema 1) is brought to the current schema when opened:
    its bundle and logged match stay, with the network signal alone, and the match by the network."""
    from vetohash_platform import store as store_module

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(store_module._MIGRATIONS[0])
        connection.execute("INSERT INTO bundles VALUES ('0123456789abcdef', 'list', 'Old Authority', 3, 'ab', "
                           "x'00', 2, 9, 'paper-cnn', 10, 20, 0.01, 0.005, 200, 15)")
        connection.execute("INSERT INTO matches (time, image_sha256, image_hash, bundle_sha256, authority, key_id, "
                           "list_name, sequence, hash_id, distance, threshold) VALUES "
                           "(1.5, 'cd', 'ef', 'ab', 'Old Authority', '0123456789abcdef', 'list', 3, 'h1', 4, 9)")
        connection.execute("PRAGMA user_version = 1")
    connection.close()
    with Store.open(path) as store:
        [bundle] = store.bundles()
        [match] = store.matches()
    assert (bundle.authority, bundle.decision, bundle.signals) == ("Old Authority", "neural",
                                                                   (SignalRow("network", 2, 9),))
    assert bundle.calibration == {"target_fpr": 0.01, "measured_fpr": 0.005, "innocent_images": 200}
    assert (match.matched_by, match.sides) == (("network",), (MatchSide("network", "h1", 4, 9),))
    assert bundle.chunked == 0  # a bundle stored before version 4 lists is a whole bundle
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    connection.close()


def test_schema_2_and_3_databases_are_migrated_keeping_every_side(tmp_path: Path):
    """Databases written before crop hashes (schema 2) and before signals were one list (schema 3) are brought
    to the current schema when opened: every bundle keeps its signals and thresholds, every match one side per
    signal its bundle had, and matched_by is what the rule says of the stored distances."""
    from vetohash_platform import store as store_module

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        for migration in store_module._MIGRATIONS[:3]:
            connection.executescript(migration)
        connection.execute("INSERT INTO bundles VALUES ('0123456789abcdef', 'list', 'Old Authority', 3, 'ab', "
                           "x'00', 2, 9, 'paper-cnn', 10, 20, NULL, NULL, NULL, 15, 'neural-or-crops-or-dct', 24, "
                           "30, 34)")
        columns = ("time, image_sha256, image_hash, bundle_sha256, authority, key_id, list_name, sequence, hash_id, "
                   "distance, threshold, signal, dct_hash, dct_hash_id, dct_distance, dct_threshold, crops_hash_id, "
                   "crops_distance, crops_threshold")
        connection.execute(f"INSERT INTO matches ({columns}) VALUES (1.5, 'cd', 'ef', 'ab', 'Old Authority', "
                           "'0123456789abcdef', 'list', 3, 'h1', 40, 9, 'dct', '12', 'h2', 5, 24, 'h3', 2, 30)")
        connection.execute(f"INSERT INTO matches ({columns}) VALUES (2.5, 'cd', 'ef', 'ab', 'Old Authority', "
                           "'0123456789abcdef', 'list', 3, 'h1', 3, 9, 'neural', '12', 'h2', 50, 24, 'h3', 31, 30)")
        connection.execute("PRAGMA user_version = 3")
    connection.close()
    with Store.open(path) as store:
        [bundle] = store.bundles()
        first, second = store.matches()
    assert bundle.signals == (SignalRow("network", 2, 9), SignalRow("crops", 34, 30), SignalRow("dct", 2, 24))
    assert (bundle.decision, bundle.calibration) == ("neural-or-crops-or-dct", None)
    assert first.matched_by == ("crops", "dct") and second.matched_by == ("network",)
    assert first.sides == (MatchSide("network", "h1", 40, 9), MatchSide("crops", "h3", 2, 30),
                           MatchSide("dct", "h2", 5, 24, "12"))
    assert second.side("crops") == MatchSide("crops", "h3", 31, 30)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    connection.close()
