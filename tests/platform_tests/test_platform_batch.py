"""`platform batch` on a real local Ray instance: the verdicts `platform screen` gives, resuming, Parquet out.

Ray starts once for the module (seconds); the command finds it running and uses it, as it would a cluster.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from .helpers import hash_files, records

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield
    ray.shutdown()


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    """Six banned and six unrelated example images."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    for kind in ("banned", "unrelated"):
        for path in sorted((EXAMPLES / kind).glob("*.jpg"))[:6]:
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture
def db(platform, pubkey_file, make_bundle, hasher, uploads: Path, tmp_path: Path) -> Path:
    """A database whose one list bans the first three banned example images."""
    db = tmp_path / "batch.db"
    banned = sorted(uploads.glob("banned-*.jpg"))[:3]
    bundle = tmp_path / "list.vhb"
    bundle.write_bytes(make_bundle(hashes=hash_files(hasher, banned), ids=("x-000", "x-001", "x-002")))
    assert platform("--db", db, "trust", "add", pubkey_file).code == 0
    assert platform("--db", db, "ingest", bundle).code == 0
    return db


def by_path(found: list[dict]) -> dict[str, dict]:
    return {record["path"]: record for record in found}


def readable_lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_batch_gives_the_records_screen_gives_and_a_rerun_resumes(ray_instance, platform, db, uploads, tmp_path):
    screened = by_path(records(platform("--db", db, "screen", "--json", uploads).stdout))
    matched = [r["verdict"] for r in screened.values()].count("match")
    assert 3 <= matched < 12  # the three banned ones, and crops of the same photos near them: matches and cleans
    out = tmp_path / "results.jsonl"
    result = platform("--db", db, "batch", uploads, "--out", out, "--workers", 2, "--no-progress")
    assert result.code == 0, result.stderr
    assert "screened 12 of 12 image(s) (0 already in" in result.stderr and f"{matched} matched, {12 - matched} clean" in result.stderr
    assert by_path(records(out.read_text())) == screened

    # A crash half-way: five records kept, the sixth cut in the middle of its line.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]) + lines[5][:40])
    result = platform("--db", db, "batch", uploads, "--out", out, "--no-progress")
    assert result.code == 0, result.stderr
    assert "screened 7 of 12 image(s) (5 already in" in result.stderr
    assert by_path(readable_lines(out)) == screened and len(readable_lines(out)) == 12


def test_parquet_results_from_a_csv_column_with_an_unreadable_file(ray_instance, platform, db, uploads, tmp_path):
    listing = tmp_path / "listing.csv"
    paths = [str(p) for p in sorted(uploads.glob("*.jpg"))] + [str(uploads / "gone.jpg")]
    with listing.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "file"])
        writer.writerows(enumerate(paths))
    out = tmp_path / "results.parquet"
    result = platform("--db", db, "batch", listing, "--column", "file", "--out", out, "--no-progress")
    assert result.code == 2, result.stderr  # the missing file: a re-run tries it again
    table = pq.read_table(out)
    assert sorted(table.column("path").to_pylist()) == sorted(paths)
    found = by_path([json.loads(r) for r in table.column("record").to_pylist()])
    gone = found.pop(str(uploads / "gone.jpg"))
    assert gone["verdict"] == "error" and "no such image file" in gone["error"]
    assert found == by_path(records(platform("--db", db, "screen", "--json", *paths[:-1]).stdout))


def test_a_list_without_its_column_is_refused(platform, db, tmp_path):
    listing = tmp_path / "listing.csv"
    listing.write_text("file\nuploads/a.jpg\n")
    result = platform("--db", db, "batch", listing, "--out", tmp_path / "r.jsonl")
    assert result.code == 2 and "--column" in result.stderr
    result = platform("--db", db, "batch", listing, "--column", "path", "--out", tmp_path / "r.jsonl")
    assert result.code == 2 and "no column 'path' (columns: file)" in result.stderr
