"""Distilling the mirror-averaged copy detector into a one-pass student that costs half as much per image.

The teacher (copy-cnn with `mirror`) runs its convolutional trunk on an image and on its left-right mirror and
averages the pooled features, so a mirrored copy gets exactly the same hash, at twice the cost. The student has
the same layers without the mirror pass; it starts from the teacher's weights and learns to give, for an image
and for its mirror alike, the teacher's embedding of that image (the mirror-averaged one, which is the same for
both). Training images are what pretraining uses (random crops of the sources, 0 to 2 edits of every kind), so
the student learns the teacher's behaviour on altered copies too. Batch norm keeps the teacher's statistics
(the networks stay in evaluation mode): the student fine-tunes a network that already works, with small CPU
batches whose statistics would be noisy.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vetohash.architectures import CopyParams
from vetohash.errors import SpecError
from vetohash.hasher import Hasher
from vetohash.specs import ModelSpec

from .alterations import SINGLE_KINDS, make_kind
from .pretraining import PretrainConfig, learning_rate, random_edits, training_progress, view_batches

SUFFIX = "-one-pass"  # appended to the teacher's spec name: platforms see which network a bundle runs


@dataclasses.dataclass(frozen=True)
class DistilConfig:
    """Settings of one distillation run."""

    steps: int = 2000
    batch: int = 16  # instances per step; each gives two altered views, each seen as it is and mirrored
    lr: float = 1e-3
    max_edits: int = 2  # edits chained per view, as pretraining draws them


def student_spec(teacher: ModelSpec) -> ModelSpec:
    """The teacher's spec without the mirror pass (same layers, preprocessing and hash width)."""
    if teacher.arch.get("type") != "copy-cnn" or not CopyParams.of(teacher.arch).mirror:
        raise SpecError(f"distillation needs a copy-cnn teacher with mirror: true, not {dict(teacher.arch)!r}")
    name = teacher.name[:64 - len(SUFFIX)] + SUFFIX
    return dataclasses.replace(teacher, name=name, arch={**teacher.arch, "mirror": False})


def distil_step(student: torch.nn.Module, teacher: torch.nn.Module, optimiser: torch.optim.Optimizer,
                views: torch.Tensor) -> float:
    """One step: the student's embeddings of `views` and of their mirrors are pulled towards the teacher's
    (mirror-averaged) embeddings of `views`; returns the mean squared error."""
    with torch.no_grad():
        target = teacher(views)
    out = student(torch.cat([views, views.flip(3)]))
    loss = F.mse_loss(out, torch.cat([target, target]))
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return float(loss.detach())


def distil(teacher: Hasher, sources: Sequence[Image.Image], config: DistilConfig, *, seed: int,
           minutes: float | None = None,
           progress: Callable[[int, float], None] | None = None) -> tuple[Hasher, dict[str, Any]]:
    """A one-pass student of `teacher` trained on views of `sources`; returns it with the metadata for its
    model file. With `minutes`, training ends at that wall-clock budget or after `config.steps`, whichever
    comes first, and the learning-rate schedule follows whichever is further along."""
    spec = student_spec(teacher.spec)
    torch.manual_seed(seed)
    teacher_net = teacher.network.eval()
    student = spec.build()
    student.load_state_dict(teacher_net.state_dict())  # the same weights: only the mirror pass goes
    student.eval()
    for parameter in teacher_net.parameters():
        parameter.requires_grad_(False)
    # The view stream and the schedule are pretraining's, so the student sees what the teacher was trained on.
    views = PretrainConfig(steps=config.steps, batch=config.batch, lr=config.lr)
    augment = random_edits([make_kind(name) for name in SINGLE_KINDS], config.max_edits)
    optimiser = torch.optim.Adam(student.parameters(), lr=config.lr)
    losses: list[float] = []
    started = time.monotonic()
    for step, (a, b) in enumerate(view_batches(sources, augment, spec.preprocess, views, seed)):
        done = training_progress(step, config.steps, started, minutes)
        if done >= 1 and losses:  # at least one step, however short the budget
            break
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(views, done)
        losses.append(distil_step(student, teacher_net, optimiser, torch.from_numpy(np.concatenate([a, b]))))
        if progress:
            progress(step, losses[-1])
    student.eval()
    window = max(1, min(50, len(losses) // 10))  # steps averaged for the first and the final loss
    meta = {"kind": "distilled", "teacher": teacher.spec.name, "seed": seed, "steps": len(losses),
            "sources": len(sources), "config": dataclasses.asdict(config), "edits": list(SINGLE_KINDS),
            "first_loss": float(np.mean(losses[:window])), "final_loss": float(np.mean(losses[-window:])),
            "losses": [float(x) for x in losses[:: max(1, len(losses) // 500)]]}
    return Hasher(spec, student), meta
