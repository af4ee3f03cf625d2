"""Instance-discrimination pretraining: a general copy detector learnt from unlabelled images.

Every training image is its own class. Two independently altered views of each image in a batch must embed
closer to each other than to any other view in the batch (InfoNCE / NT-Xent), and a KoLeo term spreads the
embeddings over the sphere so unrelated images do not crowd together, which is what keeps innocent images
away from banned hashes. After training, the sign binarisation is fitted (binarize.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vetohash.errors import SpecError
from vetohash.hasher import Hasher
from vetohash.preprocess import Preprocess, to_array
from vetohash.specs import ModelSpec

from .alterations import SINGLE_KINDS, Kind, make_kind
from .binarize import fold_into_head


Augment = Callable[[Image.Image, random.Random], Image.Image]


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over 2N views: row i of `a` must pick row i of `b` (and vice versa) among all other views."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    n = len(a)
    eye = torch.eye(2 * n, dtype=torch.bool, device=a.device)
    logits = (z @ z.T / temperature).masked_fill(eye, float("-inf"))  # a view is not its own positive
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(a.device)
    return F.cross_entropy(logits, target)


def koleo(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy estimate (negated): small when each point's nearest neighbour is far."""
    z = F.normalize(z, dim=1)
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    distances = torch.cdist(z, z).masked_fill(eye, float("inf"))
    return -torch.log(distances.min(dim=1).values + eps).mean()


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of one pretraining run."""

    steps: int = 3000
    batch: int = 128  # images per step; each gives two views
    lr: float = 1e-3
    temperature: float = 0.05
    koleo_weight: float = 0.1
    crop_min: float = 0.4  # an instance is a random crop covering at least this share of a source side
    instance_size: int = 128
    fit_sample: int = 8192  # unaltered instances the bit balance and rotation are fitted on


def random_instance(sources: Sequence[Image.Image], rng: random.Random, config: PretrainConfig) -> Image.Image:
    """A random square crop of a random source, resized: far more distinct instances than sources."""
    image = sources[rng.randrange(len(sources))]
    w, h = image.size
    side = int(min(w, h) * rng.uniform(config.crop_min, 1.0))
    x, y = rng.randint(0, w - side), rng.randint(0, h - side)
    return image.crop((x, y, x + side, y + side)).resize((config.instance_size,) * 2, Image.Resampling.BICUBIC)


def view_batches(sources: Sequence[Image.Image], augment: Augment, pre: Preprocess, config: PretrainConfig,
                 seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless (batch, batch) pairs of preprocessed views; view i of both arrays shows the same instance."""
    rng = random.Random(seed)
    while True:
        first, second = [], []
        for _ in range(config.batch):
            instance = random_instance(sources, rng, config)
            first.append(to_array(augment(instance, rng), pre))
            second.append(to_array(augment(instance, rng), pre))
        yield np.stack(first), np.stack(second)


def pretrain_step(network: torch.nn.Module, optimiser: torch.optim.Optimizer, a: torch.Tensor, b: torch.Tensor,
                  config: PretrainConfig) -> float:
    """One optimisation step on a batch of view pairs; returns the loss."""
    za, zb = network(a), network(b)
    loss = info_nce(za, zb, config.temperature) + config.koleo_weight * koleo(za)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return float(loss.detach())


class _ViewStream(torch.utils.data.IterableDataset):
    """view_batches on DataLoader workers; worker k draws from seed + k, so a run is fixed by seed and workers."""

    def __init__(self, sources: Sequence[Image.Image], augment: Augment, pre: Preprocess,
                 config: PretrainConfig, seed: int) -> None:
        self.args = (sources, augment, pre, config)
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        return view_batches(*self.args, seed=self.seed + (info.id if info else 0))


def learning_rate(config: PretrainConfig, progress: float) -> float:
    """Linear warm-up over the first 3 % of training, then cosine decay to zero."""
    if progress < 0.03:
        return config.lr * progress / 0.03
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - 0.03) / 0.97)))


def training_progress(step: int, steps: int, started: float, minutes: float | None) -> float:
    """How far along a run is, from 0 to 1 (done): by steps out of `steps`, or by wall-clock time since
    `started` (time.monotonic) out of `minutes` when given, whichever is further."""
    done = step / steps
    if minutes:
        done = max(done, (time.monotonic() - started) / (60 * minutes))
    return done


def pretrain(network: torch.nn.Module, sources: Sequence[Image.Image], augment: Augment, pre: Preprocess,
             config: PretrainConfig, *, seed: int, device: str = "cpu", workers: int = 0,
             minutes: float | None = None, progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Train `network` in place by instance discrimination; returns the loss of every step.

    With `minutes`, training ends at that wall-clock budget or after `config.steps`, whichever comes first,
    and the learning-rate schedule follows whichever is further along (the step count is in the metadata).
    """
    torch.manual_seed(seed)
    network.to(device).train()
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(_ViewStream(sources, augment, pre, config, seed), batch_size=None,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         prefetch_factor=4 if workers else None)
    losses: list[float] = []
    start = time.monotonic()
    for step, (a, b) in enumerate(loader):
        done = training_progress(step, config.steps, start, minutes)
        if done >= 1:
            break
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(config, done)
        loss = pretrain_step(network, optimiser, torch.as_tensor(a, device=device), torch.as_tensor(b, device=device), config)
        losses.append(loss)
        if progress:
            progress(step, loss)
    network.to("cpu").eval()
    return losses


def random_edits(kinds: Sequence[Kind], max_edits: int = 2) -> Augment:
    """An augmentation that applies 0 to `max_edits` edits drawn from `kinds` (one draw of each)."""

    def augment(image: Image.Image, rng: random.Random) -> Image.Image:
        for kind in rng.sample(list(kinds), rng.randint(0, max_edits)):
            image = kind.draw(rng)(image)
        return image

    return augment


def instance_embeddings(network: torch.nn.Module, sources: Sequence[Image.Image], pre: Preprocess,
                        config: PretrainConfig, count: int, seed: int) -> np.ndarray:
    """The network's outputs on `count` fresh, unaltered instances: the sample the binarisation is fitted on."""
    rng = random.Random(seed)
    batch = np.stack([to_array(random_instance(sources, rng, config), pre) for _ in range(count)])
    network.eval()
    with torch.no_grad():
        return np.concatenate([network(torch.from_numpy(batch[i:i + 256])).numpy() for i in range(0, count, 256)])


def pretrain_model(spec: ModelSpec, sources: Sequence[Image.Image], config: PretrainConfig, *, seed: int,
                   device: str = "cpu", workers: int = 0, binarize: str = "whiten-itq",
                   minutes: float | None = None, progress: Callable[[int, float], None] | None = None) -> tuple[Hasher, dict[str, Any]]:
    """A freshly initialised network of `spec`, pretrained on `sources` with edits of every kind, its sign
    binarisation fitted on unaltered instances; returns the hasher and the metadata for its model file."""
    torch.manual_seed(seed)
    network = spec.build()
    head = getattr(network, "head", None)
    if not isinstance(head, torch.nn.Linear):
        raise SpecError(f"{spec.name}: pretraining needs a network whose hash comes from a linear head, as copy-cnn's")
    augment = random_edits([make_kind(name) for name in SINGLE_KINDS])
    losses = pretrain(network, sources, augment, spec.preprocess, config, seed=seed, device=device,
                      workers=workers, minutes=minutes, progress=progress)
    sample = instance_embeddings(network, sources, spec.preprocess, config, config.fit_sample, seed + 1)
    fold_into_head(head, sample, binarize, seed=seed)
    meta = {"kind": "pretrained", "seed": seed, "steps": len(losses), "sources": len(sources), "binarize": binarize,
            "config": asdict(config), "edits": list(SINGLE_KINDS), "final_loss": float(np.mean(losses[-50:])),
            "losses": [float(x) for x in losses[:: max(1, len(losses) // 500)]]}
    return Hasher(spec, network), meta
