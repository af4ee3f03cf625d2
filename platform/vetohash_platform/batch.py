"""Batch screening on Ray Data, for backfills: every stored image screened when a new list arrives.

The images are listed on the driver (a folder, a text file of paths, or a column of a CSV or Parquet file);
Ray Data hands batches of paths to a pool of actors, each holding a Screener built from the same database
as `platform screen`, and the driver appends each finished batch to the results: JSON Lines (one
`platform screen --json` record a line) or a Parquet folder (one file per flush; the record as JSON in
column `record`). A re-run reads the results first and skips every image whose SHA-256 is already there,
so a backfill that failed half-way resumes where it stopped. Paths and the database must be readable at
the same place from every node.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vetohash.errors import ImageError, VetohashError
from vetohash.files import image_files, make_folder, write_atomic
from vetohash.preprocess import read_image_file

from .active import Status, stored_bundles
from .records import screen_record
from .screening import ImageResult, MatchLog, Screener, Upload
from .store import Store

SKIPPED = "skipped"  # what an actor returns for an image whose SHA-256 the results already hold
PARQUET_ROWS = 10_000  # records per Parquet file


class BatchError(VetohashError):
    """The input list or the results cannot be read, or the bundles changed during the run."""


class ColumnMissingError(BatchError):
    """A CSV or Parquet list was given without the name of its column of paths."""


def listed_paths(source: Path, column: str | None) -> list[str]:
    """The images to screen: image files under a folder (recursive, sorted), the lines of a text file, or
    `column` of a CSV (with a header line) or Parquet file."""
    if source.is_dir():
        return [str(path) for path in image_files([source])]
    suffix = source.suffix.lower()
    if suffix in (".csv", ".parquet") and column is None:
        raise ColumnMissingError(f"{source}: a CSV or Parquet list needs the name of its column of paths")
    try:
        if suffix == ".csv":
            with source.open(newline="") as f:
                rows = csv.DictReader(f)
                if column not in (rows.fieldnames or []):
                    raise BatchError(f"{source}: no column {column!r} (columns: {', '.join(rows.fieldnames or [])})")
                return [row[column] for row in rows if row[column]]
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(source)
            if column not in table.column_names:
                raise BatchError(f"{source}: no column {column!r} (columns: {', '.join(table.column_names)})")
            return [str(value) for value in table.column(column).to_pylist() if value]
        return [line.strip() for line in source.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, csv.Error) as error:  # pyarrow's errors are OSErrors and ValueErrors too
        raise BatchError(f"{source}: cannot read the list of images: {error}") from None


class Results:
    """The results file or folder: which SHA-256s are done, and appending more."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parquet = path.suffix.lower() == ".parquet"
        self._rows: list[dict[str, Any]] = []

    def done(self) -> set[str]:
        """SHA-256s of the images already screened (errors are not done: a re-run tries them again). A
        JSON Lines file cut short by a crash loses only its last, partial line."""
        if not self.path.exists():
            return set()
        found: set[str] = set()
        try:
            if self.parquet:
                import pyarrow.parquet as pq

                for part in sorted(self.path.glob("part-*.parquet")):
                    found.update(v for v in pq.read_table(part, columns=["sha256"]).column(0).to_pylist() if v)
                return found
            with self.path.open("rb") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # the partial last line of an interrupted run
                    if isinstance(record, dict) and isinstance(record.get("sha256"), str):
                        found.add(record["sha256"])
        except (OSError, ValueError) as error:  # pyarrow's errors are OSErrors and ValueErrors too
            raise BatchError(f"{self.path}: cannot read the results of earlier runs: {error}") from None
        return found

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        if not self.parquet:
            with self.path.open("ab") as f:
                if f.tell() and not self._ends_with_newline():
                    f.write(b"\n")  # after a partial last line, start a fresh one
                f.write("".join(json.dumps(r) + "\n" for r in records).encode())
            return
        self._rows.extend(records)
        if len(self._rows) >= PARQUET_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write buffered Parquet rows as one more file, atomically (vetohash.files.write_atomic)."""
        if not self._rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"path": [r["path"] for r in self._rows], "sha256": [r.get("sha256") for r in self._rows],
                          "verdict": [r["verdict"] for r in self._rows],
                          "record": [json.dumps(r) for r in self._rows]})
        part = pa.BufferOutputStream()
        pq.write_table(table, part)
        name = f"part-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{time.monotonic_ns()}.parquet"
        make_folder(self.path, BatchError)
        write_atomic(self.path / name, part.getvalue().to_pybytes(), BatchError)
        self._rows = []

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"


class ScreenActor:
    """One Ray actor: a Screener on the bundles in force, checked to be those the driver saw."""

    def __init__(self, db: str, bundles: Sequence[str], done: set[str], decode_threads: int) -> None:
        self.db = Path(db)
        with Store.open(self.db) as store:
            active = [s for s in stored_bundles(store) if s.status is Status.ACTIVE]
        if sorted(s.row.sha256 for s in active) != sorted(bundles):
            raise BatchError("the bundles in force changed after the run started; run it again")
        self.screener = Screener(active, workers=decode_threads)
        self.done = done

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        """Paths in, one row per path out: the verdict and the record as JSON (SKIPPED when done before)."""
        uploads, out = [], {}
        for path in batch["path"]:
            try:
                data = read_image_file(path, path)
            except ImageError as error:
                out[path] = screen_record(ImageResult(path, None, error=str(error)))
                continue
            if hashlib.sha256(data).hexdigest() in self.done:
                out[path] = {"path": path, "verdict": SKIPPED}
            else:
                uploads.append(Upload(path, data=data))
        # Opened per batch: Ray calls the actor from another thread than the one that built it, and an SQLite
        # connection stays on its thread.
        with Store.open(self.db) as store, MatchLog(store) as log:
            for result in self.screener.run(uploads):
                log.add(result)
                out[result.name] = screen_record(result)
        paths = [str(p) for p in batch["path"]]
        return {"path": paths, "verdict": [out[p]["verdict"] for p in paths],
                "record": [json.dumps(out[p]) for p in paths]}


@dataclass(frozen=True)
class Progress:
    """What one finished batch adds up to."""

    records: list[dict[str, Any]]
    skipped: int


def bundles_in_force(db: Path) -> list[str]:
    """SHA-256 of each active bundle: what every actor must find in force too."""
    with Store.open(db) as store:
        bundles = [s.row.sha256 for s in stored_bundles(store) if s.status is Status.ACTIVE]
    if not bundles:
        raise BatchError("no active bundles to screen against: see `platform bundles`")
    return bundles


def run_batch(db: Path, bundles: Sequence[str], paths: Sequence[str], done: set[str], workers: int,
              batch_size: int, decode_threads: int) -> Iterator[Progress]:
    """Screen `paths` on the Ray instance already connected, `workers` actors at a time, each checking that
    `bundles` are those in force; yields each batch as it finishes (in any order)."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the command shows its own
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # not a line per dataset run on the command's stderr
    dataset = ray.data.from_items([{"path": p} for p in paths]).map_batches(
        ScreenActor, fn_constructor_kwargs={"db": str(db), "bundles": bundles, "done": done,
                                            "decode_threads": decode_threads},
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, batch_format="numpy")
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            kept = [json.loads(r) for r, v in zip(batch["record"], batch["verdict"], strict=True) if v != SKIPPED]
            yield Progress(kept, len(batch["verdict"]) - len(kept))
    except ray.exceptions.RayError as error:
        raise BatchError(f"the Ray job failed: {_cause(error)}") from None


def _cause(error: BaseException) -> str:
    """The first line of the innermost error Ray wrapped (an actor's own VetohashError says the most)."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__

