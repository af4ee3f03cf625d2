"""`platform`: trust authorities, ingest their signed bundles, screen images. Thin: the work lives in the modules."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from tqdm import tqdm

import vetohash
from vetohash.console import ExitCode, Group, printable, run
from vetohash.errors import VetohashError

from .records import (bundle_record, hash_record, iso, lapsed_warnings, list_label, log_record, screen_record,
                      signal_fields, verdict)
from .store import BundleRow, ChainRow, Store, default_db_path
from .trust import Change, add_key, remove_key, trusted_keys

# Commands that need a model import torch (seconds) inside the command, so that `--help`, `trust` and `log`
# answer at once.
if TYPE_CHECKING:
    from vetohash.bundle import Bundle
    from vetohash.chunked import Manifest

    from .ingest import Ingested, IngestedList
    from .screening import ImageResult, Screener, Upload

PROGRESS_MIN = 50  # files before a progress bar appears on a terminal without --progress
F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What every command shares: the database path, opened on first use and closed when the command ends."""

    def __init__(self, db: Path | None = None) -> None:
        self.db = db
        self._store: Store | None = None

    def store(self) -> Store:
        """The open database."""
        if self._store is None:
            self._store = Store.open(self.db or default_db_path())
            click.get_current_context().call_on_close(self._store.close)
        return self._store


def _set_db(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.ensure_object(Context).db = value


def db_option(command: F) -> F:
    """`--db PATH` on a subcommand too, so it may be given after the command name."""
    return click.option("--db", type=click.Path(dir_okay=False, path_type=Path), expose_value=False,
                        callback=_set_db, help="Database file (overrides $VETOHASH_DB and the default).")(command)


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output: one JSON object a line.")(
        command)


def _store() -> Store:
    return click.get_current_context().ensure_object(Context).store()


def _warn(message: str) -> None:
    click.echo(f"warning: {printable(message)}", err=True)


def _day(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))


def _emit(record: dict[str, Any]) -> None:
    # ASCII-only JSON: a file name that is not valid UTF-8 still gives a valid line (as a \udcXX escape).
    click.echo(json.dumps(record))


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    cells = [list(map(str, header))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), envvar="VETOHASH_DB", show_envvar=True,
              help="Database file [default: $XDG_DATA_HOME/vetohash/platform.db, "
                   "else ~/.local/share/vetohash/platform.db].")
@click.version_option(vetohash.__version__, prog_name="platform")
@click.pass_context
def cli(ctx: click.Context, db: Path | None) -> None:
    """Screen images against banned lists published by authorities you trust.

    You never receive the banned images: an authority sends a signed bundle (a hashing model plus the
    banned hashes); this command verifies it, keeps it in a local database, and screens images against it.

    \b
    Typical session:
      platform trust add authority.pub --name acme
      platform ingest acme-demo.vhb
      platform bundles
      platform screen uploads/            # exit 0 clean, 1 match, 2 errors
      platform log

    Errors are one line; set VETOHASH_DEBUG=1 for a traceback.
    """
    ctx.ensure_object(Context).db = db


# trust


@cli.group()
def trust() -> None:
    """Manage the authority keys whose bundles are accepted.

    \b
    Example:
      platform trust add authority.pub --name acme
      platform trust list
      platform trust remove acme
    """


@trust.command("add")
@click.argument("pubkey")
@click.option("--name", help="A local name for the key, usable instead of its id.")
@db_option
def trust_add(pubkey: str, name: str | None) -> None:
    """Trust PUBKEY: a public key file (authority.pub) or its one-line text.

    \b
    Example:
      platform trust add authority.pub --name acme
      platform trust add vetohash-ed25519:2F6wm...
    Adding a key that is already trusted changes nothing (or only its name).
    """
    trusted, change = add_key(_store(), pubkey, name)
    named = f" as {trusted.name!r}" if trusted.name else ""
    if change is Change.ADDED:
        click.echo(f"trusted key {trusted.key_id}{named}")
    elif change is Change.RENAMED:
        click.echo(f"key {trusted.key_id} is now named {trusted.name!r}")
    else:
        click.echo(f"key {trusted.key_id} is already trusted{named}; nothing changed")


@trust.command("list")
@json_option
@db_option
def trust_list(as_json: bool) -> None:
    """List trusted keys and how many stored bundles each signed.

    \b
    Example:
      platform trust list
      platform trust list --json | jq -r .key_id
    """
    store = _store()
    keys = trusted_keys(store)
    counts: dict[str, int] = {}
    for row in store.bundles():
        counts[row.key_id] = counts.get(row.key_id, 0) + 1
    if as_json:
        for key in keys:
            _emit({"key_id": key.key_id, "name": key.name, "public_key": key.key.to_text(),
                   "added": iso(key.added), "bundles": counts.get(key.key_id, 0)})
        return
    if not keys:
        click.echo("no trusted keys; add one with `platform trust add PUBKEY`", err=True)
        return
    _table([(k.key_id, k.name or "-", _day(k.added), counts.get(k.key_id, 0), k.key.to_text()) for k in keys],
           ("KEY ID", "NAME", "ADDED (UTC)", "BUNDLES", "PUBLIC KEY"))


@trust.command("remove")
@click.argument("key_id_or_name")
@db_option
def trust_remove(key_id_or_name: str) -> None:
    """Stop trusting a key; its bundles stay stored but are no longer used for screening.

    \b
    Example:
      platform trust remove acme
      platform trust remove 3f9c0d2a7b1e4c55
    """
    store = _store()
    removed = remove_key(store, key_id_or_name)
    count = sum(row.key_id == removed.key_id for row in store.bundles())
    named = f" ({removed.name})" if removed.name else ""
    click.echo(f"no longer trusting key {removed.key_id}{named}; "
               f"{count} stored bundle(s) signed by it are no longer used for screening")


# bundles


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@json_option
@db_option
def ingest(bundle: Path, as_json: bool) -> None:
    """Verify BUNDLE against the trusted keys and store it.

    BUNDLE is a bundle file (format versions 1-3) or the folder of a version 4 (chunked) bundle, or its
    manifest.vhb. A version 4 list is verified chunk by chunk and indexed in a folder beside the
    database (PLATFORM.db.lists); a version 4 delta is applied only on top of the sequence it names as
    its base, all at once or not at all.

    Refused, with the database left exactly as it was: an untrusted key, a bad signature or damaged
    bytes, an expired bundle, a model that does not match its spec, and a sequence number not above the
    last one ingested for the same authority key and list (a replay or rollback). A newer bundle
    replaces the older one of the same list; ingesting the same bundle again changes nothing.

    \b
    Example:
      platform ingest acme-demo.vhb
    """
    from vetohash.chunked import is_chunked

    from .ingest import Outcome, ingest_file

    if is_chunked(bundle):
        _ingest_chunked(bundle, as_json)
        return
    done = ingest_file(_store(), bundle)
    b = done.bundle
    what = _ingested(done, b, {"decision": b.decision, **signal_fields([(s.name, len(s.hashes), s.threshold)
                                                                       for s in b.signals])}, as_json)
    if what is None:
        return
    replaced = f", replacing sequence {done.previous_sequence}" if done.outcome is Outcome.REPLACED else ""
    crops = "" if b.crops is None else f", {len(b.crops.hashes)} crop hashes, crops threshold {b.crops.threshold}"
    dct = "" if b.dct is None else f", DCT threshold {b.dct.threshold}"
    fused = "" if len(b.signals) == 1 else " (any matches)" if len(b.signals) > 2 else " (either matches)"
    if b.agree is not None:
        fused = ", or two below their agreement thresholds " + "/".join(str(t) for t in b.agreement.values())
    click.echo(f"ingested {what}{replaced}: {len(b.hashes)} hashes, threshold {b.threshold}{crops}{dct}{fused}, "
               f"expires {iso(b.expires)}")


def _ingest_chunked(path: Path, as_json: bool) -> None:
    from vetohash.chunked import IMAGES, REMOVED

    from .ingest import ingest_chunked

    done = ingest_chunked(_store(), path)
    m = done.manifest
    what = _ingested(done, m, {"base": m.base, "images": m.images, "added": m.count(IMAGES),
                               "removed": m.count(REMOVED), "threshold": m.signals.neural,
                               "dct_threshold": m.signals.dct, "crops_threshold": m.signals.crops}, as_json)
    if what is None:
        return
    how = (f"delta on sequence {m.base}: {m.count(IMAGES)} added, {m.count(REMOVED)} removed"
           if m.base is not None else "whole list")
    click.echo(f"ingested {what} ({how}): {m.images} images, threshold {m.signals.neural}, DCT threshold "
               f"{_or_dash(m.signals.dct)}, crops threshold {_or_dash(m.signals.crops)}, expires {iso(m.expires)}")


def _ingested(done: Ingested | IngestedList, listed: Bundle | Manifest, fields: dict[str, Any],
              as_json: bool) -> str | None:
    """Print an ingest's JSON record (the list's identity, `fields`, its expiry and digest), or the line saying
    that nothing changed; else return the words that name the list, for the caller's line."""
    from .ingest import Outcome

    if as_json:
        _emit({"outcome": done.outcome.value, "authority": listed.authority, "key_id": listed.key_id,
               "list": listed.list_name, "sequence": listed.sequence, "previous_sequence": done.previous_sequence,
               **fields, "expires": iso(listed.expires), "sha256": done.sha256})
        return None
    what = f"list {listed.list_name!r} from {listed.authority!r} (key {listed.key_id}), sequence {listed.sequence}"
    if done.outcome is Outcome.UNCHANGED:
        click.echo(f"already ingested, nothing changed: {what}")
        return None
    return what


def _signal_text(found: Sequence[tuple[str, int, int, int | None]]) -> str:
    """A bundle's signals in one table cell: "network<47 crops<36(1870) dct<96" (hash counts beside the
    signals whose count differs from the network's), with agreement thresholds after a bar when the bundle
    has them: "network<20|40"."""
    network = found[0][1]
    return " ".join(f"{name}<{threshold}" + ("" if agree is None else f"|{agree}")
                    + ("" if count == network else f"({count})") for name, count, threshold, agree in found)


@cli.command()
@json_option
@db_option
def bundles(as_json: bool) -> None:
    """List stored bundles and whether each is used for screening.

    A bundle is active until it expires or its key is removed from trust; the others are listed with
    the reason they are not used. SIGNALS lists the bundle's signals with their thresholds (an image
    matches when any signal's distance is below its threshold): network (the network's hash of each banned
    image), crops (the network's hashes of crops of each banned image, their count in brackets) and dct
    (a classical DCT hash of each banned image). FPR TARGET/MEASURED is the share of innocent images the
    authority meant to flag, and the share flagged among its own innocent images; a third figure is the
    upper bound on that share the authority held to the target (bundles of format version 5). A version 4
    list also shows its chain: each sequence applied since its last whole list, and for a delta its base.

    \b
    Example:
      platform bundles
      platform bundles --json | jq 'select(.status == "active") | .list'
    """
    from .active import Status, stored_bundles

    store = _store()
    found = stored_bundles(store)
    chains = {(s.row.key_id, s.row.list_name): _chain(store, s.row) for s in found if s.row.chunked}
    if as_json:
        for s in found:
            _emit(bundle_record(s, chains.get((s.row.key_id, s.row.list_name))))
        return
    if not found:
        click.echo("no bundles stored; ingest one with `platform ingest BUNDLE`", err=True)
        return

    def fpr(calibration: dict[str, Any] | None) -> str:
        """TARGET/MEASURED, and /BOUND for a calibration with a bound."""
        shares = [(calibration or {}).get(name) for name in ("target_fpr", "measured_fpr", "bound_fpr")]
        shown = shares if shares[2] is not None else shares[:2]
        return "/".join("-" if value is None else f"{value:.2g}" for value in shown)

    _table([(s.status.value, s.row.authority, s.row.key_id, s.row.list_name, s.row.sequence,
             s.row.signals[0].hashes, _signal_text([(x.signal, x.hashes, x.threshold, x.agree) for x in s.row.signals]),
             _day(s.row.created), _day(s.row.expires), fpr(s.row.calibration))
            for s in found],
           ("STATUS", "AUTHORITY", "KEY ID", "LIST", "SEQ", "HASHES", "SIGNALS", "CREATED (UTC)", "EXPIRES (UTC)",
            "FPR TARGET/MEASURED"))
    for s in found:
        if s.status is not Status.ACTIVE:
            click.echo(f"not used: {s.row.authority}/{s.row.list_name}: {s.reason}")
    for (key_id, list_name), chain in chains.items():
        steps = " -> ".join(f"{c.sequence}" + ("" if c.base is None else f" (+{c.added} -{c.removed})")
                            for c in chain)
        click.echo(f"chain of {list_name} (key {key_id}): {steps}")


def _chain(store: Store, row: BundleRow) -> list[ChainRow]:
    """The sequences of a version 4 list since its last whole list, oldest first, ending at the one in force."""
    chain = [c for c in store.chain(row.key_id, row.list_name) if c.sequence <= row.sequence]
    starts = [i for i, c in enumerate(chain) if c.base is None]
    return chain[starts[-1]:] if starts else chain


# screening


def _image_options(command: F) -> F:
    for option in reversed([
        click.argument("paths", nargs=-1, required=True),
        json_option,
        click.option("--workers", type=click.IntRange(min=1), help="Threads for decoding, and for the network [default: CPUs, max 16]."),
        click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
                     help="Images per inference batch."),
        click.option("--progress/--no-progress", default=None,
                     help=f"Progress bar on stderr [default: on a terminal, for {PROGRESS_MIN}+ files]."),
        db_option,
    ]):
        command = option(command)
    return command


def _screener(workers: int | None, batch_size: int, thresholds: dict[str, int] | None = None
              ) -> tuple[Screener, list[str]]:
    """The screener over every active bundle, and the warnings of `active.lapsed_warnings`."""
    from vetohash.preprocess import route_warnings

    from .active import Status, stored_bundles
    from .screening import Screener

    route_warnings()  # Pillow's warnings go into each file's result, not loose on stderr
    found = stored_bundles(_store())
    lapsed = lapsed_warnings(found)
    active = [s for s in found if s.status is Status.ACTIVE]
    return Screener(active, thresholds=thresholds, workers=workers, batch=batch_size), lapsed


def _with_progress(items: Sequence[Upload], results: Iterable[ImageResult], show: bool | None
                   ) -> Iterator[tuple[ImageResult, Callable[[str, bool], None]]]:
    """Results paired with a printer that keeps a progress bar (if shown) intact and escapes what is not
    printable (a file name may hold CR, LF or terminal escapes; JSON lines are ASCII already)."""
    if show is None:
        show = sys.stderr.isatty() and len(items) >= PROGRESS_MIN
    with tqdm(total=len(items), file=sys.stderr, unit="img", disable=not show, leave=False) as bar:

        def echo(line: str, err: bool) -> None:
            line = printable(line)
            if show:
                tqdm.write(line, file=sys.stderr if err else sys.stdout)
            else:
                click.echo(line, err=err)

        for result in results:
            yield result, echo
            bar.update(1)


@cli.command()
@_image_options
@click.option("--threshold", type=click.IntRange(min=0),
              help="Match when the network hash's distance is below this, instead of each bundle's own threshold "
                   "(alone and, for bundles with agreement thresholds, to agree).")
@click.option("--dct-threshold", type=click.IntRange(0, 256),
              help="Match when the DCT hash's distance is below this, instead of the own DCT threshold of each "
                   "bundle that carries one.")
@click.option("--crops-threshold", type=click.IntRange(min=0),
              help="Match when the network hash's distance to the nearest crop hash is below this, instead of "
                   "the own crops threshold of each bundle that carries crop hashes.")
def screen(paths: tuple[str, ...], as_json: bool, workers: int | None, batch_size: int, progress: bool | None,
           threshold: int | None, dct_threshold: int | None, crops_threshold: int | None) -> None:
    """Screen images against every active bundle.

    PATHS are image files, folders (searched recursively for image files) and `-` for image bytes on
    stdin. For each image and bundle: the image's hash, the nearest banned hash id, the distance, and
    the verdict (a match when the distance is below the threshold). A bundle with a DCT signal also
    compares the image's DCT hash with its own DCT hashes, and matches when either distance is below its
    threshold; the verdict says which matched (neural, dct or both). A bundle with crop hashes (the
    network's hashes of crops of each banned image) also matches when the image's network hash is below
    their own threshold from the nearest one, a neural match naming the image the crop was cut from.
    Matches are logged (see `platform log`), never the image itself. A file that cannot be read (missing,
    a FIFO, a device) is reported and the rest go on. A stored list that expired, or no longer verifies,
    matches nothing: every screen names it in a warning (in JSON, each record's "warnings"). An image with too little detail to hash (flat colour, near-blank) is
    reported as featureless and never matches: its hash would be close to that of any other blank image.

    \b
    Exit status:
      0  every image was screened and none matched (featureless images included)
      1  at least one image matched (even if others had errors: a match is never hidden)
      2  no match, but some image could not be screened; or the command itself failed

    \b
    Example:
      platform screen uploads/ photo.jpg
      curl -s https://example.org/a.jpg | platform screen -
      platform screen --json uploads/ | jq 'select(.verdict == "match")'
    """
    from vetohash.signals import CROPS, DCT, NETWORK

    from .screening import MatchLog, uploads

    given = {NETWORK: threshold, CROPS: crops_threshold, DCT: dct_threshold}
    screener, lapsed = _screener(workers, batch_size,
                                 {name: value for name, value in given.items() if value is not None})
    for warning in lapsed:
        _warn(warning)
    items = uploads(paths, sys.stdin.buffer, _warn)
    counts = {"match": 0, "clean": 0, "featureless": 0, "error": 0}
    with MatchLog(_store()) as log:
        for result, echo in _with_progress(items, screener.run(items), progress):
            counts[verdict(result)] += 1
            log.add(result)
            if as_json:
                echo(json.dumps(screen_record(result, lapsed)), False)
            elif result.error:
                echo(f"error: {result.error}", True)
            else:
                for text in result.warnings:
                    echo(f"warning: {result.name}: {text}", True)
                for line in _screen_lines(result):
                    echo(line, False)
    if not as_json:
        featureless = f"{counts['featureless']} featureless, " if counts["featureless"] else ""
        click.echo(f"screened {len(items)} image(s) against {sum(len(m.lists) for m in screener.models)} "
                   f"bundle(s): {counts['match']} matched, {counts['clean']} clean, {featureless}"
                   f"{counts['error']} error(s)", err=True)
    if counts["match"]:
        sys.exit(ExitCode.MATCH)
    if counts["error"]:
        sys.exit(ExitCode.ERROR)


def _screen_lines(result: ImageResult) -> Iterator[str]:
    """One readable line per bundle: verdict, image, bundle, nearest id, distance against threshold (and the
    same for crop and DCT hashes, with the signal that matched, where the bundle has them), hash."""
    from vetohash.detail import MIN_DETAIL

    for v in result.verdicts:
        network, others = v.network, [side for side in v.sides[1:] if side.distance is not None]
        nearest = ("empty list" if network.distance is None
                   else f"nearest {network.nearest_id}  distance {network.distance}")
        nearest += "".join(f"  {side.signal} nearest {side.nearest_id}  distance {side.distance}" for side in others)
        if result.featureless and result.detail is not None:
            verdict, detail = "featureless", f"detail {result.detail:.1f} < {MIN_DETAIL:g}, never a match ({nearest})"
        elif network.distance is None:
            verdict, detail = "clean", nearest
        else:
            verdict = "MATCH" if v.match else "clean"
            detail = "  ".join(f"{'' if side is network else side.signal + ' '}nearest {side.nearest_id}  "
                               f"distance {side.distance} {_compared(side.distance, side.threshold, side.agree)}"
                               for side in [network, *others] if side.distance is not None)
            detail += f"  by {'+'.join(v.by)}" if others and v.by else ""
        yield f"{verdict}  {result.name}  {list_label(v.authority, v.list_name, v.sequence, v.key_id)}  {detail}  " \
              f"hash {v.hash}"


def _compared(distance: int, threshold: int, agree: int | None = None) -> str:
    alone = f"{'<' if distance < threshold else '>='} {threshold}"
    if agree is None or agree == threshold:
        return alone
    return f"{alone} ({'<' if distance < agree else '>='} {agree} to agree)"


@cli.command("hash")
@_image_options
def hash_(paths: tuple[str, ...], as_json: bool, workers: int | None, batch_size: int,
          progress: bool | None) -> None:
    """Print each image's hash (hex) under every active bundle's model, without screening.

    Lists that share a model share one hash. The hex form is the packed hash bits, two digits a byte,
    as `vetohash.hashes.Hash` writes them. When an active bundle carries a DCT signal, the image's DCT
    hash (dct256-v1) is printed too, on a line of its own marked [dct256-v1] (in JSON, "dct"). Crop hashes
    need nothing more: screening compares the same network hash with them. A featureless image (flat
    colour, near-blank) still gets its hash, with a warning (in JSON, "featureless": true): `screen` never
    matches it. Exit 2 if any image could not be hashed.

    \b
    Example:
      platform hash photo.jpg
      platform hash --json uploads/ | jq -r '.hashes[0].hash'
    """
    from vetohash.dcthash import ALGORITHM as DCT_ALGORITHM

    from .screening import uploads

    screener, _ = _screener(workers, batch_size)
    items = uploads(paths, sys.stdin.buffer, _warn)
    errors = 0
    for result, echo in _with_progress(items, screener.run(items, compare=False), progress):
        errors += result.error is not None
        if as_json:
            echo(json.dumps(hash_record(result)), False)
        elif result.error:
            echo(f"error: {result.error}", True)
        else:
            for text in result.warnings:
                echo(f"warning: {result.name}: {text}", True)
            if result.featureless:
                echo(f"warning: {result.name} is featureless (detail {result.detail:.1f}): its hash says little "
                     "about it, and `platform screen` never matches it", True)
            for h in result.hashes:
                which = f"  [{h.model} {h.model_id}: {', '.join(h.lists)}]" if len(result.hashes) > 1 else ""
                echo(f"{h.hash}  {result.name}{which}", False)
            if result.dct is not None:
                echo(f"{result.dct}  {result.name}  [{DCT_ALGORITHM}]", False)
    if errors:
        sys.exit(ExitCode.ERROR)


@cli.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Results: FILE.jsonl (JSON Lines, appended to) or DIR.parquet (a folder of Parquet files).")
@click.option("--column", help="The column that holds the paths, when SOURCE is a .csv or .parquet file.")
@click.option("--ray-address", help="An existing Ray cluster to run on (`auto`, `ray://HEAD:10001`) "
                                    "[default: start a local Ray instance for this run].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ray actors screening at once, one CPU each (each loads the models).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images an actor screens at a time.")
@click.option("--decode-threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Decoding threads in each actor.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: on a terminal].")
@db_option
def batch(source: Path, out: Path, column: str | None, ray_address: str | None, workers: int, batch_size: int,
          decode_threads: int, progress: bool | None) -> None:
    """Screen many images on Ray (a backfill), writing each verdict to a results file that makes re-runs resume.

    SOURCE is a folder (image files under it, recursively), a text file of paths (one a line), or a CSV
    or Parquet file whose --column holds the paths. Each record written is the one `platform screen
    --json` prints for the image, from the same Screener, so the verdicts are the same; matches are
    logged as `platform screen` logs them. A re-run first reads OUT and skips every image whose SHA-256
    it already holds (errors are tried again), so a failed backfill resumes where it stopped. On a
    cluster, the paths and the database must be readable at the same place on every node.
    Needs the ray extra (`pip install 'vetohash[ray]'`).

    \b
    Exit status:
      0  every listed image is now in OUT (matched or not: see the records)
      2  some image could not be screened (a re-run tries it again), or the command failed

    \b
    Example:
      platform batch /srv/uploads --out backfill.jsonl --workers 2
      platform batch uploads.parquet --column path --out results.parquet --ray-address auto
      jq -r 'select(.verdict == "match") | .path' backfill.jsonl
    """
    if out.suffix.lower() not in (".jsonl", ".parquet"):
        raise click.BadParameter("must end in .jsonl (JSON Lines) or .parquet (a folder of Parquet files)",
                                 param_hint="--out")
    try:
        import ray
    except ImportError:
        raise VetohashError("`platform batch` needs the ray extra: pip install 'vetohash[ray]'") from None
    from .batch import ColumnMissingError, Results, bundles_in_force, listed_paths, run_batch

    db = _store().path.resolve()
    bundles = bundles_in_force(db)
    try:
        paths = listed_paths(source, column)
    except ColumnMissingError as error:
        raise click.BadParameter(str(error), param_hint="--column") from None
    results = Results(out)
    done = results.done()
    counts = {"match": 0, "clean": 0, "featureless": 0, "error": 0, "skipped": 0}
    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as error:  # Ray raises plain Exception and others of its own when it cannot start
            raise VetohashError(f"Ray did not start: {error}") from None
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with tqdm(total=len(paths), file=sys.stderr, unit="img", disable=not show) as bar:
            for finished in run_batch(db, bundles, paths, done, workers, batch_size, decode_threads):
                results.add(finished.records)
                for record in finished.records:
                    counts[record["verdict"]] += 1
                counts["skipped"] += finished.skipped
                bar.update(len(finished.records) + finished.skipped)
            results.flush()
    finally:
        if started:
            ray.shutdown()
    click.echo(f"screened {len(paths) - counts['skipped']} of {len(paths)} image(s) ({counts['skipped']} already in "
               f"{out}): {counts['match']} matched, {counts['clean']} clean, {counts['featureless']} featureless, "
               f"{counts['error']} error(s); results in {out}", err=True)
    if counts["error"]:
        sys.exit(ExitCode.ERROR)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="TCP port.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes; each loads the bundles and models and batches its own requests.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Require `Authorization: Bearer TOKEN` (all but /healthz), TOKEN read from this file, "
                   "which only its owner may read (chmod 600).")
@click.option("--max-bytes", type=click.IntRange(min=1), default=64 * 1024 * 1024, show_default=True,
              help="Largest image accepted; a larger body is answered 413.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds to receive a body and to screen it; past either the request is answered 408 or 503.")
@click.option("--max-pending", type=click.IntRange(min=1), default=64, show_default=True,
              help="Requests that may wait for screening per worker; more are answered 503 with Retry-After.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Most requests screened in one inference batch (those waiting together share one).")
@db_option
def serve(host: str, port: int, workers: int, token_file: Path | None, max_bytes: int, timeout_s: float,
          max_pending: int, batch_size: int) -> None:
    """Answer screening requests over HTTP until stopped (Ctrl-C or SIGTERM).

    \b
    Routes (JSON answers are the objects the matching `--json` command prints):
      POST /v1/screen   an image as the raw body (image/* or application/octet-stream)
                        or as the one file of a multipart/form-data body: `platform screen --json`
      POST /v1/hash     the same body: `platform hash --json`
      GET  /v1/bundles  `platform bundles --json`, as one JSON array
      GET  /healthz     200 once bundles and models are loaded, else 503; names unused bundles
      GET  /metrics     Prometheus text: requests, verdicts, latency, errors, bundles and expiries

    Bundles ingested while it runs (`platform ingest` on the same database) are used from the next
    request on, without a restart; a bundle stops matching when it expires. Bad input is answered with
    a 4xx JSON object {"error": ..., "problem": ...}: empty (400), too large (413), wrong content type
    (415), not an image or a decompression bomb (422). Matches are logged as `platform screen` logs them.
    Needs the serve extra (`pip install 'vetohash[serve]'`).

    \b
    Example:
      platform serve --port 8080 --token-file token.txt
      curl -s -H "Authorization: Bearer $(cat token.txt)" -H 'Content-Type: image/jpeg' \\
           --data-binary @photo.jpg http://127.0.0.1:8080/v1/screen | jq .verdict
    """
    import tempfile

    try:
        import uvicorn
    except ImportError:
        raise VetohashError("`platform serve` needs the serve extra: pip install 'vetohash[serve]'") from None
    from .service import SETTINGS_ENV, Settings, read_token

    if token_file is not None:
        read_token(token_file)  # refuse a bad token file here, in one line, before any worker starts
    store = _store()  # creates or migrates the database before the workers open it
    settings = Settings(db=str(store.path.resolve()), token_file=str(token_file.resolve()) if token_file else None,
                        max_bytes=max_bytes, timeout_s=timeout_s, max_pending=max_pending, batch=batch_size)
    os.environ[SETTINGS_ENV] = settings.to_env()
    with tempfile.TemporaryDirectory(prefix="vetohash-metrics-") as metrics_dir:
        if workers > 1:  # prometheus_client sums the workers' metrics from files there
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        uvicorn.run("vetohash_platform.service:app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_level="info", timeout_graceful_shutdown=5)


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), help="Only the latest N matches.")
@json_option
@db_option
def log(limit: int | None, as_json: bool) -> None:
    """Show logged matches, oldest first: when, the image's SHA-256, the bundle, which signals matched
    (network, crops, dct), and for each signal of the bundle the nearest banned id, its distance and
    threshold (for crops: the id of the image whose crop was nearest).

    The image itself is never stored; its SHA-256 lets you find it again among your files.

    \b
    Example:
      platform log --limit 20
      platform log --json | jq -r .image_sha256 | sort -u
    """
    rows = _store().matches(limit)
    if as_json:
        for r in rows:
            _emit(log_record(r))
        return
    if not rows:
        click.echo("no matches logged", err=True)
        return
    _table([(iso(r.time), list_label(r.authority, r.list_name, r.sequence, r.key_id), "+".join(r.matched_by),
             "  ".join(f"{s.signal} {_or_dash(s.hash_id)} {_or_dash(s.distance)}/{s.threshold}" for s in r.sides),
             r.image_sha256)
            for r in rows],
           ("TIME (UTC)", "BUNDLE", "BY", "NEAREST ID DISTANCE/THRESHOLD, PER SIGNAL", "IMAGE SHA256"))


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one-line errors and exit codes (a traceback only with VETOHASH_DEBUG=1)."""
    run(functools.partial(cli, args=None if argv is None else list(argv)), "platform")
