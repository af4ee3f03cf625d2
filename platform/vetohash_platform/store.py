"""The platform's embedded SQLite database: trusted keys, ingested bundles (raw signed bytes) and the match log.

Only this module speaks SQL. Every change runs in one `BEGIN IMMEDIATE` transaction that commits whole or
rolls back whole, so a refused or failed step leaves the database file byte for byte as it was. Bundles are
kept as the exact bytes that were verified, and verified again whenever they are used; the columns beside
them are a copy for listing, never trusted for screening.

The schema is versioned (`PRAGMA user_version`) and built by applying migrations in order, so a database
made by an older vetohash is brought up to date, in one transaction, the first time a newer one opens it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vetohash.errors import VetohashError

DB_ENV = "VETOHASH_DB"
DB_NAME = "platform.db"

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
class BundleRow:
    """The last bundle ingested for one (authority key, list): its signed bytes and a copy of its header."""

    key_id: str
    list_name: str
    authority: str
    sequence: int
    sha256: str
    data: bytes
    hash_count: int
    threshold: int
    model: str
    created: int
    expires: int
    target_fpr: float | None
    measured_fpr: float | None
    innocent_images: int | None
    ingested: int
    decision: str  # vetohash.bundle.NEURAL, NEURAL_OR_DCT, NEURAL_OR_CROPS or NEURAL_OR_CROPS_OR_DCT
    dct_threshold: int | None
    crops_threshold: int | None
    crop_hashes: int
    chunked: int = 0  # 1 for a version 4 list: `data` is its manifest, the images are in its folder


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
class MatchRow:
    """One logged match: when, which image (by digest and hash), which bundle and banned id, how close; which
    signal matched (vetohash.fusion), the DCT side for a bundle with a DCT signal and the crop side (the id
    whose crop was nearest) for one with crop hashes (else None)."""

    time: float
    image_sha256: str
    image_hash: str
    bundle_sha256: str
    authority: str
    key_id: str
    list_name: str
    sequence: int
    hash_id: str
    distance: int
    threshold: int
    signal: str
    dct_hash: str | None
    dct_hash_id: str | None
    dct_distance: int | None
    dct_threshold: int | None
    crops_hash_id: str | None
    crops_distance: int | None
    crops_threshold: int | None


_BUNDLE_COLUMNS = ", ".join(BundleRow.__dataclass_fields__)
_MATCH_COLUMNS = ", ".join(MatchRow.__dataclass_fields__)
_CHAIN_COLUMNS = ", ".join(ChainRow.__dataclass_fields__)


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
        """Open the database at `path`, creating it (mode 0600, folder 0700) with the current schema if absent."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
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
        return [BundleRow(*row) for row in rows]

    def bundle(self, key_id: str, list_name: str) -> BundleRow | None:
        """The bundle last ingested for this authority key and list, if any."""
        rows = self._execute(f"SELECT {_BUNDLE_COLUMNS} FROM bundles WHERE key_id = ? AND list_name = ?",
                             (key_id, list_name))
        found = rows.fetchone()
        return BundleRow(*found) if found else None

    def bundle_digests(self) -> list[tuple[str, str, str]]:
        """(key id, list, SHA-256) of every stored bundle: a cheap way to notice an ingest, without the bytes."""
        return [tuple(row) for row in self._execute(
            "SELECT key_id, list_name, sha256 FROM bundles ORDER BY key_id, list_name")]  # type: ignore[misc]

    def put_bundle(self, row: BundleRow) -> None:
        """Store a bundle, replacing the one of the same authority key and list (inside a transaction)."""
        marks = ", ".join("?" * len(BundleRow.__dataclass_fields__))
        self._execute(f"INSERT OR REPLACE INTO bundles ({_BUNDLE_COLUMNS}) VALUES ({marks})",
                      tuple(getattr(row, name) for name in BundleRow.__dataclass_fields__))

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
        values = [tuple(getattr(row, name) for name in MatchRow.__dataclass_fields__) for row in rows]
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
        return [MatchRow(*row) for row in rows]

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
