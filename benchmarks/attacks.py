"""What a leaked bundle gives away, and what its holder can forge, measured in one run.

Whoever holds a bundle holds a white-box model and the targets. This script plays that holder: it reads a
signed bundle as a platform does and, from the bundle alone,

- reconstructs each banned image from each signal (the network hash alone with a smoothness prior, the
  network hash with its crop hashes, the DCT hash by a plain inverse DCT of its signs), and ranks the
  reconstruction against every example image by correlation of 32x32 grey levels (chance: top-1 1/N, median
  rank about N/2);
- forges collisions (an unrelated image perturbed under an L-infinity budget until the platform flags it as a
  chosen banned image) and evasions (a banned image perturbed until the platform calls it clean), at 4/255,
  8/255 and 16/255, by projected gradient steps that know the bundle's match rule (vetohash.signals): every
  way it allows a match is tried (one signal within its threshold alone, two within their agreement
  thresholds), the budget going to the signals not yet close; every forged image is written as PNG and
  judged by the platform's own screening (vetohash_platform.screening.Screener on a bundle ingested into a
  scratch database), never by a re-implementation;
- screens the edits that need no model (keeping the top-left quarter, a centre crop of half each side, a
  30-degree rotation with its corners cropped off or left black) and random crops keeping 25-50 % of the
  image, and reports the bits' balance.

Without --bundle it builds the demo's bundle with the library functions `authority train` and `authority
publish` use: the copy detector fitted to examples/banned, thresholds calibrated on examples/unrelated-000..099
at a 1 % false-positive target (with --forgery-guard, the agreement thresholds of `publish --forgery-guard`),
a fresh key (model, bundle and public key cached in .bench/attacks/; delete that folder after changing the
library). The banned images are needed only to score the attacks (which bundle row is which image), never to
mount them.

    python benchmarks/attacks.py --quick                     # about 10 images per attack: a few minutes
    python benchmarks/attacks.py --quick --forgery-guard     # the same against publish --forgery-guard's rule
    python benchmarks/attacks.py                             # 20 per attack, as docs/threat-model.md reports
    python benchmarks/attacks.py --bundle b.vhb --pubkey authority.pub --banned banned/ --others more/
    python benchmarks/attacks.py --quick --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import itertools
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vetohash.bundle import MAX_VALIDITY_S, Bundle
from vetohash.dcthash import cosine_matrix, dct_hashes
from vetohash.dcthash import SIDE as DCT_SIDE
from vetohash.files import image_files
from vetohash.keys import generate_private_key, public_key_of
from vetohash.matching import hamming_matrix
from vetohash.modelfile import read_model, write_model
from vetohash.preprocess import open_image
from vetohash.signals import CROPS as CROPS_SIGNAL
from vetohash.signals import DCT, NETWORK
from vetohash.upright import kept_box
from vetohash_authority.alterations import crop, rotate
from vetohash_authority.cropviews import CROPS, TURNS, Box, crop_hashes, grid_squares
from vetohash_authority.listfit import ListFitConfig, base_model, fit_to_list
from vetohash_authority.privacy import DEFAULT, LEVELS, THUMB, Level, dct_sketches, identification_ranks, thumbnail
from vetohash_authority.calibration import FORGERY_LIMITS, Lists, calibrate
from vetohash_authority.publishing import CropHashes, build_bundle, split_featureless
from vetohash_authority.sources import Source, read_sources
from vetohash_platform.active import stored_bundles
from vetohash_platform.ingest import ingest_file
from vetohash_platform.screening import ListVerdict, Screener
from vetohash_platform.screening import Upload
from vetohash_platform.store import Store
from vetohash_platform.trust import add_key

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = (4, 8, 16)  # L-infinity, in grey levels out of 255
SEED = 0
CROP_VIEWS_PER_STEP = 4
SAFETY = 2  # bits beyond a threshold the attacks aim for, so rounding to 8-bit pixels rarely undoes them


# ---------------------------------------------------------------------------------------------------------
# The bundle, as the platform holds it


@dataclasses.dataclass
class Setup:
    """A bundle as the platform ingested it, its public key, and which banned image each row is."""

    bundle: Bundle
    screener: Screener
    banned: list[Source]  # the authority's images, only to score the attacks
    row_of: dict[int, int]  # banned image index -> bundle row
    others: list[Path]  # further images to rank reconstructions against (not banned)


def fitted_demo_model(banned: Sequence[Source], cache: Path, fit: ListFitConfig = ListFitConfig()) -> Path:
    """The demo's model (`authority train examples/banned --recipe copy --seed 0`), fitted once and cached."""
    path = cache / "banned.model"
    if not path.exists():
        base = base_model()
        say(f"fitting the copy detector to {len(banned)} banned images (once; cached in {path})")
        hasher, meta = fit_to_list(base, [s.image for s in banned], fit, seed=SEED)
        meta["sources"] = [s.digest for s in banned]
        cache.mkdir(parents=True, exist_ok=True)
        write_model(path, hasher, meta)
    return path


def demo_bundle(banned_dir: Path, innocent: Sequence[Path], cache: Path, level: Level,
                boxes: Sequence[Box] = CROPS, name: str | None = None,
                fit: ListFitConfig = ListFitConfig(), guard: bool = False) -> tuple[Path, str]:
    """A bundle as `authority publish MODEL banned --innocent ... --target-fpr 0.01 --privacy LEVEL` writes it
    in the demo (innocent images grouped by source photo, crop hashes of `boxes`, every threshold chosen
    together by calibration.calibrate; with `guard`, as --forgery-guard, under FORGERY_LIMITS), and its public
    key; both cached beside the model (the private key is thrown away). `fit` sizes the list fit (a test fits
    a small one)."""
    stem = (name or level.name) + ("-guard" if guard else "")
    path, pub = cache / f"{stem}.vhb", cache / f"{stem}.pub"
    if path.exists() and pub.exists():
        return path, pub.read_text(encoding="utf-8")
    base = base_model()
    pre = dataclasses.replace(base.spec.preprocess, trim=True, upright=True)
    banned = read_sources(image_files([banned_dir]), pre)
    hasher, _ = read_model(fitted_demo_model(banned, cache, fit))
    pre = hasher.spec.preprocess
    banned = read_sources(image_files([banned_dir]), pre)
    calibration_set, _ = split_featureless(read_sources(innocent, pre))
    crops = CropHashes(*crop_hashes(hasher, [s.image for s in banned], boxes)) if level.crops else None
    lists = Lists({NETWORK: hasher.hash_arrays(np.stack([s.array for s in banned])),
                   **({CROPS_SIGNAL: crops.hashes} if crops is not None else {}),
                   **({DCT: np.stack([s.dct for s in banned])} if level.dct else {})})
    done = calibrate(hasher, lists, [s.image for s in banned], [s.digest for s in banned],
                     [s.views for s in calibration_set], np.stack([s.dct for s in calibration_set]),
                     source_photo_groups([s.path for s in calibration_set]), 0.01,
                     limits=FORGERY_LIMITS if guard else None)
    key = generate_private_key()
    _, data = build_bundle(hasher, banned, key, thresholds=done.choice.thresholds, authority="attacks",
                           list_name="demo", sequence=1, expires_in=MAX_VALIDITY_S,
                           calibration=done.calibration, crops=crops, agree=done.choice.agree)
    path.write_bytes(data)
    pub.write_text(public_key_of(key).to_text() + "\n", encoding="utf-8")
    return path, pub.read_text(encoding="utf-8")


def source_photo_groups(paths: Sequence[Path]) -> np.ndarray:
    """Each example image's group, its source photo (examples/sources.json), as the demo's innocent folder has
    one sub-folder per source photo; an image the file does not list is a group of its own."""
    rows = json.loads((ROOT / "examples" / "sources.json").read_text(encoding="utf-8"))
    source = {Path(row["file"]).name: row["source"] for row in rows}
    keys = [source.get(path.name, f"\0{path}") for path in paths]
    names = {key: index for index, key in enumerate(dict.fromkeys(keys))}
    return np.array([names[key] for key in keys], dtype=np.int64)


def platform_setup(bundle_path: Path, pubkey: str, banned_dir: Path, others: Sequence[Path], work: Path) -> Setup:
    """Trust the key and ingest the bundle into a scratch platform database; screen through it from then on."""
    store = Store.open(work / "platform.db")
    add_key(store, pubkey, "attacks")
    ingest_file(store, bundle_path)
    active = stored_bundles(store)
    if len(active) != 1 or active[0].bundle is None:
        raise SystemExit(f"attacks: the bundle is not in force: {active[0].reason}")
    bundle = active[0].bundle
    banned = read_sources(image_files([banned_dir]), bundle.spec.preprocess)
    row_of = rows_of(bundle, banned)
    return Setup(bundle, Screener(active, workers=2), banned, row_of, list(others))


def rows_of(bundle: Bundle, banned: Sequence[Source]) -> dict[int, int]:
    """Which bundle row holds each banned image: the one with its network hash (and DCT hash, when carried);
    images whose hashes several rows share are left out."""
    hashes = bundle.hasher().hash_arrays(np.stack([s.array for s in banned]))
    keys = [bundle.hashes[row].tobytes() + (b"" if bundle.dct is None else bundle.dct.hashes[row].tobytes())
            for row in range(len(bundle.hashes))]
    index: dict[bytes, list[int]] = {}
    for row, k in enumerate(keys):
        index.setdefault(k, []).append(row)
    out = {}
    for i, source in enumerate(banned):
        k = hashes[i].tobytes() + (b"" if bundle.dct is None else source.dct.tobytes())
        if len(index.get(k, [])) == 1:
            out[i] = index[k][0]
    return out


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def screen(setup: Setup, images: Sequence[Image.Image]) -> list[ListVerdict]:
    """The platform's verdict on each image, written as PNG bytes and screened as an upload."""
    uploads = [Upload(f"attack-{i}", data=png(image)) for i, image in enumerate(images)]
    results = list(setup.screener.run(uploads))
    for result in results:
        if result.error:
            raise SystemExit(f"attacks: the platform could not screen a forged image: {result.error}")
    return [result.verdicts[0] for result in results]


def flagged_as(verdict: ListVerdict) -> dict[str, str]:
    """The banned id each signal flags the image as (by the platform's own verdict), for signals that match."""
    matched = verdict.by
    return {side.signal: side.nearest_id for side in verdict.sides if side.signal in matched and side.nearest_id}


# ---------------------------------------------------------------------------------------------------------
# The bundle's hash functions, differentiable


@functools.cache
def resize_matrix(source: int, target: int, resample: str) -> torch.Tensor:
    """(target, source): Pillow's one-dimensional resampling as a matrix, read off by resizing the identity in
    float mode (8-bit images round between passes, a fraction of a grey level)."""
    eye = Image.fromarray(np.eye(source, dtype=np.float32), mode="F")
    filters = {"bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX,
               "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
               "nearest": Image.Resampling.NEAREST}
    return torch.from_numpy(np.asarray(eye.resize((target, source), filters[resample])).T.copy())


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in 0..255 -> (N, 1, H, W) ITU-R 601-2 luma, as Pillow's "L" conversion."""
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def resized(x: torch.Tensor, side: int, resample: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, side, side) squashed as Pillow resizes."""
    rows, columns = resize_matrix(x.shape[2], side, resample), resize_matrix(x.shape[3], side, resample)
    return rows @ x @ columns.T


class WhiteBox:
    """The bundle's network hash and DCT hash as differentiable functions of 8-bit RGB pixels (0..255)."""

    def __init__(self, bundle: Bundle) -> None:
        hasher = bundle.hasher()
        self.network = hasher.network.eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self.pre = hasher.spec.preprocess
        self.bits = hasher.spec.bits

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input for images `x` (no margin trimming: forged images keep their frame)."""
        pre = self.pre
        if pre.mode == "L":
            x = luma(x)
        x = resized(x, pre.size, pre.resample) / 255.0
        mean = torch.tensor(pre.mean).view(1, -1, 1, 1)
        std = torch.tensor(pre.std).view(1, -1, 1, 1)
        return (x - mean) / std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) pixels -> (N, bits) outputs whose signs are the hash."""
        return self.network(self.inputs(x))

    @staticmethod
    def dct(x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) pixels -> (N, 256) DCT coefficients minus their median: the signs are the DCT hash."""
        grey = resized(luma(x), DCT_SIDE, "box")[:, 0]
        c = torch.from_numpy(cosine_matrix()).float()
        coefficients = (c @ grey @ c.T).flatten(1)
        return coefficients - coefficients.median(dim=1, keepdim=True).values


def signs(packed: np.ndarray) -> torch.Tensor:
    """Packed hashes -> +1/-1 float tensor, (N, bits)."""
    return torch.from_numpy(np.unpackbits(np.atleast_2d(packed), axis=1).astype(np.float32) * 2 - 1)


def tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1).copy())[None]


def picture(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(np.uint8(x[0].detach().round().clamp(0, 255).numpy().transpose(1, 2, 0)))


# ---------------------------------------------------------------------------------------------------------
# Reconstruction


def smoothness(x: torch.Tensor) -> torch.Tensor:
    return ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).mean()


CROP_VIEWS: tuple[Box | int, ...] = (*CROPS, *TURNS)  # cropviews.crop_views' order: boxes, then turns


def crop_view(x: torch.Tensor, view: Box | int, side: int) -> torch.Tensor:
    """One of cropviews.crop_views' views of a batch of square latent images, resized back to `side`: a box of
    cropviews.CROPS, or a turn of cropviews.TURNS (degrees counter-clockwise, as PIL turns, cut to
    upright.kept_box)."""
    size = x.shape[-1]
    if isinstance(view, int):
        radians = math.radians(view)
        cos, sin = math.cos(radians), math.sin(radians)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype).expand(len(x), 2, 3)
        turned = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), mode="bilinear",
                               align_corners=False)
        left, top, right, bottom = kept_box(size, size, view)
        part = turned[..., top:bottom, left:right]
    else:
        keep_x, keep_y, px, py = view
        w, h = max(1, round(size * keep_x)), max(1, round(size * keep_y))
        left, top = round((size - w) * px), round((size - h) * py)
        part = x[..., top:top + h, left:left + w]
    return F.interpolate(part, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def invert_network(box: WhiteBox, targets: np.ndarray, crop_targets: Sequence[np.ndarray] | None,
                   steps: int, start: torch.Tensor | None = None) -> torch.Tensor:
    """Latent images (N, C, S, S), pixels 255 * sigmoid(latent), whose network hash is each target (and whose
    crops' hashes are its crop hashes, when given), by gradient descent from `start` (default: flat grey)
    with a smoothness prior.

    The crop hashes of one image sit in the bundle in CROP_VIEWS order, featureless views left out: with all
    present each is matched to its view, else each to the view that fits it best. To bound the work, each step
    looks at CROP_VIEWS_PER_STEP views drawn at random."""
    side = box.pre.size
    generator = torch.Generator().manual_seed(SEED)
    if start is None:
        start = 0.01 * torch.randn(len(targets), box.pre.channels, side, side, generator=generator)
    latent = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([latent], lr=0.05)
    whole = signs(targets)
    crops = [signs(c) for c in crop_targets] if crop_targets is not None else None
    mean = torch.tensor(box.pre.mean).view(1, -1, 1, 1)
    std = torch.tensor(box.pre.std).view(1, -1, 1, 1)
    for _ in range(steps):
        normal = (torch.sigmoid(latent) - mean) / std
        loss = F.relu(1.0 - whole * box.network(normal)).mean()
        if crops is not None:
            drawn = torch.randperm(len(CROP_VIEWS), generator=generator)[:CROP_VIEWS_PER_STEP].tolist()
            views = torch.stack([crop_view(normal, CROP_VIEWS[v], side) for v in drawn], dim=1)  # (N, V, C, S, S)
            outputs = box.network(views.flatten(0, 1)).view(len(targets), len(drawn), -1)
            for n, target in enumerate(crops):
                if len(target) == 0:
                    continue
                hinge = F.relu(1.0 - target[:, None, :] * outputs[n][None]).mean(dim=2)  # (k, V)
                if len(target) == len(CROP_VIEWS):  # each drawn view against its own crop hash
                    per = hinge[drawn, range(len(drawn))]
                else:  # each drawn view against the crop hash it fits best
                    per = hinge.min(dim=0).values
                loss = loss + per.mean() / len(crops)
        loss = loss + 0.3 * smoothness(normal)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return latent.detach()


def grey_thumbnails(latent: torch.Tensor) -> np.ndarray:
    """Latent images -> (N, THUMB, THUMB) grey levels, as `thumbnail` makes them from pictures."""
    pixels = 255 * torch.sigmoid(latent)
    grey = luma(pixels) if pixels.shape[1] == 3 else pixels
    return F.interpolate(grey, size=(THUMB, THUMB), mode="area")[:, 0].numpy().astype(np.float64)


def reconstruction(setup: Setup, chosen: Sequence[int], steps: int) -> dict[str, Any]:
    """Identification rank of each chosen banned image's reconstruction, per signal the bundle carries."""
    bundle = setup.bundle
    gallery_images = [s.image for s in setup.banned] + [open_image(p) for p in setup.others]
    gallery = np.stack([thumbnail(image) for image in gallery_images])
    rows = [setup.row_of[i] for i in chosen]
    box = WhiteBox(bundle)
    found: dict[str, np.ndarray] = {}
    alone = invert_network(box, bundle.hashes[rows], None, steps)
    found["network hash"] = identification_ranks(grey_thumbnails(alone), gallery, chosen)
    if bundle.crops is not None:  # refined from the network-only reconstruction
        crop_targets = [bundle.crops.hashes[bundle.crops.owners == row] for row in rows]
        joint = invert_network(box, bundle.hashes[rows], crop_targets, steps // 2, start=alone)
        found["network and crop hashes"] = identification_ranks(grey_thumbnails(joint), gallery, chosen)
    if bundle.dct is not None:
        sketches = dct_sketches(bundle.dct.hashes[rows])
        found["DCT hash (inverse DCT of its signs)"] = identification_ranks(sketches, gallery, chosen)
    n = len(gallery)
    return {"gallery": n, "images": len(chosen), "chance_top1": 1 / n, "chance_median_rank": (n + 1) / 2,
            "by_signal": {name: {"top1": float(np.mean(r == 1)), "top5": float(np.mean(r <= 5)),
                                 "median_rank": float(np.median(r)), "ranks": r.tolist()}
                          for name, r in found.items()}}


# ---------------------------------------------------------------------------------------------------------
# Forged images


Loss = Callable[[torch.Tensor], torch.Tensor]
Distances = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]
Close = Callable[[Distances], bool]


RESTING = 0.1  # weight of a goal already reached: enough pull to keep it, little enough to spend the budget elsewhere


def pgd(start: Image.Image, goals: Sequence[tuple[Loss, Close]], enough: int, distances: Callable[[Image.Image], Distances],
        budget: int, steps: int) -> Image.Image:
    """Projected signed-gradient descent within `budget` grey levels of `start` on a weighted sum of the goals'
    losses, each one's gradient scaled to the same mean size so that none drowns the others. Every few steps
    the 8-bit image is checked: it is done when `enough` goals are close; a goal already close rests (weight
    RESTING), so the budget goes to the ones still open, as an attacker who knows the rule would spend it.
    Returns the last image tried."""
    x0 = tensor(start)
    delta = torch.zeros_like(x0, requires_grad=True)
    step = max(0.25, budget / 8)
    image = start
    weights = [1.0] * len(goals)
    for i in range(steps):
        x = (x0 + delta).clamp(0, 255)
        grad = torch.zeros_like(x0)
        for (loss, _), weight in zip(goals, weights, strict=True):
            (part,) = torch.autograd.grad(loss(x), delta, retain_graph=True)
            grad += weight * part / part.abs().mean().clamp(min=1e-12)
        with torch.no_grad():
            delta -= step * grad.sign()
            delta.clamp_(-budget, budget)
            delta.copy_((x0 + delta).clamp(0, 255) - x0)
        if i % 5 == 4 or i == steps - 1:
            image = picture(x0 + delta)
            found = distances(image)
            reached = [close(found) for _, close in goals]
            if sum(reached) >= enough:
                return image
            weights = [RESTING if r else 1.0 for r in reached]
    return image


def bits_away(outputs: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge loss pulling the signs of `outputs` (1, bits) towards `target` (bits,)."""
    return F.relu(margin - target * outputs[0]).sum()


class Forger:
    """Collisions and evasions against one bundle, each attempt judged by the platform."""

    def __init__(self, setup: Setup, steps: int) -> None:
        self.setup = setup
        self.bundle = setup.bundle
        self.box = WhiteBox(self.bundle)
        self.hasher = self.bundle.hasher()
        self.steps = steps

    def _distances(self, image: Image.Image) -> Distances:
        """The attacker's own check: distances of the image's network hash to every banned and crop hash, and
        of its DCT hash to every banned DCT hash."""
        own = self.hasher.hash_images([image])
        crops = None if self.bundle.crops is None else hamming_matrix(own, self.bundle.crops.hashes)[0]
        dct = None if self.bundle.dct is None else hamming_matrix(dct_hashes([image]), self.bundle.dct.hashes)[0]
        return hamming_matrix(own, self.bundle.hashes)[0], crops, dct

    def signals(self) -> list[str]:
        return [s.name for s in self.bundle.signals]

    def ways(self) -> dict[str, tuple[str, ...]]:
        """Every way the bundle's rule (vetohash.signals) lets an image match, by name: each signal alone
        (below its threshold), and, where agreement thresholds differ from the thresholds, each pair of signals
        (both below their agreement thresholds)."""
        names = self.signals()
        out = {name: (name,) for name in names if self.bundle.thresholds[name] > 0}
        if self.bundle.agreement != self.bundle.thresholds:
            out.update({f"{a} + {b}": (a, b) for a, b in itertools.combinations(names, 2)})
        return out

    def _pull(self, start: Image.Image, row: int, signal: str, limit: int) -> tuple[Loss, Close]:
        """A loss pulling one signal's hash towards banned row `row`'s, and whether distances are close enough
        (SAFETY bits inside `limit`). The crops signal pulls towards the row's crop hash nearest `start`."""
        bundle, box = self.bundle, self.box
        if signal == "dct" and bundle.dct is not None:
            dct_target = signs(bundle.dct.hashes[row])[0]
            return (lambda x: F.relu(2.0 - dct_target * box.dct(x)[0]).sum(),
                    lambda d: d[2] is not None and d[2][row] < limit - SAFETY)
        if signal == "crops" and bundle.crops is not None:
            rows = np.flatnonzero(bundle.crops.owners == row)
            own = self.hasher.hash_images([start])
            nearest = rows[np.argmin(hamming_matrix(own, bundle.crops.hashes[rows])[0])]
            crop_target = signs(bundle.crops.hashes[nearest])[0]
            return (lambda x: bits_away(box.embed(x), crop_target, 1.0),
                    lambda d: d[1] is not None and d[1][rows].min() < limit - SAFETY)
        target = signs(bundle.hashes[row])[0]
        return lambda x: bits_away(box.embed(x), target, 1.0), lambda d: d[0][row] < limit - SAFETY

    def collide(self, start: Image.Image, row: int, signals: Sequence[str], budget: int) -> Image.Image:
        """`start` perturbed so that every one of `signals` comes within its threshold of banned row `row`: a
        single signal within its threshold alone, two or more within their agreement thresholds."""
        limits = self.bundle.thresholds if len(signals) == 1 else self.bundle.agreement
        goals = [self._pull(start, row, signal, limits[signal]) for signal in signals]
        return pgd(start, goals, len(goals), self._distances, budget, self.steps)

    def evade(self, start: Image.Image, row: int, budget: int) -> Image.Image:
        """Banned image `start` (row `row`) perturbed until every signal is beyond its threshold of every
        banned hash, pushing each signal away from the image's own hashes."""
        bundle, box = self.bundle, self.box
        away = [signs(bundle.hashes[row])[0]]
        if bundle.crops is not None:
            away += list(signs(bundle.crops.hashes[bundle.crops.owners == row]))
        dct_own = None if bundle.dct is None else signs(bundle.dct.hashes[row])[0]
        agree = bundle.agreement

        def network(x: torch.Tensor) -> torch.Tensor:
            outputs = box.embed(x)
            return sum((bits_away(outputs, -target, 1.0) for target in away), torch.zeros(()))

        def far(d: Distances) -> bool:
            """No signal below its threshold alone, and at most one below its agreement threshold."""
            found = {NETWORK: d[0].min(), CROPS_SIGNAL: None if d[1] is None else d[1].min(),
                     DCT: None if d[2] is None else d[2].min()}
            below = [name for name, value in found.items() if value is not None and name in agree
                     and value < agree[name] + SAFETY]
            alone = [name for name, value in found.items() if value is not None and name in agree
                     and value < bundle.thresholds[name] + SAFETY]
            return not alone and len(below) < 2

        goals: list[tuple[Loss, Close]] = [(network, far)]
        if dct_own is not None:
            goals.append((lambda x: F.relu(2.0 + dct_own * box.dct(x)[0]).sum(), far))
        return pgd(start, goals, len(goals), self._distances, budget, self.steps)


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def collisions(setup: Setup, forger: Forger, pairs: Sequence[tuple[Path, int]], budgets: Sequence[int] = BUDGETS
               ) -> dict[str, Any]:
    """For each (unrelated image, banned image) pair and budget: did the platform flag the forged image as that
    banned image (a match naming it), by each way the rule allows (Forger.ways: a signal alone, or two
    signals agreeing), and by any of them, which is what an attacker gets who tries them all. A success at a
    budget counts at the larger ones (the same image is within them)."""
    bundle = setup.bundle
    attacks = forger.ways()
    hits = {name: {b: 0 for b in budgets} for name in [*attacks, "any"]}
    quality: list[float] = []
    for path, banned in pairs:
        start = open_image(path)
        row = setup.row_of[banned]
        target = bundle.ids[row]
        won: dict[str, int | None] = {name: None for name in attacks}
        for budget in budgets:
            todo = [name for name in attacks if won[name] is None]
            forged = [forger.collide(start, row, attacks[name], budget) for name in todo]
            for name, image, verdict in zip(todo, forged, screen(setup, forged), strict=True):
                if verdict.match and target in flagged_as(verdict).values():
                    won[name] = budget
                    quality.append(psnr(start, image))
        for name in attacks:
            for budget in budgets:
                hits[name][budget] += won[name] is not None and won[name] <= budget
        for budget in budgets:
            hits["any"][budget] += any(won[s] is not None and won[s] <= budget for s in attacks)
    return {"attempts": len(pairs), "budgets": list(budgets),
            "succeeded": {name: {str(b): n for b, n in per.items()} for name, per in hits.items()},
            "median_psnr_db": float(np.median(quality)) if quality else None}


def evasions(setup: Setup, forger: Forger, chosen: Sequence[int]) -> dict[str, Any]:
    """For each banned image and budget: did the platform call the perturbed image clean (not featureless)."""
    done = {b: 0 for b in BUDGETS}
    quality = []
    for banned in chosen:
        start = setup.banned[banned].image
        row = setup.row_of[banned]
        for budget in BUDGETS:
            image = forger.evade(start, row, budget)
            verdict = screen(setup, [image])[0]
            if not verdict.match and not verdict.featureless:
                quality.append(psnr(start, image))
                for larger in BUDGETS:
                    done[larger] += larger >= budget
                break
    return {"attempts": len(chosen), "budgets": list(BUDGETS), "succeeded": {str(b): n for b, n in done.items()},
            "median_psnr_db": float(np.median(quality)) if quality else None}


# ---------------------------------------------------------------------------------------------------------
# Edits that need no model


def inscribed_rotation(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated, then cropped to the largest centred square holding no corner fill."""
    turned = rotate(image, degrees)
    keep = 1 / (abs(math.cos(math.radians(degrees))) + abs(math.sin(math.radians(degrees))))
    return crop(turned, keep, keep, 0.5, 0.5)


SIMPLE_EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "top-left quarter": lambda image: crop(image, 0.5, 0.5, 0.0, 0.0),
    "centre crop, half of each side": lambda image: crop(image, 0.5, 0.5, 0.5, 0.5),
    "rotation 30 degrees, corners cropped": lambda image: inscribed_rotation(image, 30),
    "rotation 30 degrees, black corners": lambda image: rotate(image, 30),
}


def simple_edits(setup: Setup, chosen: Sequence[int]) -> dict[str, Any]:
    """How many chosen banned images each edit takes past the platform (clean, not featureless)."""
    out = {}
    for name, edit in SIMPLE_EDITS.items():
        verdicts = screen(setup, [edit(setup.banned[i].image) for i in chosen])
        out[name] = sum(not v.match and not v.featureless for v in verdicts)
    return {"images": len(chosen), "evaded": out}


def random_crops(image: Image.Image, count: int, rng: np.random.Generator) -> list[Image.Image]:
    """`count` crops each keeping 25-50 % of the image's area, with random aspect and position."""
    out = []
    for _ in range(count):
        area = rng.uniform(0.25, 0.5)
        aspect = math.exp(rng.uniform(-0.3, 0.3))
        keep_x = min(1.0, math.sqrt(area * aspect))
        keep_y = min(1.0, area / keep_x)
        out.append(crop(image, keep_x, keep_y, rng.uniform(), rng.uniform()))
    return out


def crop_recall(setup: Setup, per_image: int) -> dict[str, Any]:
    """Recall on random crops keeping 25-50 % of each banned image, by the platform, and by which signals."""
    rng = np.random.default_rng(SEED)
    areas, caught, by = [], [], {"network": 0, "crops": 0, "dct": 0}
    for source in setup.banned:
        views = random_crops(source.image, per_image, rng)
        for view, verdict in zip(views, screen(setup, views), strict=True):
            areas.append(view.width * view.height / (source.image.width * source.image.height))
            caught.append(verdict.match)
            for signal in flagged_as(verdict):
                by[signal] += 1
    areas_a, caught_a = np.asarray(areas), np.asarray(caught)
    bands = {f"{lo:.0%}-{hi:.0%}": float(caught_a[(areas_a >= lo) & (areas_a < hi)].mean())
             for lo, hi in ((0.25, 0.33), (0.33, 0.42), (0.42, 0.51))}
    return {"crops": len(caught), "recall": float(caught_a.mean()), "by_area": bands,
            "matched_by_signal": by}


CROP_VARIANTS: dict[str, tuple[Box, ...]] = {
    "shipped (17 crops, 4 turned views)": CROPS,
    "+ 9 keeping 60 % of each side": CROPS + grid_squares(0.6),
    "+ 9 keeping 50 % of each side": CROPS + grid_squares(0.5),
}


def moderate_copies(setup: Setup) -> list[Image.Image]:
    """One altered copy of each banned image, the demo's moderate edits in turn (examples/make_altered.py),
    re-encoded as JPEG at quality 90 as an upload would be."""
    sys.path.insert(0, str(ROOT / "examples"))
    from make_altered import DEFAULT_KINDS, JPEG_QUALITY, kinds_for

    kinds = kinds_for(DEFAULT_KINDS)
    rng = random.Random(1)
    out = []
    for i, source in enumerate(setup.banned):
        edited = kinds[i % len(kinds)].draw(rng)(source.image)
        data = io.BytesIO()
        edited.save(data, format="JPEG", quality=JPEG_QUALITY)
        out.append(open_image(data.getvalue()))
    return out


def crop_study(banned_dir: Path, others: Sequence[Path], cache: Path, work: Path, per_image: int
               ) -> dict[str, Any]:
    """Each set of crop hashes in CROP_VARIANTS, calibrated like the shipped one: recall on random 25-50 %
    crops and on the demo's moderate edits, and unseen unrelated images flagged, all by the platform."""
    out = {}
    unseen = others[100:]
    for label, boxes in CROP_VARIANTS.items():
        say(f"crop study: {label}")
        name = "max-recall" if boxes == CROPS else f"crops-{len(boxes)}-{boxes[-1][0]:g}"
        path, pub = demo_bundle(banned_dir, others[:100], cache, LEVELS["max-recall"], boxes, name)
        setup = platform_setup(path, pub, banned_dir, others, work / name)
        copies = screen(setup, moderate_copies(setup))
        flagged = screen(setup, [open_image(p) for p in unseen])
        bundle = setup.bundle
        out[label] = {"crop_hashes": 0 if bundle.crops is None else int(len(bundle.crops.hashes)),
                      "crops_threshold": None if bundle.crops is None else bundle.crops.threshold,
                      "network_threshold": bundle.threshold,
                      "cropped_25_50": crop_recall(setup, per_image),
                      "moderate_edits_caught": float(np.mean([v.match for v in copies])),
                      "unseen_unrelated_flagged": float(np.mean([v.match for v in flagged]))}
    return out


# ---------------------------------------------------------------------------------------------------------
# Bit balance


def balance(packed: np.ndarray) -> dict[str, float]:
    """How far each bit position is from being set in half of the hashes, and each hash from half its bits."""
    bits = np.unpackbits(packed, axis=1).astype(np.float64)
    per_bit = bits.mean(axis=0)
    per_hash = bits.mean(axis=1)
    return {"hashes": int(len(bits)), "bits": int(bits.shape[1]),
            "bit_set_share_min": float(per_bit.min()), "bit_set_share_max": float(per_bit.max()),
            "bit_set_share_mean_abs_dev": float(np.mean(np.abs(per_bit - 0.5))),
            "hash_set_share_min": float(per_hash.min()), "hash_set_share_max": float(per_hash.max())}


def balances(bundle: Bundle) -> dict[str, Any]:
    out = {"network": balance(bundle.hashes)}
    if bundle.crops is not None:
        out["crops"] = balance(bundle.crops.hashes)
    if bundle.dct is not None:
        out["dct"] = balance(bundle.dct.hashes)
    return out


# ---------------------------------------------------------------------------------------------------------


_STARTED = time.time()


def say(text: str) -> None:
    print(f"[{time.time() - _STARTED:5.0f} s] {text}", file=sys.stderr, flush=True)


def report(figures: dict[str, Any]) -> str:
    """The figures as the table docs/threat-model.md quotes."""
    lines = [f"bundle: {figures['bundle']}"]
    rec = figures["reconstruction"]
    lines += ["", f"Reconstruction of {rec['images']} banned images, ranked among {rec['gallery']} example images "
                  f"(chance: top-1 {rec['chance_top1']:.1%}, median rank {rec['chance_median_rank']:.0f})",
              f"  {'from':<40}{'top-1':>8}{'top-5':>8}{'median rank':>13}"]
    for name, r in rec["by_signal"].items():
        lines.append(f"  {name:<40}{r['top1']:>8.0%}{r['top5']:>8.0%}{r['median_rank']:>13.0f}")
    col = figures["collisions"]
    budgets = "".join(f"{f'{b}/255':>9}" for b in col["budgets"])
    lines += ["", f"Forced collisions: {col['attempts']} unrelated images, each pushed towards a chosen banned image "
                  f"(flagged as it by the platform)", f"  {'signal attacked':<24}{budgets}"]
    for s, per in col["succeeded"].items():
        lines.append(f"  {s:<24}" + "".join(f"{per[str(b)]:>6}/{col['attempts']:<2}" for b in col["budgets"]))
    lines.append(f"  median PSNR of the successful forgeries: {col['median_psnr_db']:.1f} dB"
                 if col["median_psnr_db"] else "  no successful forgery")
    ev = figures["evasions"]
    lines += ["", f"Evasion: {ev['attempts']} banned images perturbed until every signal is clean",
              "  " + ", ".join(f"{b}/255: {ev['succeeded'][str(b)]}/{ev['attempts']}" for b in ev["budgets"])
              + (f"; median PSNR {ev['median_psnr_db']:.1f} dB" if ev["median_psnr_db"] else "")]
    simple = figures["simple_edits"]
    lines += ["", f"Edits without the model ({simple['images']} banned images; evaded = screened clean)"]
    lines += [f"  {name:<40}{n:>4}/{simple['images']}" for name, n in simple["evaded"].items()]
    cr = figures["crop_recall"]
    lines += ["", f"Random crops keeping 25-50 % of the area: {cr['crops']} crops, recall {cr['recall']:.1%} ("
              + ", ".join(f"area {k}: {v:.1%}" for k, v in cr["by_area"].items()) + "); matched by "
              + ", ".join(f"{k} {v}" for k, v in cr["matched_by_signal"].items())]
    lines += ["", "Bit balance (share of hashes with each bit set; share of each hash's bits set)"]
    for s, b in figures["balance"].items():
        lines.append(f"  {s:<8} {b['hashes']:>5} hashes of {b['bits']} bits: per bit {b['bit_set_share_min']:.2f}"
                     f"..{b['bit_set_share_max']:.2f} (mean |p - 0.5| {b['bit_set_share_mean_abs_dev']:.3f}); "
                     f"per hash {b['hash_set_share_min']:.2f}..{b['hash_set_share_max']:.2f}")
    lines.append(f"\n{figures['seconds']:.0f} s in all")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--bundle", type=Path, help="a bundle to attack (default: build the demo's)")
    parser.add_argument("--pubkey", type=Path, help="the public key the bundle is signed with (with --bundle)")
    parser.add_argument("--privacy", choices=list(LEVELS), default=DEFAULT,
                        help=f"the demo bundle's privacy level, as `authority publish --privacy` (default {DEFAULT})")
    parser.add_argument("--banned", type=Path, default=ROOT / "examples" / "banned",
                        help="the banned images, to score the attacks (default: examples/banned)")
    parser.add_argument("--others", type=Path, default=ROOT / "examples" / "unrelated",
                        help="images that are not banned: collision starting points and reconstruction "
                             "decoys (default: examples/unrelated; the demo calibrates on its first 100)")
    parser.add_argument("--count", type=int, default=20, help="images per attack (default 20)")
    parser.add_argument("--quick", action="store_true", help="10 images per attack, fewer steps: a few minutes")
    parser.add_argument("--steps", type=int, help="gradient steps per forgery (default 60, --quick 40)")
    parser.add_argument("--crops-per-image", type=int, default=5, help="random 25-50 %% crops per banned image")
    parser.add_argument("--crop-study", action="store_true",
                        help="instead of the attacks: smaller crop hashes beside the shipped ones, each "
                             "calibrated alike, on 25-50 %% crops, moderate edits and unseen unrelated images")
    parser.add_argument("--forgery-guard", action="store_true",
                        help="build the demo bundle as `authority publish --forgery-guard` does (agreement "
                             "thresholds under calibration.FORGERY_LIMITS)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if (args.bundle is None) != (args.pubkey is None):
        parser.error("--bundle and --pubkey go together")
    count = 10 if args.quick else args.count
    steps = args.steps or (40 if args.quick else 60)
    per_image = 2 if args.quick else args.crops_per_image
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    cache = ROOT / ".bench" / "attacks"
    others = image_files([args.others])
    with tempfile.TemporaryDirectory(prefix="vetohash-attacks-") as scratch:
        work = Path(scratch)
        if args.crop_study:
            study = crop_study(args.banned, others, cache, work, per_image)
            print(crop_report(study))
            if args.json:
                args.json.write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
            return 0
        if args.bundle is None:
            say(f"the demo's bundle at privacy level {args.privacy}" + (", forgery guard" if args.forgery_guard else ""))
            bundle_path, pubkey = demo_bundle(args.banned, others[:100], cache, LEVELS[args.privacy],
                                              guard=args.forgery_guard)
        else:
            bundle_path, pubkey = args.bundle, args.pubkey.read_text(encoding="utf-8")
        figures = attacks(platform_setup(bundle_path, pubkey, args.banned, others, work), count, steps,
                          per_image, quick=args.quick)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


def attacks(setup: Setup, count: int, steps: int, per_image: int, quick: bool) -> dict[str, Any]:
    """Every measurement against one ingested bundle, on `count` banned images (and as many unrelated ones)."""
    rng = np.random.default_rng(SEED)
    known = sorted(setup.row_of)
    chosen = sorted(rng.choice(known, size=min(count, len(known)), replace=False).tolist())
    unseen = setup.others[100:] if len(setup.others) > 100 else setup.others
    starts = [unseen[int(i)] for i in rng.choice(len(unseen), size=len(chosen), replace=False)]
    targets = rng.permutation(chosen).tolist()
    forger = Forger(setup, steps)
    bundle = setup.bundle
    figures: dict[str, Any] = {"bundle": f"{len(bundle.ids)} hashes, format v{bundle.version}, decision "
                                         f"{bundle.decision}, thresholds network {bundle.threshold}"
                                         + (f", crops {bundle.crops.threshold} ({len(bundle.crops.hashes)} "
                                            f"crop hashes)" if bundle.crops else "")
                                         + (f", DCT {bundle.dct.threshold}" if bundle.dct else "")
                                         + ("" if bundle.agree is None else ", two of " + ", ".join(
                                             f"{name} < {t}" for name, t in bundle.agreement.items()))}
    say("reconstruction")
    figures["reconstruction"] = reconstruction(setup, chosen, 60 if quick else 100)
    say("forced collisions")
    figures["collisions"] = collisions(setup, forger, list(zip(starts, targets, strict=True)))
    say("evasion")
    figures["evasions"] = evasions(setup, forger, chosen)
    say("edits without the model, crops")
    figures["simple_edits"] = simple_edits(setup, chosen)
    figures["crop_recall"] = crop_recall(setup, per_image)
    figures["balance"] = balances(bundle)
    figures["seconds"] = time.time() - _STARTED
    return figures


def crop_report(study: dict[str, Any]) -> str:
    lines = ["Crop hashes: recall on random crops keeping 25-50 % of the area, on the demo's moderate edits, and "
             "unseen unrelated images flagged (every bundle calibrated at 1 % on unrelated-000..099)",
             f"  {'crop hashes':<34}{'hashes':>7}{'thresholds':>12}{'25-50 %':>9}{'25-33 %':>9}{'moderate':>10}"
             f"{'unrelated':>11}"]
    for label, r in study.items():
        crops = r["cropped_25_50"]
        lines.append(f"  {label:<34}{r['crop_hashes']:>7}{r['network_threshold']:>6}/{r['crops_threshold']:<5}"
                     f"{crops['recall']:>9.1%}{crops['by_area']['25%-33%']:>9.1%}"
                     f"{r['moderate_edits_caught']:>10.1%}{r['unseen_unrelated_flagged']:>11.1%}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
