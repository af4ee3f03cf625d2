"""The platform's embedded SQLite database: trusted keys, ingested bundles (raw signed bytes) and the match log.

Only this module speaks SQL. Every change runs in one `BEGIN IMMEDIATE` transaction that commits whole or
rolls back whole, so a refused or failed step leaves the database file byte for byte as it was. Bundles are
kept as the exact bytes that were verified, and verified again whenever they are used; the columns beside
them are a copy for listing, never trusted for screening.

The schema is versioned (`PRAGMA user_version`) and built by applying migrations in order, so a database
made by an older vetohash is brought up to date, in one transaction, the first time a newer one opens it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vetohash.errors import VetohashError
from vetohash.files import make_folder

DB_ENV = "VETOHASH_DB"
DB_NAME = "platform.db"
STORE_FOLDER_MODE = 0o700  # the database's folder and its lists': the match log is for the operator alone

# _MIGRATIONS[i] takes the schema from version i to version i + 1.
_MIGRATIONS = ("""
CREATE TABLE trusted_keys (
    key_id     TEXT PRIMARY KEY,
    name       TEXT UNIQUE,
    public_key TEXT NOT NULL,
    added      INTEGER NOT NULL
);
-- One row per (authority key, list): the last bundle ingested for it. Its sequence is the rollback mark.
CREATE TABLE bundles (
    key_id          TEXT NOT NULL,
    list_name       TEXT NOT NULL,
    authority       TEXT NOT NULL,
    sequence        INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    data            BLOB NOT NULL,
    hash_count      INTEGER NOT NULL,
    threshold       INTEGER NOT NULL,
    model           TEXT NOT NULL,
    created         INTEGER NOT NULL,
    expires         INTEGER NOT NULL,
    target_fpr      REAL,
    measured_fpr    REAL,
    innocent_images INTEGER,
    ingested        INTEGER NOT NULL,
    PRIMARY KEY (key_id, list_name)
);
-- Matches only, never the image: its SHA-256 and perceptual hash identify it for an audit.
CREATE TABLE matches (
    id            INTEGER PRIMARY KEY,
    time          REAL NOT NULL,
    image_sha256  TEXT NOT NULL,
    image_hash    TEXT NOT NULL,
    bundle_sha256 TEXT NOT NULL,
    authority     TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    list_name     TEXT NOT NULL,
    sequence      INTEGER NOT NULL,
    hash_id       TEXT NOT NULL,
    distance      INTEGER NOT NULL,
    threshold     INTEGER NOT NULL
);
""", """
-- Bundles with a DCT signal (format v2): the decision and the DCT threshold, which signal made each match and
-- the DCT side of it (NULL for bundles without one, and for every match logged before).
ALTER TABLE bundles ADD COLUMN decision TEXT NOT NULL DEFAULT 'neural';
ALTER TABLE bundles ADD COLUMN dct_threshold INTEGER;
ALTER TABLE matches ADD COLUMN signal TEXT NOT NULL DEFAULT 'neural';
ALTER TABLE matches ADD COLUMN dct_hash TEXT;
ALTER TABLE matches ADD COLUMN dct_hash_id TEXT;
ALTER TABLE matches ADD COLUMN dct_distance INTEGER;
ALTER TABLE matches ADD COLUMN dct_threshold INTEGER;
""", """
-- Bundles with crop hashes (format v3): their threshold and how many there are, and the crop side of each
-- match: the id of the banned image whose crop was nearest, its distance and threshold (NULL without them).
ALTER TABLE bundles ADD COLUMN crops_threshold INTEGER;
ALTER TABLE bundles ADD COLUMN crop_hashes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE matches ADD COLUMN crops_hash_id TEXT;
ALTER TABLE matches ADD COLUMN crops_distance INTEGER;
ALTER TABLE matches ADD COLUMN crops_threshold INTEGER;
""", """
-- Version 4 (chunked) bundles: `data` holds only the signed manifest, the list lives in indexed files beside
-- the database (vetohash_platform.biglist). `chain` keeps every sequence applied to such a list, whole or delta.
ALTER TABLE bundles ADD COLUMN chunked INTEGER NOT NULL DEFAULT 0;
CREATE TABLE chain (
    key_id    TEXT NOT NULL,
    list_name TEXT NOT NULL,
    sequence  INTEGER NOT NULL,
    base      INTEGER,
    sha256    TEXT NOT NULL,
    images    INTEGER NOT NULL,
    added     INTEGER NOT NULL,
    removed   INTEGER NOT NULL,
    ingested  INTEGER NOT NULL,
    PRIMARY KEY (key_id, list_name, sequence)
);
""", """
-- One meaning per name (vetohash.signals): a bundle's signals and a match's sides become one list each, so a new
-- signal needs no new columns. bundles.signals is a JSON array of {"signal", "hashes", "threshold"}, and
-- bundles.calibration the bundle's calibration map as JSON (or NULL). matches.matched_by names the signals that
-- matched, comma-separated, and matches.sides is a JSON array of {"signal", "hash_id", "distance", "threshold",
-- "hash"}, one per signal of the bundle. Old rows are rewritten from their columns: a side per signal the bundle
-- had, matched_by by the rule every version used (distance < threshold), a version 4 list's chunked flag kept.
-- No semicolons in these comments: the migration is split on them.
CREATE TABLE bundles_v5 (
    key_id      TEXT NOT NULL,
    list_name   TEXT NOT NULL,
    authority   TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    data        BLOB NOT NULL,
    model       TEXT NOT NULL,
    created     INTEGER NOT NULL,
    expires     INTEGER NOT NULL,
    ingested    INTEGER NOT NULL,
    decision    TEXT NOT NULL,
    signals     TEXT NOT NULL,
    calibration TEXT,
    chunked     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, list_name)
);
INSERT INTO bundles_v5 SELECT key_id, list_name, authority, sequence, sha256, data, model, created, expires,
    ingested, decision,
    CASE WHEN dct_threshold IS NULL THEN n ELSE json_insert(n, '$[#]', json_object('signal', 'dct',
        'hashes', hash_count, 'threshold', dct_threshold)) END,
    CASE WHEN target_fpr IS NULL THEN NULL ELSE json_object('target_fpr', target_fpr,
        'measured_fpr', measured_fpr, 'innocent_images', innocent_images) END,
    chunked
    FROM (SELECT *, CASE WHEN crops_threshold IS NULL THEN network
                    ELSE json_insert(network, '$[#]', json_object('signal', 'crops', 'hashes', crop_hashes,
                        'threshold', crops_threshold)) END AS n
          FROM (SELECT *, json_array(json_object('signal', 'network', 'hashes', hash_count,
                                                 'threshold', threshold)) AS network
                FROM bundles));
DROP TABLE bundles;
ALTER TABLE bundles_v5 RENAME TO bundles;
CREATE TABLE matches_v5 (
    id            INTEGER PRIMARY KEY,
    time          REAL NOT NULL,
    image_sha256  TEXT NOT NULL,
    image_hash    TEXT NOT NULL,
    bundle_sha256 TEXT NOT NULL,
    authority     TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    list_name     TEXT NOT NULL,
    sequence      INTEGER NOT NULL,
    matched_by    TEXT NOT NULL,
    sides         TEXT NOT NULL
);
INSERT INTO matches_v5 SELECT id, time, image_sha256, image_hash, bundle_sha256, authority, key_id, list_name,
    sequence,
    rtrim(CASE WHEN distance < threshold THEN 'network,' ELSE '' END
          || CASE WHEN crops_distance < crops_threshold THEN 'crops,' ELSE '' END
          || CASE WHEN dct_distance < dct_threshold THEN 'dct,' ELSE '' END, ','),
    CASE WHEN dct_threshold IS NULL THEN n ELSE json_insert(n, '$[#]', json_object('signal', 'dct',
        'hash_id', dct_hash_id, 'distance', dct_distance, 'threshold', dct_threshold, 'hash', dct_hash)) END
    FROM (SELECT *, CASE WHEN crops_threshold IS NULL THEN network
                    ELSE json_insert(network, '$[#]', json_object('signal', 'crops', 'hash_id', crops_hash_id,
                        'distance', crops_distance, 'threshold', crops_threshold, 'hash', NULL)) END AS n
          FROM (SELECT *, json_array(json_object('signal', 'network', 'hash_id', hash_id, 'distance', distance,
                                                 'threshold', threshold, 'hash', NULL)) AS network
                FROM matches));
DROP TABLE matches;
ALTER TABLE matches_v5 RENAME TO matches;
""")
SCHEMA_VERSION = len(_MIGRATIONS)


class StoreError(VetohashError):
    """The database cannot be opened, is not a vetohash database, or a statement failed."""


@dataclass(frozen=True)
class KeyRow:
    """A trusted authority key as stored: its id, optional local name, one-line text form, time added."""

    key_id: str
    name: str | None
    public_key: str
    added: int


@dataclass(frozen=True)
class SignalRow:
    """One signal of a stored bundle: its name (vetohash.signals), how many hashes, its threshold, and its
    agreement threshold (bundles of format version 6; None before)."""

    signal: str
    hashes: int
    threshold: int
    agree: int | None = None


@dataclass(frozen=True)
class BundleRow:
    """The last bundle ingested for one (authority key, list): its signed bytes and a copy of its header
    (its signals in vetohash.signals.ORDER; its calibration map as the bundle holds it, or None)."""

    key_id: str
    list_name: str
    authority: str
    sequence: int
    sha256: str
    data: bytes
    model: str
    created: int
    expires: int
    ingested: int
    decision: str  # the bundle's decision field (vetohash.bundle.NEURAL_ONLY, NEURAL_OR_DCT, ...)
    signals: tuple[SignalRow, ...]
    calibration: dict[str, Any] | None
    chunked: int = 0  # 1 for a version 4 list: `data` is its manifest, the images are in its folder

    def signal(self, name: str) -> SignalRow | None:
        """One signal, None when the bundle does not carry it."""
        return next((s for s in self.signals if s.signal == name), None)


@dataclass(frozen=True)
class ChainRow:
    """One sequence applied to a version 4 list: its base (None for a whole list), manifest digest, the images
    it left in the list, how many it added and removed, and when."""

    key_id: str
    list_name: str
    sequence: int
    base: int | None
    sha256: str
    images: int
    added: int
    removed: int
    ingested: int


@dataclass(frozen=True)
class MatchSide:
    """One signal's side of a logged match: the nearest banned id, its distance, the threshold, and the image's
    hash under that signal's hash function when it is not the network's."""

    signal: str
    hash_id: str | None
    distance: int | None
    threshold: int
    hash: str | None = None
    agree: int | None = None  # the signal's agreement threshold (bundles of version 6), else None


@dataclass(frozen=True)
class MatchRow:
    """One logged match: when, which image (by digest and network hash), which bundle, which signals matched
    (vetohash.signals), and one side per signal of the bundle."""

    time: float
    image_sha256: str
    image_hash: str
    bundle_sha256: str
    authority: str
    key_id: str
    list_name: str
    sequence: int
    matched_by: tuple[str, ...]
    sides: tuple[MatchSide, ...]

    def side(self, name: str) -> MatchSide | None:
        """One signal's side, None when the bundle had no such signal."""
        return next((s for s in self.sides if s.signal == name), None)


_BUNDLE_COLUMNS = ", ".join(BundleRow.__dataclass_fields__)
_MATCH_COLUMNS = ", ".join(MatchRow.__dataclass_fields__)
_CHAIN_COLUMNS = ", ".join(ChainRow.__dataclass_fields__)


def _bundle_row(row: Sequence[Any]) -> BundleRow:
    fields = dict(zip(BundleRow.__dataclass_fields__, row))
    fields["signals"] = tuple(SignalRow(**s) for s in json.loads(fields["signals"]))
    fields["calibration"] = None if fields["calibration"] is None else json.loads(fields["calibration"])
    return BundleRow(**fields)


def _match_row(row: Sequence[Any]) -> MatchRow:
    fields = dict(zip(MatchRow.__dataclass_fields__, row))
    fields["matched_by"] = tuple(filter(None, fields["matched_by"].split(",")))
    fields["sides"] = tuple(MatchSide(**side) for side in json.loads(fields["sides"]))
    return MatchRow(**fields)


def default_db_path() -> Path:
    """`$VETOHASH_DB`, else `$XDG_DATA_HOME/vetohash/platform.db`, else `~/.local/share/vetohash/platform.db`."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV])
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "vetohash" / DB_NAME


class Store:
    """An open platform database. Use `Store.open(path)`; close it with `close()` or a `with` block."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open the database at `path`, creating it (mode 0600, folders STORE_FOLDER_MODE) with the current schema
        if absent."""
        try:
            make_folder(path.parent, StoreError, STORE_FOLDER_MODE)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open the database {path}: {error}") from None
        store = cls(path, connection)
        try:
            store._check_schema()
        except BaseException:
            connection.close()
            raise
        return store

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block as one write transaction: all of it is committed, or (on any exception) none of it."""
        self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.rollback()
            raise
        self._execute("COMMIT")

    # trusted keys

    def keys(self) -> list[KeyRow]:
        """All trusted keys, oldest first."""
        rows = self._execute("SELECT key_id, name, public_key, added FROM trusted_keys ORDER BY added, key_id")
        return [KeyRow(*row) for row in rows]

    def put_key(self, row: KeyRow) -> None:
        """Insert or replace a trusted key (inside a transaction)."""
        self._execute("INSERT OR REPLACE INTO trusted_keys (key_id, name, public_key, added) VALUES (?, ?, ?, ?)",
                      (row.key_id, row.name, row.public_key, row.added))

    def delete_key(self, key_id: str) -> None:
        """Forget a trusted key (inside a transaction); its bundles stay stored, and unused."""
        self._execute("DELETE FROM trusted_keys WHERE key_id = ?", (key_id,))

    # bundles

    def bundles(self) -> list[BundleRow]:
        """Every stored bundle, by authority, list."""
        rows = self._execute(f"SELECT {_BUNDLE_COLUMNS} FROM bundles ORDER BY authority, list_name, key_id")
        return [_bundle_row(row) for row in rows]

    def bundle(self, key_id: str, list_name: str) -> BundleRow | None:
        """The bundle last ingested for this authority key and list, if any."""
        rows = self._execute(f"SELECT {_BUNDLE_COLUMNS} FROM bundles WHERE key_id = ? AND list_name = ?",
                             (key_id, list_name))
        found = rows.fetchone()
        return _bundle_row(found) if found else None

    def bundle_digests(self) -> list[tuple[str, str, str]]:
        """(key id, list, SHA-256) of every stored bundle: a cheap way to notice an ingest, without the bytes."""
        rows = self._execute("SELECT key_id, list_name, sha256 FROM bundles ORDER BY key_id, list_name")
        return [(key_id, list_name, sha256) for key_id, list_name, sha256 in rows]

    def put_bundle(self, row: BundleRow) -> None:
        """Store a bundle, replacing the one of the same authority key and list (inside a transaction)."""
        marks = ", ".join("?" * len(BundleRow.__dataclass_fields__))
        values = [getattr(row, name) for name in BundleRow.__dataclass_fields__]
        values[-3] = json.dumps([_stored(s) for s in row.signals])
        values[-2] = None if row.calibration is None else json.dumps(row.calibration)
        self._execute(f"INSERT OR REPLACE INTO bundles ({_BUNDLE_COLUMNS}) VALUES ({marks})", values)

    def add_chain(self, row: ChainRow) -> None:
        """Record a sequence applied to a version 4 list (inside a transaction)."""
        marks = ", ".join("?" * len(ChainRow.__dataclass_fields__))
        self._execute(f"INSERT OR REPLACE INTO chain ({_CHAIN_COLUMNS}) VALUES ({marks})",
                      tuple(getattr(row, name) for name in ChainRow.__dataclass_fields__))

    def chain(self, key_id: str, list_name: str) -> list[ChainRow]:
        """The sequences applied to a version 4 list, oldest first."""
        rows = self._execute(f"SELECT {_CHAIN_COLUMNS} FROM chain WHERE key_id = ? AND list_name = ? "
                             "ORDER BY sequence", (key_id, list_name))
        return [ChainRow(*row) for row in rows]

    # match log

    def add_matches(self, rows: Sequence[MatchRow]) -> None:
        """Append matches to the log, all in one transaction."""
        if not rows:
            return
        marks = ", ".join("?" * len(MatchRow.__dataclass_fields__))
        values = [(*(getattr(row, name) for name in list(MatchRow.__dataclass_fields__)[:-2]),
                   ",".join(row.matched_by), json.dumps([_stored(s) for s in row.sides]))
                  for row in rows]
        with self.transaction():
            try:
                self._db.executemany(f"INSERT INTO matches ({_MATCH_COLUMNS}) VALUES ({marks})", values)
            except sqlite3.Error as error:
                raise StoreError(f"database {self.path}: {error}") from None

    def matches(self, limit: int | None = None) -> list[MatchRow]:
        """Logged matches, oldest first; with `limit`, only the latest `limit` of them."""
        if limit is None:
            rows = self._execute(f"SELECT {_MATCH_COLUMNS} FROM matches ORDER BY id").fetchall()
        else:
            rows = self._execute(f"SELECT {_MATCH_COLUMNS} FROM matches ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            rows.reverse()
        return [_match_row(row) for row in rows]

    # internals

    def _execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as error:
            raise StoreError(f"database {self.path}: {error}") from None

    def _check_schema(self) -> None:
        version = self._execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(f"database {self.path} has schema version {version}; this vetohash reads only "
                             f"version {SCHEMA_VERSION} (upgrade vetohash)")
        if version == 0 and self._execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreError(f"{self.path} is an SQLite database, but not a vetohash platform database")
        with self.transaction():
            for migration in _MIGRATIONS[version:]:
                for statement in migration.split(";"):
                    if statement.strip():
                        self._execute(statement)
            self._execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _stored(item: SignalRow | MatchSide) -> dict[str, object]:
    """A signal or a side as its JSON object, without an agreement threshold it does not have: rows of bundles
    before format version 6 keep the exact form they had, which earlier versions of vetohash read."""
    fields = dataclasses.asdict(item)
    if fields["agree"] is None:
        del fields["agree"]
    return fields

