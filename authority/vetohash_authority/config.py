"""Training settings: defaults are the paper's recipe; a TOML file or command-line options change them.

Example file (every key optional; an `[alterations]` table, when given, replaces the paper's four):

    preset = "paper-cnn"      # model spec preset
    epochs = 70
    batch_size = 64           # pairs per batch
    learning_rate = 0.001     # Adam
    margin = 1.0              # contrastive loss margin
    dropout = 0.25            # overrides the preset's dropout rate
    validation_share = 0.25   # altered copies (per image, per kind) held out for validation
    negatives_per_positive = 1.0
    work_size = 256           # images larger than this (shorter side) are shrunk before altering

    [alterations.rotation]
    count = 100
    degrees = [-90, 90]

    [alterations.blur]
    count = 100
    size = [1, 10]
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vetohash.errors import SpecError, VetohashError
from vetohash.files import read_bounded
from vetohash.specs import ModelSpec, preset

from .alterations import KINDS, PAPER_KINDS, AlterationError, Kind, make_kind

MAX_CONFIG_BYTES = 1 << 20  # a recipe is a few dozen lines of TOML


class ConfigError(VetohashError):
    """A training config file or option is malformed or out of range."""


@dataclass(frozen=True)
class AlterationPlan:
    """How many copies of each source image one kind of alteration makes."""

    kind: Kind
    count: int

    @property
    def name(self) -> str:
        return self.kind.name


def paper_alterations(count: int = 100) -> tuple[AlterationPlan, ...]:
    """The paper's Table 1: rotation, blur, overlay, translation, `count` copies each."""
    return tuple(AlterationPlan(make_kind(name), count) for name in PAPER_KINDS)


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides a training run apart from the images and the seed."""

    preset: str = "paper-cnn"
    epochs: int = 70
    batch_size: int = 64
    learning_rate: float = 0.001
    margin: float = 1.0
    dropout: float | None = None
    validation_share: float = 0.25
    negatives_per_positive: float = 1.0
    work_size: int = 256
    alterations: tuple[AlterationPlan, ...] = dataclasses.field(default_factory=paper_alterations)

    def __post_init__(self) -> None:
        _int("epochs", self.epochs, 1, 100_000)
        _int("batch_size", self.batch_size, 1, 65_536)
        _int("work_size", self.work_size, 8, 4096)
        _number("learning_rate", self.learning_rate, 1e-8, 10.0)
        _number("margin", self.margin, 1e-6, 1e6)
        _number("validation_share", self.validation_share, 0.0, 0.9)
        _number("negatives_per_positive", self.negatives_per_positive, 0.0, 100.0)
        if self.dropout is not None:
            _number("dropout", self.dropout, 0.0, 0.9)
        if not self.alterations:
            raise ConfigError("at least one alteration kind is needed")
        # One order whatever the source: the tensor layout, and so the training run, follows it.
        object.__setattr__(self, "alterations", tuple(sorted(self.alterations, key=lambda plan: plan.name)))
        names = [plan.name for plan in self.alterations]
        if len(set(names)) != len(names):
            raise ConfigError(f"alteration kinds repeat: {names}")
        for plan in self.alterations:
            _int(f"alterations.{plan.name}.count", plan.count, 1, 100_000)
        self.spec()  # an unknown preset or a dropout the architecture refuses fails here

    def spec(self) -> ModelSpec:
        """The model spec this config trains: the preset, with its dropout replaced when one is set."""
        try:
            base = preset(self.preset)
        except SpecError as error:
            raise ConfigError(str(error)) from None
        if self.dropout is None:
            return base
        if "dropout" not in base.arch:
            raise ConfigError(f"preset {self.preset!r} has no dropout to set")
        try:
            return ModelSpec.from_dict({**base.to_dict(), "arch": {**base.arch, "dropout": float(self.dropout)}})
        except SpecError as error:
            raise ConfigError(str(error)) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain form (for model-file metadata); `from_dict` rebuilds an equal config."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "alterations"}
        out["alterations"] = {plan.name: {"count": plan.count, **plan.kind.settings()}
                              for plan in self.alterations}
        return out

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with some settings changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def from_dict(data: Mapping[str, Any], where: str = "config") -> TrainingConfig:
    """Build a config from a plain mapping (a parsed TOML file or model metadata); ConfigError on any flaw."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table")
    known = {f.name for f in dataclasses.fields(TrainingConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {key: value for key, value in data.items() if key != "alterations"}
    if "alterations" in data:
        values["alterations"] = _plans(data["alterations"], where)
    try:
        return TrainingConfig(**values)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


def _plans(table: Any, where: str) -> tuple[AlterationPlan, ...]:
    if not isinstance(table, Mapping) or not table:
        raise ConfigError(f"{where}: [alterations] must be a table of kinds, e.g. [alterations.rotation]; "
                          f"known kinds: {', '.join(sorted(KINDS))}")
    plans = []
    for name in sorted(table):  # sorted: the order of tables in a file never changes what is trained
        settings = table[name]
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{where}: alterations.{name} must be a table")
        settings = dict(settings)
        count = settings.pop("count", 100)
        try:
            kind = make_kind(name, settings)
        except AlterationError as error:
            raise ConfigError(f"{where}: {error}") from None
        plans.append(AlterationPlan(kind, count))
    return tuple(plans)


def load_config(path: Path | None) -> TrainingConfig:
    """The paper's recipe, or the settings in a TOML file on top of it."""
    if path is None:
        return TrainingConfig()
    try:
        data = tomllib.loads(read_bounded(path, MAX_CONFIG_BYTES, "config file", ConfigError).decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    return from_dict(data, str(path))


def _int(name: str, value: Any, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _number(name: str, value: Any, low: float, high: float) -> None:
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
