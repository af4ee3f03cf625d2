"""Siamese training with the contrastive loss: one network embeds both images of every pair.

All altered copies are generated once, up front, as preprocessed tensors; batches are index look-ups into
them, so an epoch costs only the network's own work. The run is deterministic under a seed on the CPU:
torch, numpy and every `random.Random` are seeded explicitly, and alterations depend on the seed and the
images' content only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vetohash import dcthash
from vetohash.errors import VetohashError
from vetohash.hasher import Hasher
from vetohash.preprocess import Preprocess, query_arrays, to_array

from .config import AlterationPlan, TrainingConfig
from .fastpath import paper_embedder
from .losses import contrastive_loss, contrastive_terms
from .pairs import Copies, PairSets, Pairs, draw_edit, make_pairs, plan_copies
from .sources import Source

META_VERSION = 1
EVAL_BATCH = 1024


@dataclass(frozen=True)
class Epoch:
    """One epoch's mean losses (validation is None when nothing is held out) and its wall time."""

    epoch: int
    train_loss: float
    val_loss: float | None
    seconds: float


@dataclass
class TrainingResult:
    """The trained hasher, the per-epoch history, and the metadata the model file keeps."""

    hasher: Hasher
    history: list[Epoch]
    meta: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else the CPU; 'cpu', 'cuda', 'cuda:1' are taken as they are."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VetohashError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VetohashError(f"device {name!r} was asked for, but this torch sees no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise VetohashError(f"unsupported device {name!r}; use auto, cpu or cuda")
    return device


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and `random`; ask cuDNN for determinism."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def altered_arrays(sources: Sequence[Source], plans: Sequence[AlterationPlan], copies: Copies, seed: int,
                   pre: Preprocess, rows: np.ndarray | None = None, workers: int = 2,
                   progress: bool = False) -> np.ndarray:
    """The preprocessed tensors of the given copies (all by default), (len(rows), C, S, S) float32."""
    rows = np.arange(len(copies)) if rows is None else rows
    out = np.empty((len(rows), pre.channels, pre.size, pre.size), np.float32)

    def store(position: int, image: Image.Image) -> None:
        out[position] = to_array(image, pre)

    _render(sources, plans, copies, seed, rows, store, workers, progress)
    return out


def altered_queries(sources: Sequence[Source], plans: Sequence[AlterationPlan], copies: Copies, seed: int,
                    pre: Preprocess, rows: np.ndarray, workers: int = 2,
                    progress: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """The given copies as a platform screens them: each one's (views, C, S, S) query_arrays, and their DCT
    hashes, (len(rows), dcthash.HASH_BYTES)."""
    views: list[np.ndarray] = [np.empty(0)] * len(rows)
    dct = np.empty((len(rows), dcthash.HASH_BYTES), np.uint8)

    def store(position: int, image: Image.Image) -> None:
        views[position] = query_arrays(image, pre)
        dct[position] = dcthash.dct_hashes([image])[0]

    _render(sources, plans, copies, seed, rows, store, workers, progress)
    return views, dct


def _render(sources: Sequence[Source], plans: Sequence[AlterationPlan], copies: Copies, seed: int, rows: np.ndarray,
            store: Callable[[int, Image.Image], None], workers: int, progress: bool) -> None:
    """Draw each of the given copies (the same edit for the same source, plan, number and seed) and hand it
    to `store` with its position in `rows`; sources are altered on a thread pool."""
    by_source: dict[int, list[int]] = {}
    for position, row in enumerate(rows):
        by_source.setdefault(int(copies.source[row]), []).append(position)

    def one(item: tuple[int, list[int]]) -> int:
        s, positions = item
        source = sources[s]
        for position in positions:
            row = rows[position]
            edit = draw_edit(plans[copies.plan[row]], seed, source.digest, int(copies.number[row]))
            store(position, edit(source.image))
        return len(positions)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(rows), desc="altering", unit="img", disable=not progress, leave=False) as bar:
        for done in pool.map(one, by_source.items()):
            bar.update(done)


def train(sources: Sequence[Source], config: TrainingConfig, seed: int = 0, device: str = "auto",
          progress: bool = False, on_epoch: Callable[[Epoch], None] | None = None,
          on_stage: Callable[[str], None] | None = None, threads: int = 1) -> TrainingResult:
    """Train the config's spec on `sources` with its alterations; returns the hasher (on the CPU) and history.

    On the CPU, torch runs `threads` intra-op threads. One is the default: the paper's network does many small
    operations, and with two OpenMP threads each one waits at a barrier for a thread that another process
    has descheduled; on a shared 2-core machine that measured 10 to 20 times slower than one thread, which
    an idle machine beats by only about a third. The results do not depend on the thread count.
    """
    if len(sources) < 2:
        raise VetohashError("training needs at least 2 distinct images (negative pairs pair two of them)")
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        return _train(sources, config, seed, device, progress, on_epoch, on_stage)
    finally:
        torch.set_num_threads(before)


def _train(sources: Sequence[Source], config: TrainingConfig, seed: int, device: str, progress: bool,
           on_epoch: Callable[[Epoch], None] | None, on_stage: Callable[[str], None] | None) -> TrainingResult:
    seed_everything(seed)
    target = resolve_device(device)
    spec = config.spec()
    pre = spec.preprocess
    network = spec.build()
    digests = [source.digest for source in sources]
    stage = on_stage or (lambda _text: None)

    started = time.perf_counter()
    copies = plan_copies(digests, config.alterations, seed, config.validation_share)
    stage(f"generating {len(copies)} altered copies of {len(sources)} images")
    pool = np.concatenate([np.stack([source.array for source in sources]),
                           altered_arrays(sources, config.alterations, copies, seed, pre, progress=progress)])
    pairs = make_pairs(copies, len(sources), seed, config.negatives_per_positive)
    alter_seconds = time.perf_counter() - started
    stage(f"{len(pairs.train)} training pairs, {len(pairs.validation)} validation pairs "
          f"({alter_seconds:.1f} s to generate)")

    data = torch.from_numpy(pool).to(target)
    network.to(target)
    embed = _embedder(network, seed) if target.type == "cpu" else network
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    order = torch.Generator().manual_seed(seed)
    history: list[Epoch] = []
    steps_per_epoch = -(-len(pairs.train) // config.batch_size)

    started = time.perf_counter()
    with tqdm(total=config.epochs * steps_per_epoch, desc="training", unit="batch", disable=not progress,
              dynamic_ncols=True) as bar:
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            network.train()
            permutation = torch.randperm(len(pairs.train), generator=order).numpy()
            total, seen = 0.0, 0
            for start in range(0, len(permutation), config.batch_size):
                rows = permutation[start:start + config.batch_size]
                loss = _batch_loss(embed, data, pairs.train, rows, config.margin, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(rows)
                seen += len(rows)
                bar.update(1)
                bar.set_description(f"epoch {epoch}/{config.epochs}")
                bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
            val_loss = evaluate_loss(network, data, pairs.validation, config.margin, embed)
            record = Epoch(epoch, total / seen, val_loss, time.perf_counter() - epoch_start)
            history.append(record)
            if on_epoch:
                on_epoch(record)
    train_seconds = time.perf_counter() - started

    network.cpu().eval()
    hasher = Hasher(spec, network)
    meta = _meta(config, seed, digests, copies, pairs, history, target, alter_seconds, train_seconds)
    return TrainingResult(hasher, history, meta, {"alterations": alter_seconds, "training": train_seconds})


def _embedder(network: torch.nn.Module, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fastest CPU path that computes this network: fused torch operations (fastpath), else the module."""
    rng = np.random.default_rng([seed, 0xD20])
    return paper_embedder(network, rng) or network


def _batch_loss(embed: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor, pairs: Pairs,
                rows: np.ndarray, margin: float, device: torch.device) -> torch.Tensor:
    """Both sides of the batch go through the one network in a single call (shared weights)."""
    left, right = pairs.left[rows], pairs.right[rows]
    index = torch.from_numpy(np.concatenate([left, right])).to(data.device)
    embeddings = embed(data[index])
    a, b = embeddings[:len(rows)], embeddings[len(rows):]
    label = torch.from_numpy(pairs.label[rows]).to(device)
    return contrastive_loss(a, b, label, margin)


@torch.no_grad()
def evaluate_loss(network: torch.nn.Module, data: torch.Tensor, pairs: Pairs, margin: float,
                  embed: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float | None:
    """Mean contrastive loss over pairs with the network in evaluation mode (no dropout); None if no pairs.

    Each image the pairs use is embedded once, however many pairs it is in.
    """
    if len(pairs) == 0:
        return None
    embed = embed or network
    was_training = network.training
    network.eval()
    rows = np.unique(np.concatenate([pairs.left, pairs.right]))
    parts = [embed(data[torch.from_numpy(rows[i:i + EVAL_BATCH]).to(data.device)])
             for i in range(0, len(rows), EVAL_BATCH)]
    embeddings = torch.cat(parts)
    left = embeddings[torch.from_numpy(np.searchsorted(rows, pairs.left)).to(embeddings.device)]
    right = embeddings[torch.from_numpy(np.searchsorted(rows, pairs.right)).to(embeddings.device)]
    label = torch.from_numpy(pairs.label).to(embeddings.device)
    network.train(was_training)
    return float(contrastive_terms(left, right, label, margin).mean())


def _meta(config: TrainingConfig, seed: int, digests: Sequence[str], copies: Copies, pairs: PairSets,
          history: Sequence[Epoch], device: torch.device, alter_seconds: float, train_seconds: float
          ) -> dict[str, Any]:
    """What `evaluate` needs to rebuild the held-out copies, and what a person wants to know about the run."""
    last = history[-1]
    return {
        "trainer": "vetohash-authority",
        "meta_version": META_VERSION,
        "seed": seed,
        "config": config.to_dict(),
        "sources": list(digests),
        "copies": len(copies),
        "validation_copies": int(copies.validation.sum()),
        "pairs": {"train": len(pairs.train), "validation": len(pairs.validation),
                  "shared_negatives": pairs.shared_negatives},
        "history": [{"epoch": e.epoch, "train_loss": e.train_loss, "val_loss": e.val_loss, "seconds": e.seconds}
                    for e in history],
        "final": {"train_loss": last.train_loss, "val_loss": last.val_loss},
        "seconds": {"alterations": round(alter_seconds, 3), "training": round(train_seconds, 3)},
        "device": device.type,
        "torch": torch.__version__,
        "created": int(time.time()),
    }
