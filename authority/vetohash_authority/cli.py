"""`authority`: make a key, train the hash on the banned images, evaluate it, publish a signed bundle.

Thin on purpose: each command parses options, calls the library, and prints. Library errors become one line
and exit status 2 (vetohash.console.run); VETOHASH_DEBUG=1 shows the traceback. Modules that import torch are
imported inside the commands that need them, so `--help` and `keygen` answer at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import vetohash
from vetohash.console import Group, printable, run
from vetohash.errors import KeyFileError, VetohashError

from .privacy import DEFAULT as DEFAULT_PRIVACY
from .privacy import LEVELS

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from vetohash.bundle import Bundle
    from vetohash.chunked import Chunked
    from vetohash.preprocess import Preprocess

    from .publishing import Innocent, Thresholds
    from .sources import Source

PASSPHRASE_ENV = "VETOHASH_PASSPHRASE"
FEATURELESS_LISTED = 20  # featureless files named before publish refuses; the rest are counted
AUTHORITY_ENV = "VETOHASH_AUTHORITY"
PATH = click.Path(path_type=Path)


def _warn(message: str) -> None:
    click.echo(f"warning: {printable(message)}", err=True)


def _info(message: str) -> None:
    click.echo(message, err=True)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(vetohash.__version__, prog_name="authority")
def cli() -> None:
    """The authority's side of vetohash: from a folder of banned images to a signed bundle.

    \b
      authority keygen --out-dir keys
      authority pretrain photos/ --out base.vhm --device cuda    # optional: your own copy detector
      authority distil --out student.vhm --minutes 30       # optional: a copy detector half as costly
      authority train banned/ --out banned.model            # fit the copy detector (default)
      authority train banned/ --out paper.model --recipe paper   # the paper's siamese CNN
      authority evaluate banned.model banned/ --innocent unrelated/
      authority publish banned.model banned/ --key keys/authority.key --out banned.vhb

    Errors print one line and exit with status 2 (set VETOHASH_DEBUG=1 for a traceback).
    """


# --- keygen ----------------------------------------------------------------------------------------------------


@cli.command()
@click.option("--out-dir", type=PATH, default=Path("."), show_default=True,
              help="Folder for authority.key (private, mode 0600) and authority.pub.")
@click.option("--passphrase", "ask", is_flag=True,
              help=f"Encrypt the private key under a passphrase typed at a prompt (or taken from "
                   f"${PASSPHRASE_ENV} when set, which also encrypts without this flag).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def keygen(out_dir: Path, ask: bool, as_json: bool) -> None:
    """Make a new Ed25519 signing key pair; never overwrites an existing one.

    \b
      authority keygen --out-dir keys
      authority keygen --out-dir keys --passphrase
      VETOHASH_PASSPHRASE=... authority keygen --out-dir keys

    Give authority.pub to platforms (`platform trust add`); keep authority.key secret.
    """
    from vetohash.keys import generate_private_key, public_key_of, write_keypair

    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    if ask and passphrase is None:
        passphrase = click.prompt("passphrase", hide_input=True, confirmation_prompt=True, err=True)
    key = generate_private_key()
    private_path, public_path = write_keypair(out_dir, key, passphrase.encode() if passphrase else None)
    public = public_key_of(key)
    if as_json:
        click.echo(json.dumps({"private_key": str(private_path), "public_key": str(public_path),
                               "key_id": public.key_id, "public_key_text": public.to_text(),
                               "encrypted": passphrase is not None}))
        return
    click.echo(f"private key: {private_path} (mode 0600{', encrypted' if passphrase else ''}; keep it secret)")
    click.echo(f"public key:  {public_path}")
    click.echo(f"key id:      {public.key_id}")
    click.echo(public.to_text())


# --- train ------------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("images_dir", type=PATH)
@click.option("--out", "out", type=PATH, required=True, help="Model file to write (spec, weights, settings).")
@click.option("--recipe", type=click.Choice(["copy", "paper"]), default="copy", show_default=True,
              help="copy: fit the pretrained copy detector to this list (best measured, minutes on a CPU); "
                   "paper: train the paper's siamese CNN from scratch.")
@click.option("--base", "base_path", type=PATH,
              help="copy recipe: pretrained copy-cnn model to fit (default: the one shipped with vetohash).")
@click.option("--bits", type=click.IntRange(8, 1024), help="copy recipe: hash width (default 160).")
@click.option("--views", type=click.IntRange(2), help="copy recipe: altered views per image (default 30).")
@click.option("--background", type=click.IntRange(1),
              help="copy recipe: generated background images for the spread estimate (default 1500).")
@click.option("--no-trim", is_flag=True,
              help="copy recipe: hash images with their flat margins (borders, letterboxing) instead of cutting "
                   "them first.")
@click.option("--no-upright", is_flag=True,
              help="copy recipe: do not also hash queries turned back upright when their corners show a rotation.")
@click.option("--fits", type=click.IntRange(1), default=1, show_default=True,
              help="copy recipe: fit the list this many times (seeds --seed, --seed + 1, ...), calibrate each as "
                   "publish would on --innocent, and keep the one that catches the most of the authority's own "
                   "altered copies: one fit's draw moves recall by a point or two (docs/benchmarks.md).")
@click.option("--innocent", type=PATH,
              help="copy recipe, with --fits 2 or more: folder of images NOT in the banned set to calibrate each "
                   "fit on, as for publish (each sub-folder a group).")
@click.option("--target-fpr", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="copy recipe, with --fits 2 or more: the target each fit is calibrated to, as for publish.")
@click.option("--config", "config_path", type=PATH, help="paper recipe: TOML file of training settings.")
@click.option("--epochs", type=click.IntRange(1), help="paper recipe: epochs (paper: 70).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed for alterations, splits, initial weights and batches.")
@click.option("--device", default="auto", show_default=True,
              help="paper recipe: auto (CUDA when present), cpu or cuda (the copy recipe runs on the CPU).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="CPU threads for torch (more is rarely faster for this small network; see docs).")
@click.option("--batch-size", type=click.IntRange(1), help="paper recipe: pairs per batch (paper: 64).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), help="paper recipe: Adam's rate.")
@click.option("--margin", type=click.FloatRange(min=0, min_open=True), help="paper recipe: contrastive margin.")
@click.option("--count", type=click.IntRange(1), help="paper recipe: altered copies per kind per image (100).")
@click.option("--preset", help="paper recipe: model spec preset, paper-cnn or paper-cnn-avg.")
@click.option("--loss-plot", type=PATH, help="paper recipe: loss-curve PNG (default: MODEL with .loss.png).")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as one JSON object on stdout.")
def train(images_dir: Path, out: Path, recipe: str, base_path: Path | None, bits: int | None, views: int | None,
          background: int | None, no_trim: bool, no_upright: bool, fits: int, innocent: Path | None,
          target_fpr: float, config_path: Path | None, epochs: int | None,
          seed: int, device: str,
          threads: int, batch_size: int | None, learning_rate: float | None, margin: float | None, count: int | None,
          preset: str | None, loss_plot: Path | None, quiet: bool, as_json: bool) -> None:
    """Make the hash model for the banned images in IMAGES_DIR (recursive, any format and size).

    The default recipe, copy, starts from vetohash's pretrained copy detector (a mirror-invariant CNN
    pretrained on generated images only) and fits its hash to this list: it alters every banned image 30
    times and keeps the 160 directions that edits move least relative to how much images differ. Flat
    margins (added borders, letterboxing, the band a shift leaves) are cut before hashing, and a query whose
    corners show a rotation is also hashed turned back upright. No training; a few minutes on a CPU. See
    docs/benchmarks.md for how it compares. A fit draws its altered views at random, and one draw catches a
    point or two more than another: --fits 4 --innocent DIR fits four times and keeps the fit that, calibrated
    as publish calibrates it, catches the most of the authority's own altered copies (four times the time).

    The paper recipe (--recipe paper) trains the paper's CNN as a siamese pair: rotation, blur,
    black-square overlay and translation, 100 altered copies of each kind per image; as many negative pairs
    as positive; 25% of each image's copies of each kind held out for validation; Adam, 64 pairs a batch,
    70 epochs. Its options override the --config file.

    \b
      authority train banned/ --out banned.model
      authority train banned/ --out banned.model --fits 4 --innocent unrelated/
      authority train banned/ --out banned.model --recipe paper
      authority train banned/ --out banned.model --recipe paper --epochs 10 --seed 7 --device cpu
      authority train banned/ --out banned.model --recipe paper --config recipe.toml
    """
    if recipe == "copy":
        paper_only = {"--config": config_path, "--epochs": epochs, "--batch-size": batch_size,
                      "--learning-rate": learning_rate, "--margin": margin, "--count": count, "--preset": preset,
                      "--loss-plot": loss_plot}
        given = [name for name, value in paper_only.items() if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} "
                                   "to --recipe paper only")
        if (fits > 1) != (innocent is not None):
            raise click.UsageError("--fits 2 or more needs --innocent to calibrate each fit on, and --innocent "
                                   "applies only to --fits 2 or more")
        _train_copy(images_dir, out, base_path, bits, views, background, no_trim, no_upright, seed, threads, quiet,
                    as_json, fits, innocent, target_fpr)
        return
    if base_path or bits or views or no_trim or no_upright or background is not None or fits > 1 or innocent:
        raise click.UsageError("--base, --bits, --views, --background, --no-trim, --no-upright, --fits and "
                               "--innocent apply to --recipe copy only")
    from dataclasses import replace

    from .config import load_config
    from .plots import loss_curve
    from .sources import load_sources
    from .training import resolve_device
    from .training import train as run_training
    from vetohash.files import write_atomic
    from vetohash.modelfile import write_model

    config = load_config(config_path).replace(epochs=epochs, batch_size=batch_size,
                                              learning_rate=learning_rate, margin=margin, preset=preset)
    if count is not None:
        config = replace(config, alterations=tuple(replace(plan, count=count) for plan in config.alterations))
    target = resolve_device(device)
    _check_writable(out)
    sources = load_sources(images_dir, config.spec().preprocess, config.work_size, warn=_warn, minimum=2)
    say = (lambda _text: None) if quiet else _info
    say(f"{len(sources)} images from {images_dir}; {config.spec().name} on {target}; {config.epochs} epochs; "
        f"alterations: " + ", ".join(f"{plan.name} x{plan.count}" for plan in config.alterations))

    def on_epoch(epoch: Any) -> None:
        if not quiet:
            from tqdm import tqdm

            val = "" if epoch.val_loss is None else f", validation {epoch.val_loss:.4f}"
            tqdm.write(f"epoch {epoch.epoch}/{config.epochs}: training loss {epoch.train_loss:.4f}{val} "
                       f"({epoch.seconds:.1f} s)", file=sys.stderr)

    result = run_training(sources, config, seed=seed, device=str(target), progress=not quiet,
                          on_epoch=on_epoch, on_stage=say, threads=threads)
    write_model(out, result.hasher, result.meta)
    plot = loss_plot or out.with_name(out.name + ".loss.png" if not out.suffix else out.stem + ".loss.png")
    write_atomic(plot, loss_curve([e.train_loss for e in result.history], [e.val_loss for e in result.history]),
                 VetohashError)
    last = result.history[-1]
    summary = {"model": str(out), "loss_plot": str(plot), "images": len(sources), "epochs": config.epochs,
               "seed": seed, "device": target.type, "train_loss": last.train_loss, "val_loss": last.val_loss,
               "seconds": {k: round(v, 1) for k, v in result.seconds.items()}}
    if as_json:
        click.echo(json.dumps(summary))
        return
    val = "" if last.val_loss is None else f", validation loss {last.val_loss:.4f}"
    click.echo(f"wrote {out}: {config.spec().name}, {len(sources)} images, {config.epochs} epochs, "
               f"training loss {last.train_loss:.4f}{val}")
    click.echo(f"loss curve: {plot}")
    click.echo(f"time: {result.seconds['alterations']:.0f} s generating alterations, "
               f"{result.seconds['training']:.0f} s training")


def _train_copy(images_dir: Path, out: Path, base_path: Path | None, bits: int | None, views: int | None,
                background: int | None, no_trim: bool, no_upright: bool, seed: int, threads: int, quiet: bool,
                as_json: bool, fits: int, innocent: Path | None, target_fpr: float) -> None:
    """The copy recipe: fit the pretrained copy detector's hash to the banned list (see listfit.py); with
    `fits` > 1, that many fits, each calibrated on `innocent` as publish would, and the one catching the most of
    the authority's own altered copies kept."""
    import torch
    from dataclasses import replace

    from tqdm import tqdm

    from .calibration import DEFAULT_CONFIDENCE
    from .listfit import ListFitConfig, base_model, fit_to_list, fitted_preprocess
    from .sources import load_sources
    from vetohash.modelfile import write_model

    started = time.time()
    torch.set_num_threads(threads)
    _check_writable(out)
    base = base_model(base_path)
    config = ListFitConfig()
    config = replace(config, bits=bits or config.bits, views=views or config.views,
                     background=config.background if background is None else background, trim=not no_trim,
                     upright=not no_upright)
    sources = load_sources(images_dir, base.spec.preprocess, warn=_warn, minimum=2)
    say = (lambda _text: None) if quiet else _info
    say(f"{len(sources)} images from {images_dir}; fitting {base.spec.name} to them: {config.views} altered "
        f"views each, {config.background} generated background images, {config.bits} bits"
        + (f"; {fits} fits, each calibrated on {innocent}" if fits > 1 else ""))
    total = len(sources) * (config.views + 1) + config.background
    calibrate_on = None
    if innocent is not None:  # read before the first fit, so that a bad folder fails at once
        pre = fitted_preprocess(base, config)
        calibrate_on = load_sources(images_dir, pre, warn=_warn, minimum=2), _innocents(innocent, pre)
    best, caught, chosen_thresholds = None, [], []
    for k in range(fits):
        desc = "hashing" if fits == 1 else f"fit {k + 1} of {fits}"
        with tqdm(total=total, unit="img", desc=desc, disable=quiet, file=sys.stderr) as bar:
            hasher, meta = fit_to_list(base, [s.image for s in sources], config, seed=seed + k, progress=bar.update)
        if fits == 1:
            best = hasher, meta
            break
        assert calibrate_on is not None  # train() requires --innocent with --fits 2 or more
        plan = _thresholds(hasher, calibrate_on[0], {}, True, True, calibrate_on[1], target_fpr, DEFAULT_CONFIDENCE,
                           quiet, False)
        assert plan.caught is not None  # calibrated on the innocent images
        caught.append(plan.caught)
        chosen_thresholds.append(plan.thresholds)
        chosen = ", ".join(f"{name} < {value}" for name, value in plan.thresholds.items())
        say(f"fit {k + 1} of {fits} (seed {seed + k}): calibrated {chosen}; own altered copies caught "
            f"{100 * caught[-1]:.1f}%")
        if best is None or caught[-1] > max(caught[:-1]):
            best = hasher, meta
    assert best is not None
    hasher, meta = best
    if fits > 1:
        meta["selection"] = {"fits": fits, "own_copies_caught": caught, "thresholds": chosen_thresholds,
                             "kept_seed": meta["seed"], "target_fpr": target_fpr}
    meta["seconds"] = round(time.time() - started, 1)
    meta["sources"] = [source.digest for source in sources]  # evaluate reports which images the fit saw
    write_model(out, hasher, meta)
    summary = {"model": str(out), "recipe": "copy", "images": len(sources), "bits": config.bits,
               "views": config.views, "seed": meta["seed"], "seconds": meta["seconds"],
               **({"selection": meta["selection"]} if fits > 1 else {})}
    if as_json:
        click.echo(json.dumps(summary))
        return
    kept = "" if fits == 1 else (f", the fit of seed {meta['seed']} of {fits} (own altered copies caught "
                                 f"{100 * max(caught):.1f}%)")
    click.echo(f"wrote {out}: {hasher.spec.name} fitted to {len(sources)} images, {config.bits} bits{kept}, "
               f"in {meta['seconds']:.0f} s")


def _check_writable(path: Path) -> None:
    """Fail before hours of training, not after, when the output cannot be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise VetohashError(f"{path} is a folder; give a file name for the model")
    if not folder.is_dir():
        raise VetohashError(f"{folder}: no such folder for the output")
    if not os.access(folder, os.W_OK):
        raise VetohashError(f"{folder}: cannot write there")


# --- pretrain --------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("images_dir", type=PATH, required=False)
@click.option("--out", "out", type=PATH, required=True, help="Model file to write (use it with train --base).")
@click.option("--synthetic", type=click.IntRange(0), default=20000, show_default=True,
              help="Generated dead-leaves images added to the sources.")
@click.option("--max-images", type=click.IntRange(1), default=20000, show_default=True,
              help="At most this many images are read from IMAGES_DIR (the first in path order).")
@click.option("--steps", type=click.IntRange(1), default=100000, show_default=True, help="At most this many steps.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True),
              help="Wall-clock budget for the steps; the learning-rate schedule follows it.")
@click.option("--batch", type=click.IntRange(2), default=256, show_default=True, help="Images per step (two views each).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True,
              help="InfoNCE temperature.")
@click.option("--koleo", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="Weight of the KoLeo term that spreads embeddings apart.")
@click.option("--fit-sample", type=click.IntRange(2), default=8192, show_default=True,
              help="Unaltered images the bit balance and decorrelation are fitted on.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda.")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="Processes that generate images and views (use most cores on a GPU machine).")
def pretrain(images_dir: Path | None, out: Path, synthetic: int, max_images: int, steps: int, minutes: float | None,
             batch: int, learning_rate: float, temperature: float, koleo: float, fit_sample: int, seed: int,
             device: str, workers: int) -> None:
    """Pretrain a general copy detector (copy-cnn) by instance discrimination on unlabelled images.

    Each image is its own class: two randomly altered views of it must embed closer to each other than to
    any other image's views. Sources are the images under IMAGES_DIR (optional; any unrelated photographs)
    plus generated dead-leaves images. The result feeds `authority train --base`. The model shipped with
    vetohash was made from generated images only on one H100 GPU in about 7 minutes (docs/benchmarks.md);
    on a 2-core CPU expect hours for a useful model.

    \b
      authority pretrain --out base.vhm --device cuda --workers 14 --minutes 6
      authority pretrain photos/ --out base.vhm --synthetic 5000 --minutes 60
    """
    from .pretraining import PretrainConfig, pretrain_model
    from .sources import load_sources
    from .synthetic import bank
    from .training import resolve_device
    from vetohash.modelfile import write_model
    from vetohash.specs import preset

    started = time.time()
    _check_writable(out)
    spec = preset("copy-cnn")
    sources = []
    if images_dir is not None:
        found = load_sources(images_dir, spec.preprocess, warn=_warn)
        sources += [source.image for source in found[:max_images]]
    _info(f"{len(sources)} images from {images_dir or 'no folder'}; generating {synthetic} dead-leaves images")
    sources += bank(synthetic, seed=seed, workers=max(1, workers))
    if len(sources) < 2:
        raise VetohashError("pretraining needs at least 2 source images")
    target = str(resolve_device(device))
    config = PretrainConfig(steps=steps, batch=batch, lr=learning_rate, temperature=temperature, koleo_weight=koleo,
                            fit_sample=fit_sample)

    def progress(step: int, loss: float) -> None:
        if step % 100 == 0:
            _info(f"step {step}: loss {loss:.4f} ({time.time() - started:.0f} s)")

    hasher, meta = pretrain_model(spec, sources, config, seed=seed, device=target, workers=workers,
                                  minutes=minutes, progress=progress)
    meta.update(seconds=round(time.time() - started), device=target)
    write_model(out, hasher, meta)
    click.echo(f"wrote {out}: {meta['steps']} steps in {meta['seconds']} s, final loss {meta['final_loss']:.4f}")


# --- distil ----------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("images_dir", type=PATH, required=False)
@click.option("--out", "out", type=PATH, required=True, help="Model file to write (use it with train --base).")
@click.option("--teacher", "teacher_path", type=PATH,
              help="copy-cnn model with the mirror pass to distil (default: the one shipped with vetohash).")
@click.option("--synthetic", type=click.IntRange(0), default=5000, show_default=True,
              help="Generated dead-leaves images added to the sources (what the shipped model was trained on).")
@click.option("--max-images", type=click.IntRange(1), default=20000, show_default=True,
              help="At most this many images are read from IMAGES_DIR (the first in path order).")
@click.option("--steps", type=click.IntRange(1), default=2000, show_default=True, help="At most this many steps.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True),
              help="Wall-clock budget for the steps; the learning-rate schedule follows it.")
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True,
              help="Images per step; each gives two altered views, each seen as it is and mirrored.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed for the generated images, the crops and edits drawn, and the batches.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="CPU threads for torch.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as one JSON object on stdout.")
def distil(images_dir: Path | None, out: Path, teacher_path: Path | None, synthetic: int, max_images: int,
           steps: int, minutes: float | None, batch: int, learning_rate: float, seed: int, threads: int,
           quiet: bool, as_json: bool) -> None:
    """Distil the copy detector into a one-pass student: half the network's cost on every image screened.

    The shipped copy detector runs its network twice per image, on the image and on its left-right mirror, so
    that a mirrored copy has exactly the same hash. The student is the same network run once: it starts from
    the teacher's weights and learns to give an image and its mirror the teacher's embedding, on random crops
    of the sources (IMAGES_DIR, optional, plus generated dead-leaves images) altered as pretraining alters
    them. A mirrored copy then gets a hash a few bits away instead of the very same one. Fit the student to a
    list as any base model (`authority train --base`); platforms screening its bundles run half the network.
    docs/benchmarks.md ("A one-pass student") has what it costs in recall and what it saves in time.

    \b
      authority distil --out student.vhm --minutes 30
      authority distil photos/ --out student.vhm --teacher base.vhm --steps 5000 --threads 2
      authority train banned/ --out banned.model --base student.vhm
    """
    import torch
    from tqdm import tqdm

    from .distillation import DistilConfig, student_spec
    from .distillation import distil as run_distil
    from .listfit import base_model
    from .sources import load_sources
    from .synthetic import bank
    from vetohash.modelfile import write_model

    started = time.time()
    torch.set_num_threads(threads)
    _check_writable(out)
    teacher = base_model(teacher_path)
    student_spec(teacher.spec)  # a teacher that cannot be distilled is refused before any work
    sources = []
    if images_dir is not None:
        found = load_sources(images_dir, teacher.spec.preprocess, warn=_warn)
        sources += [source.image for source in found[:max_images]]
    if not quiet:
        _info(f"{len(sources)} images from {images_dir or 'no folder'}; generating {synthetic} dead-leaves images")
    sources += bank(synthetic, seed=seed)
    if not sources:
        raise VetohashError("distillation needs source images: give IMAGES_DIR or --synthetic above 0")
    config = DistilConfig(steps=steps, batch=batch, lr=learning_rate)
    # Under --minutes the run ends at the budget, usually long before --steps: the bar counts steps only.
    with tqdm(total=None if minutes else steps, unit="step", desc="distilling", disable=quiet,
              file=sys.stderr) as bar:
        def progress(_step: int, loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update()

        student, meta = run_distil(teacher, sources, config, seed=seed, minutes=minutes, progress=progress)
    meta["seconds"] = round(time.time() - started)
    write_model(out, student, meta)
    summary = {"model": str(out), "spec": student.spec.name, "teacher": teacher.spec.name, "steps": meta["steps"],
               "sources": len(sources), "seed": seed, "first_loss": meta["first_loss"],
               "final_loss": meta["final_loss"], "seconds": meta["seconds"]}
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"wrote {out}: {student.spec.name}, {meta['steps']} steps in {meta['seconds']} s, loss "
               f"{meta['first_loss']:.4f} at the start, {meta['final_loss']:.4f} at the end")


# --- evaluate ---------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("model", type=PATH)
@click.argument("images_dir", type=PATH)
@click.option("--innocent", type=PATH, help="Folder of images NOT in the banned set, to measure false positives.")
@click.option("--report-dir", type=PATH, help="Where report.json and the plots go (default: MODEL-report/).")
@click.option("--threshold", type=click.IntRange(0), default=20, show_default=True,
              help="Threshold to report recall and false positives at (match if distance < threshold).")
@click.option("--target-fpr", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="False-positive rate the suggested thresholds are chosen for.")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.9,
              show_default=True, help="Confidence of the bound on innocent images flagged, as in publish.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json on stdout instead of the table.")
def evaluate(model: Path, images_dir: Path, innocent: Path | None, report_dir: Path | None, threshold: int,
             target_fpr: float, confidence: float, quiet: bool, as_json: bool) -> None:
    """Measure MODEL on the banned images in IMAGES_DIR, as the paper did, and on innocent images.

    Distances between the banned images, and from each to its held-out altered copies (rebuilt from the
    seed and settings stored in MODEL: training never saw them), as quartiles (paper Fig. 10), overlaid
    histograms (Fig. 11), an ROC curve and recall per alteration kind. With --innocent, the distance of each
    innocent image to its nearest banned hash, the share flagged, the network's threshold alone for
    --target-fpr, and every threshold chosen together as `publish` chooses them. With two or more innocent
    groups (sub-folders of --innocent), the check that matters: thresholds calibrated on half of the groups,
    and the share they flag on the other half, which they never saw (and the same the other way round).

    \b
      authority evaluate banned.model banned/
      authority evaluate banned.model banned/ --innocent unrelated/ --report-dir report
    """
    from vetohash.modelfile import read_model

    from .evaluation import evaluate as run_evaluation
    from .evaluation import training_settings
    from .sources import load_sources

    hasher, meta = read_model(model)
    config, _seed = training_settings(meta)
    pre = hasher.spec.preprocess
    sources = load_sources(images_dir, pre, config.work_size, warn=_warn, minimum=2)
    trained_on = set(meta.get("sources", []))
    missing = sum(source.digest not in trained_on for source in sources)
    if missing == len(sources):
        _warn(f"none of the images in {images_dir} were used to train {model}; their altered copies are "
              "drawn the same way, but the report says nothing about the training set")
    elif missing:
        _warn(f"{missing} of {len(sources)} images in {images_dir} were not used to train {model}")
    innocent_sources: list[Source] = []
    innocent_groups = None
    if innocent is not None:
        innocent_sources = load_sources(innocent, pre, config.work_size, warn=_warn)
        banned_digests = {source.digest for source in sources}
        overlap = [s for s in innocent_sources if s.digest in banned_digests]
        if overlap:
            _warn(f"{len(overlap)} innocent image(s) are byte-identical to banned ones and are left out, "
                  f"e.g. {overlap[0].path}")
            innocent_sources = [s for s in innocent_sources if s.digest not in banned_digests]
        from .calibration import groups_of

        innocent_groups, _grouped = groups_of([s.path for s in innocent_sources], innocent)
    folder = report_dir or model.with_name(model.stem + "-report")
    report = run_evaluation(hasher, meta, sources, innocent_sources, threshold=threshold, target_fpr=target_fpr,
                            report_dir=folder, progress=not quiet, innocent_groups=innocent_groups,
                            confidence=confidence)
    if as_json:
        click.echo(json.dumps(report.data, indent=2))
        return
    click.echo(report.text())
    click.echo("")
    click.echo(f"report: {report.files['json']}, {report.files['histograms']}, {report.files['roc']}")


# --- publish ----------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("model", type=PATH)
@click.argument("images_dir", type=PATH)
@click.option("--key", "key_path", type=PATH, required=True, help="The authority's private key (authority.key).")
@click.option("--out", "out", type=PATH, required=True, help="Bundle file to write.")
@click.option("--threshold", type=click.IntRange(0),
              help="Match threshold of the network's hash (match if distance < threshold). Default: calibrated "
                   "with --innocent, else the paper's 20.")
@click.option("--dct-threshold", type=click.IntRange(0, 256),
              help="Match threshold of the DCT hash. Default: calibrated with --innocent, else 32.")
@click.option("--no-dct", is_flag=True,
              help="Leave the DCT hash out (with --no-crops too: a format version 1 bundle, which platforms of "
                   "every version read).")
@click.option("--crops-threshold", type=click.IntRange(0),
              help="Match threshold of the crop hashes. Default: calibrated with --innocent, else no crop hashes.")
@click.option("--no-crops", is_flag=True,
              help="Leave the crop hashes out (without them, the bundle is format version 2, or 1 with --no-dct).")
@click.option("--privacy", type=click.Choice(list(LEVELS)), default=DEFAULT_PRIVACY, show_default=True,
              help="What the bundle may give away (docs/threat-model.md): max-recall carries the network, crop "
                   "and DCT hashes (the DCT hashes identify the banned images); balanced leaves out the DCT "
                   "hashes (as --no-dct); strict carries the network's whole-image hash alone (as --no-dct "
                   "--no-crops), from which no banned image was identified better than chance.")
@click.option("--innocent", type=PATH,
              help="Folder of images NOT in the banned set to calibrate the thresholds on; each sub-folder is a "
                   "group of related images (one photo's crops, one scene's shots).")
@click.option("--forgery-guard", is_flag=True,
              help="Calibrate with agreement thresholds (format version 6): a match needs two hashes near, or "
                   "one very near, so that images forged by small perturbations rarely match; costs recall on "
                   "cropped, rotated and shifted copies and makes evasion easier (docs/threat-model.md "
                   "measures both). Needs --innocent, two signals or more and a single-file bundle.")
@click.option("--target-fpr", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Share of innocent images the calibrated thresholds may flag, by any hash (held to the "
                   "upper bound, not the measured share).")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.9,
              show_default=True, help="Confidence of the upper bound on the share flagged in a new group of "
                                      "innocent images.")
@click.option("--list-name", default="default", show_default=True, help="Name of the list this bundle replaces.")
@click.option("--sequence", type=click.IntRange(0),
              help="Sequence number (default: max(now, last published for the list + 1)).")
@click.option("--expires-in", default="30d", show_default=True, help="Validity, e.g. 30d, 12h, 2w.")
@click.option("--authority", "authority_name", help=f"Authority name shown to platforms (default: "
                                                    f"${AUTHORITY_ENV}, else 'authority').")
@click.option("--passphrase", "ask", is_flag=True,
              help=f"Prompt for the key's passphrase (default: ${PASSPHRASE_ENV}, or a prompt on a terminal).")
@click.option("--skip-featureless", is_flag=True,
              help="Leave out featureless banned images (flat, near-blank), naming each, instead of refusing.")
@click.option("--chunked", is_flag=True,
              help="Write a version 4 bundle: --out is then a new folder holding a signed manifest and "
                   "content-addressed chunks, which platforms read a chunk at a time (for lists of millions).")
@click.option("--delta-from", type=PATH,
              help="Write a version 4 delta against this earlier version 4 bundle (folder) of the same list and "
                   "model: only the images added since and the ids removed. Implies --chunked.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def publish(model: Path, images_dir: Path, key_path: Path, out: Path, threshold: int | None,
            dct_threshold: int | None, no_dct: bool, crops_threshold: int | None, no_crops: bool, privacy: str,
            innocent: Path | None, forgery_guard: bool, target_fpr: float, confidence: float, list_name: str,
            sequence: int | None, expires_in: str, authority_name: str | None, ask: bool, skip_featureless: bool,
            chunked: bool, delta_from: Path | None, quiet: bool, as_json: bool) -> None:
    """Hash the banned images in IMAGES_DIR with MODEL and write a signed bundle for platforms.

    Hash ids are random ("h" + hex): file names never leave the authority. Each image gets the network's
    hash and a classical DCT hash (dct256-v1), and, when calibrated, the network's hashes of 21 crop views of it
    (17 crops and 4 turns with the corners cut off, which catch uploads cropped, shifted or turned further than
    a whole-image hash reaches). Platforms flag an
    upload when any of them is near (below its threshold). With --forgery-guard, one must be very near, or
    two near (below their agreement thresholds), so that a forged image must fool two hashes at once or one
    by a margin small perturbations do not reach (format version 6), at a cost in recall. --no-dct and --no-crops leave those out, and so do
    the privacy levels: --privacy balanced carries no DCT hashes (they sketch each banned image's layout well
    enough to identify it), --privacy strict the network's whole-image hash alone (docs/threat-model.md
    measures what each level gives away and costs).

    --chunked writes format version 4, a folder (docs/bundle-format.md, section 16); --delta-from OLD
    writes a version 4 delta on OLD: images whose network and DCT hashes are both in OLD are not resent,
    OLD's images no longer in IMAGES_DIR are removed. A platform applies it only on top of OLD's sequence.

    With --innocent, the thresholds not given by hand are chosen together: those that catch the most of the
    authority's own altered copies of the banned images (every alteration kind, drawn apart from any
    training) while an upper bound, at --confidence, on the share flagged by any hash in a new group of
    innocent images stays within --target-fpr. Related innocent images are flagged together and platforms
    screen groups the authority never saw, so the bound is a prediction from the spread of the groups'
    shares (Student's t, wider when groups are few), counting one more flagged image than seen: N images
    flagging none still give 1/(N+1). Each sub-folder of --innocent is one group; without sub-folders every
    image is its own group, which trusts unrelated images to be unrelated; one sub-folder alone gives no
    bound. The bundle records the target, the measured share, the bound, the confidence and the numbers of
    images and groups (format version 5, or the manifest of a version 4 folder). Without --innocent, the
    defaults are 20 (network) and 32 (DCT), not calibrated, and crop hashes are published only with
    --crops-threshold.

    Featureless banned images (flat colour, faint gradients, near-blank pages) are refused: their hashes
    would match every blank upload. Remove them, or give --skip-featureless to leave them out.

    \b
      authority publish banned.model banned/ --key keys/authority.key --out banned.vhb
      authority publish banned.model banned/ --key keys/authority.key --out banned.vhb \\
          --innocent unrelated/ --target-fpr 0.01 --list-name csam --expires-in 7d
    """
    from vetohash.bundle import MAX_SEQUENCE_STEP, MAX_VALIDITY_S
    from vetohash.files import make_folder, write_atomic
    from vetohash.modelfile import read_model
    from vetohash.signals import CROPS, DCT, NETWORK

    from .publishing import STATE_NAME, PublishError, build_bundle, next_sequence, parse_duration, record_sequence
    from .sources import load_sources

    level = LEVELS[privacy]
    if not level.dct and dct_threshold is not None:
        raise VetohashError(f"--dct-threshold and --privacy {privacy} contradict each other: that level carries "
                            "no DCT hashes")
    if not level.crops and crops_threshold is not None:
        raise VetohashError(f"--crops-threshold and --privacy {privacy} contradict each other: that level "
                            "carries no crop hashes")
    no_dct, no_crops = no_dct or not level.dct, no_crops or not level.crops
    if forgery_guard and (innocent is None or chunked or delta_from is not None):
        raise VetohashError("--forgery-guard needs --innocent to calibrate on and a single-file bundle (a version 4 "
                            "folder, --chunked or --delta-from, carries no agreement thresholds)")
    if forgery_guard and no_dct and no_crops:
        raise VetohashError("--forgery-guard needs two signals to agree, and this bundle carries the network's hash "
                            "alone (--privacy strict, or --no-dct with --no-crops)")
    for flag, value, off in (("dct", dct_threshold, no_dct), ("crops", crops_threshold, no_crops)):
        if off and value is not None:
            raise VetohashError(f"--{flag}-threshold and --no-{flag} contradict each other: give one of them")
    seconds = parse_duration(expires_in)
    if seconds > MAX_VALIDITY_S:
        raise VetohashError(f"--expires-in {expires_in} is more than the {MAX_VALIDITY_S // 86_400} days of validity "
                            "a platform accepts")
    key = _read_key(key_path, ask)
    hasher, _meta = read_model(model)
    given = {name: value for name, value in ((NETWORK, threshold), (CROPS, crops_threshold), (DCT, dct_threshold))
             if value is not None}
    for name in (NETWORK, CROPS):
        if given.get(name, 0) > hasher.spec.bits:
            label = "threshold" if name == NETWORK else "crops threshold"
            raise VetohashError(f"{label} {given[name]} is more than the hash's {hasher.spec.bits} bits")
    sources = _without_featureless(load_sources(images_dir, hasher.spec.preprocess, warn=_warn), images_dir,
                                   skip_featureless)
    found = None if innocent is None else _innocents(innocent, hasher.spec.preprocess)
    plan = _thresholds(hasher, sources, given, not no_dct, not no_crops, found, target_fpr, confidence, quiet,
                       agreement=forgery_guard)
    now = int(time.time())
    state = key_path.parent / STATE_NAME
    if sequence is None:
        try:
            sequence = next_sequence(state, list_name, now)
        except PublishError as error:
            raise PublishError(f"{error}, or give --sequence") from None
    elif sequence > now + MAX_SEQUENCE_STEP:
        raise VetohashError(f"--sequence {sequence} runs more than {MAX_SEQUENCE_STEP} ahead of the current Unix time; "
                            "platforms refuse it (it could freeze the list for good)")
    authority = authority_name or os.environ.get(AUTHORITY_ENV) or "authority"
    bundle, data = build_bundle(hasher, sources, key, thresholds=plan.thresholds, authority=authority,
                                list_name=list_name, sequence=sequence, expires_in=seconds,
                                calibration=plan.calibration, crops=plan.crops, agree=plan.agree, now=now)
    written = None
    if chunked or delta_from is not None:
        written = _write_chunked(bundle, key, out, delta_from)
        size = sum(path.stat().st_size for path in out.iterdir())
    else:
        make_folder(out.parent, PublishError)
        write_atomic(out, data, PublishError)
        size = len(data)
    try:
        record_sequence(state, list_name, sequence)
    except PublishError as error:
        _warn(f"could not remember the sequence number ({error}); give --sequence next time")
    _print_published(out, size, bundle, written, privacy, as_json)


def _innocents(innocent: Path, preprocess: Preprocess) -> Innocent:
    """The innocent images in `innocent` (featureless ones left out: platforms never match them), each
    sub-folder a group (publishing.Innocent)."""
    from .calibration import groups_of
    from .publishing import Innocent, split_featureless
    from .sources import load_sources

    kept, blank = split_featureless(load_sources(innocent, preprocess, warn=_warn))
    if blank:
        _warn(f"{len(blank)} featureless innocent image(s) left out of the calibration, e.g. {blank[0].path}")
    groups, grouped = groups_of([s.path for s in kept], innocent)
    if not grouped:
        _warn(f"{innocent} has no sub-folders, so each innocent image counts as its own group; put related "
              "images (crops of one photo, shots of one scene) in a sub-folder each, or the bound is optimistic")
    return Innocent(kept, groups)


def _thresholds(hasher: Any, sources: list[Source], given: dict[str, int], dct: bool, crops: bool,
                innocent: Innocent | None, target_fpr: float, confidence: float, quiet: bool,
                agreement: bool) -> Thresholds:
    """publishing.thresholds_for on the innocent images (`_innocents`, or None), with a progress bar over the
    banned images' altered copies."""
    from tqdm import tqdm

    from .publishing import thresholds_for

    with tqdm(total=len(sources), unit="img", desc="calibrating", disable=quiet or innocent is None,
              file=sys.stderr, leave=False) as bar:
        return thresholds_for(hasher, sources, given, dct=dct, crops=crops, innocent=innocent, target_fpr=target_fpr,
                              confidence=confidence, agreement=agreement, warn=_warn, progress=bar.update)


def _print_published(out: Path, size: int, bundle: Any, written: Chunked | None, privacy: str,
                     as_json: bool) -> None:
    """What `publish` wrote: the bundle's signals and thresholds, privacy level, calibration, list, sequence
    and validity; for a version 4 folder (`written`) that is a delta, its base and the images added and
    removed."""
    from vetohash import signals
    from vetohash.bundle import CHUNKED_VERSION
    from vetohash.chunked import IMAGES, REMOVED

    base = added = removed = None
    if written is not None and written.manifest.base is not None:
        base, added, removed = written.manifest.base, written.manifest.count(IMAGES), written.manifest.count(REMOVED)
    counts = {s.name: len(s.hashes) for s in bundle.signals}
    calibration = bundle.calibration
    if as_json:
        fields = {}
        for name in signals.ORDER:
            fields[signals.key(name, "hashes")] = counts.get(name, 0)
            fields[signals.key(name, "threshold")] = bundle.thresholds.get(name)
            fields[signals.key(name, "agree")] = bundle.agreement.get(name)
        click.echo(json.dumps({"bundle": str(out), "bytes": size, **fields, "decision": bundle.decision,
                               "format_version": bundle.version if written is None else CHUNKED_VERSION,
                               "privacy": privacy, "base": base, "added": added, "removed": removed,
                               "list_name": bundle.list_name,
                               "sequence": bundle.sequence, "authority": bundle.authority, "key_id": bundle.key_id,
                               "created": _iso(bundle.created), "expires": _iso(bundle.expires),
                               "calibration": None if calibration is None else calibration.to_dict()}))
        return
    crops_note = f" and {counts[signals.CROPS]} crop hashes" if signals.CROPS in counts else ""
    delta_note = "" if base is None else f" (a delta on sequence {base}: {added} added, {removed} removed)"
    click.echo(f"wrote {out} ({size} bytes): {len(bundle.ids)} hashes{crops_note} of list "
               f"{bundle.list_name!r}, sequence {bundle.sequence}{delta_note}")
    rule = " or ".join(f"{name} distance < {threshold}" for name, threshold in bundle.thresholds.items())
    if bundle.agree is not None:
        rule += ", or two of " + ", ".join(f"{name} distance < {t}" for name, t in bundle.agreement.items())
    calibrated = "" if calibration is None else (
        f" (calibrated on {calibration.innocent_images} innocent images in {calibration.innocent_groups} groups: "
        f"{100 * calibration.measured_fpr:.2f}% flagged, at most {100 * calibration.bound_fpr:.2f}% in a new group "
        f"at {calibration.confidence:.0%} confidence, target {100 * calibration.target_fpr:.2f}%)")
    click.echo(f"match if {rule}{calibrated}")
    click.echo(f"signed by {bundle.authority!r}, key id {bundle.key_id}; valid {_iso(bundle.created)} to "
               f"{_iso(bundle.expires)}")


def _write_chunked(bundle: Bundle, key: Ed25519PrivateKey, out: Path, delta_from: Path | None) -> Chunked:
    """Write the version 4 folder; a delta's base is this authority's own earlier bundle, read with its key
    (expired or not: it only names what platforms hold)."""
    from vetohash.chunked import open_chunked
    from vetohash.keys import public_key_of

    from .publishing import write_chunked_bundle

    own = public_key_of(key)
    base = None if delta_from is None else open_chunked(delta_from, {own.key_id: own}, check_time=False)
    return write_chunked_bundle(bundle, key, out, base)


def _without_featureless(sources: list[Source], folder: Path, skip: bool) -> list[Source]:
    """The sources, featureless ones left out (each named) with --skip-featureless, else refused (listed)."""
    from vetohash.detail import MIN_DETAIL

    from .publishing import split_featureless

    kept, flat = split_featureless(sources)
    if not flat:
        return sources
    if skip:
        for source in flat:
            _warn(f"skipped {source.path}: featureless (detail {source.detail:.1f} < {MIN_DETAIL:g})")
        return kept
    for source in flat[:FEATURELESS_LISTED]:
        _info(f"featureless: {source.path} (detail {source.detail:.1f} < {MIN_DETAIL:g})")
    if len(flat) > FEATURELESS_LISTED:
        _info(f"featureless: ... and {len(flat) - FEATURELESS_LISTED} more")
    raise VetohashError(f"{len(flat)} of the {len(sources)} banned images in {folder} are featureless (flat "
                        f"colour or near-blank), and their hashes would match every blank upload: remove them, "
                        f"or pass --skip-featureless to leave them out")


def _read_key(path: Path, ask: bool) -> Ed25519PrivateKey:
    """The private key; if it is encrypted, with a passphrase from the environment, or a prompt when asked or
    on a terminal.

    $VETOHASH_PASSPHRASE is ignored for a key that is not encrypted: it may be set for the whole session, or
    for another key. --passphrase is not: asking to type a passphrase for a plain key is refused, as the
    library refuses one, because the user believed the key was encrypted (or gave the wrong file).
    """
    from vetohash.keys import is_encrypted, read_private_key

    if not is_encrypted(path):  # also the error for a missing or unreadable file
        key = read_private_key(path)  # and for a malformed one
        if ask:
            raise KeyFileError(f"{path} is not encrypted, but --passphrase was given; leave it out, or use a key "
                               f"made with a passphrase")
        return key
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    if passphrase is None and (ask or sys.stdin.isatty()):
        passphrase = click.prompt(f"passphrase for {path}", hide_input=True, err=True)
    try:
        return read_private_key(path, passphrase.encode() if passphrase else None)
    except KeyFileError as error:
        if passphrase is None:
            raise KeyFileError(f"{error}: set ${PASSPHRASE_ENV} or pass --passphrase") from None
        raise


def main() -> None:
    """Console entry point."""
    run(cli, "authority")
