"""The JSON objects the platform answers with: one function per kind, shared by the command line (`--json`),
the HTTP service (`platform serve`) and batch screening (`platform batch`), so the three never drift apart."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # screening imports numpy and the hasher; listing bundles needs neither
    from .active import StoredBundle
    from .screening import ImageResult
    from .store import ChainRow


def iso(seconds: float) -> str:
    """A time as ISO 8601 UTC to the second, the one form every record uses."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def verdict(result: ImageResult) -> str:
    """One word for an image: error, featureless, match or clean."""
    return ("error" if result.error else "featureless" if result.featureless
            else "match" if result.matched else "clean")


def screen_record(result: ImageResult, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """What `platform screen --json` prints for one image: its verdict and, per bundle, the distances; and the
    `warnings` that hold for the whole screen (such as a trusted list that expired and so matches nothing),
    then what the decoder warned about this image."""
    if result.error:
        return {"path": result.name, "verdict": "error", "error": result.error, "warnings": list(warnings)}
    return {"path": result.name, "sha256": result.sha256, "verdict": verdict(result),
            "warnings": list(warnings) + [f"{result.name}: {text}" for text in result.warnings],
            "detail": _rounded(result.detail), "results": [
        {"authority": v.authority, "key_id": v.key_id, "list": v.list_name, "sequence": v.sequence,
         "bundle_sha256": v.bundle_sha256, "hash": v.hash, "nearest_id": v.nearest_id, "distance": v.distance,
         "threshold": v.threshold, "match": v.match, "signal": v.signal, "dct_hash": v.dct_hash,
         "dct_nearest_id": v.dct_nearest_id, "dct_distance": v.dct_distance, "dct_threshold": v.dct_threshold,
         "crops_nearest_id": v.crops_nearest_id, "crops_distance": v.crops_distance,
         "crops_threshold": v.crops_threshold}
        for v in result.verdicts]}


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
    """What `platform bundles --json` prints for one stored bundle: whether it is used, and its header; for a
    version 4 list also its chain (each sequence applied since its last whole list; else null)."""
    r = stored.row
    return {"status": stored.status.value, "reason": stored.reason or None, "authority": r.authority,
            "key_id": r.key_id, "list": r.list_name, "sequence": r.sequence, "hashes": r.hash_count,
            "threshold": r.threshold, "decision": r.decision, "dct_threshold": r.dct_threshold,
            "crop_hashes": r.crop_hashes, "crops_threshold": r.crops_threshold, "model": r.model,
            "created": iso(r.created), "expires": iso(r.expires), "target_fpr": r.target_fpr,
            "measured_fpr": r.measured_fpr, "innocent_images": r.innocent_images, "sha256": r.sha256,
            "ingested": iso(r.ingested), "format": 4 if r.chunked else None,
            "chain": None if chain is None else [
                {"sequence": c.sequence, "base": c.base, "images": c.images, "added": c.added, "removed": c.removed,
                 "sha256": c.sha256, "ingested": iso(c.ingested)} for c in chain]}


def _rounded(detail: float | None) -> float | None:
    """A detail score for JSON: two decimals are all it means."""
    return None if detail is None else round(detail, 2)
