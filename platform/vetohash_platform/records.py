"""The JSON objects the platform answers with: one function per kind, shared by the command line (`--json`),
the HTTP service (`platform serve`) and batch screening (`platform batch`), so the three never drift apart."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vetohash import signals

if TYPE_CHECKING:  # screening imports numpy and the hasher; listing bundles needs neither
    from .active import StoredBundle
    from .screening import ImageResult
    from .store import ChainRow, MatchRow

CALIBRATION_FIELDS = ("target_fpr", "measured_fpr", "bound_fpr", "confidence", "innocent_images", "innocent_groups")


def iso(seconds: float) -> str:
    """A time as ISO 8601 UTC to the second, the one form every record uses."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def list_label(authority: str, list_name: str, sequence: int, key_id: str) -> str:
    """How text output names a bundle: the authority's name is only what the signer claims, so the key id that
    signed it (the one the operator trusted) is part of the name; two keys can claim one authority and list."""
    return f"{authority}/{list_name}#{sequence} (key {key_id})"


def lapsed_warnings(found: Sequence[StoredBundle]) -> list[str]:
    """A warning for each trusted list that is stored but no longer in force (expired, or its stored bytes no
    longer verify): it matches nothing, which a `clean` verdict would hide, so every screen names it."""
    from .active import Status

    return [f"{list_label(s.row.authority, s.row.list_name, s.row.sequence, s.row.key_id)} is not used, so "
            f"nothing is matched against it: {s.reason}" for s in found
            if s.status in (Status.EXPIRED, Status.INVALID)]


def verdict(result: ImageResult) -> str:
    """One word for an image: error, featureless, match or clean."""
    return ("error" if result.error else "featureless" if result.featureless
            else "match" if result.matched else "clean")


def screen_record(result: ImageResult, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """What `platform screen --json` prints for one image: its verdict and, per bundle, whether it matched, by
    which signals, and each signal's side as flat fields (`side_fields`); and the `warnings` that hold for the
    whole screen (such as a trusted list that expired and so matches nothing), then what the decoder warned
    about this image."""
    if result.error:
        return {"path": result.name, "verdict": "error", "error": result.error, "warnings": list(warnings)}
    return {"path": result.name, "sha256": result.sha256, "verdict": verdict(result),
            "warnings": list(warnings) + [f"{result.name}: {text}" for text in result.warnings],
            "detail": _rounded(result.detail), "results": [
        {"authority": v.authority, "key_id": v.key_id, "list": v.list_name, "sequence": v.sequence,
         "bundle_sha256": v.bundle_sha256, "hash": v.hash, "match": v.match, "by": list(v.by),
         **side_fields([(s.signal, s.nearest_id, s.distance, s.threshold, s.hash, s.agree) for s in v.sides],
                      "nearest_id")}
        for v in result.verdicts]}


def log_record(row: MatchRow) -> dict[str, Any]:
    """What `platform log --json` prints for one logged match: as `screen_record`'s results, the banned ids
    named `hash_id`."""
    return {"time": iso(row.time), "image_sha256": row.image_sha256, "image_hash": row.image_hash,
            "authority": row.authority, "key_id": row.key_id, "list": row.list_name, "sequence": row.sequence,
            "bundle_sha256": row.bundle_sha256, "by": list(row.matched_by),
            **side_fields([(s.signal, s.hash_id, s.distance, s.threshold, s.hash, s.agree) for s in row.sides], "hash_id")}


def side_fields(sides: Sequence[tuple[str, str | None, int | None, int, str | None, int | None]], id_field: str
                ) -> dict[str, Any]:
    """(signal, nearest id, distance, threshold, own hash, agreement threshold) for the signals of a bundle as
    flat fields, every signal present (vetohash.signals.key: `distance`, `crops_distance`, `dct_distance`, ...;
    null for a signal the bundle lacks; the agreement threshold is the threshold's for bundles before version
    6); the image's own hash under each signal whose hash function is not the network's (`dct_hash`)."""
    by_name = {side[0]: side for side in sides}
    out: dict[str, Any] = {}
    for name in signals.ORDER:
        _, found, distance, threshold, own, agree = by_name.get(name, (name, None, None, None, None, None))
        out.update({signals.key(name, id_field): found, signals.key(name, "distance"): distance,
                    signals.key(name, "threshold"): threshold,
                    signals.key(name, "agree"): threshold if agree is None else agree})
        if signals.CLASSES[name].function != signals.NEURAL_FUNCTION:
            out[signals.key(name, "hash")] = own
    return out


def signal_fields(found: Sequence[tuple[str, int, int]]) -> dict[str, int | None]:
    """(signal, number of hashes, threshold) of a bundle's signals as flat fields, every signal present
    (vetohash.signals.key): `hashes`/`threshold` for the network, `crops_hashes`/`crops_threshold`,
    `dct_hashes`/`dct_threshold`; 0 and null for a signal the bundle lacks."""
    by_name = {name: (count, threshold) for name, count, threshold in found}
    out: dict[str, int | None] = {}
    for name in signals.ORDER:
        count, threshold = by_name.get(name, (0, None))
        out[signals.key(name, "hashes")] = count
        out[signals.key(name, "threshold")] = threshold
    return out


def hash_record(result: ImageResult) -> dict[str, Any]:
    """What `platform hash --json` prints for one image: its hash under each model, and its DCT hash."""
    if result.error:
        return {"path": result.name, "error": result.error}
    return {"path": result.name, "sha256": result.sha256, "detail": _rounded(result.detail),
            "featureless": result.featureless,
            "hashes": [{"model": h.model, "model_id": h.model_id, "lists": list(h.lists), "hash": h.hash}
                       for h in result.hashes],
            "dct": result.dct}


def bundle_record(stored: StoredBundle, chain: Sequence[ChainRow] | None = None) -> dict[str, Any]:
    """What `platform bundles --json` prints for one stored bundle: whether it is used, its header, each signal
    (`signal_fields`) and its calibration (the bound's fields null for a calibration without one); for a
    version 4 list also its chain (each sequence applied since its last whole list; else null)."""
    r = stored.row
    calibration = r.calibration or {}
    return {"status": stored.status.value, "reason": stored.reason or None, "authority": r.authority,
            "key_id": r.key_id, "list": r.list_name, "sequence": r.sequence, "decision": r.decision,
            **signal_fields([(s.signal, s.hashes, s.threshold) for s in r.signals]), "model": r.model,
            "created": iso(r.created), "expires": iso(r.expires),
            **{name: calibration.get(name) for name in CALIBRATION_FIELDS}, "sha256": r.sha256,
            "ingested": iso(r.ingested), "format": 4 if r.chunked else None,
            "chain": None if chain is None else [
                {"sequence": c.sequence, "base": c.base, "images": c.images, "added": c.added, "removed": c.removed,
                 "sha256": c.sha256, "ingested": iso(c.ingested)} for c in chain]}


def _rounded(detail: float | None) -> float | None:
    """A detail score for JSON: two decimals are all it means."""
    return None if detail is None else round(detail, 2)
