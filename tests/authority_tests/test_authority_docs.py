"""Every JSON example docs/authority.md prints has exactly the keys the `authority` command emits (the
command lines themselves are checked in tests/test_docs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vetohash.hasher import Hasher
from vetohash.modelfile import write_model
from vetohash_authority.cli import cli

from ..docs_examples import json_examples, key_differences
from .fixtures import TINY_CONFIG, TINY_COPY_SPEC, one_thread, write_pictures  # noqa: F401  (autouse)

# evaluate --json prints report.json, many lines long; docs/authority.md describes it rather than printing it.
UNDOCUMENTED = {("evaluate",)}


def example_kind(words: tuple[str, ...]) -> tuple[str, ...]:
    """The output a command line gives: a command's name, and for `train` its recipe (their keys differ)."""
    recipe = words[words.index("--recipe") + 1] if "--recipe" in words else "copy"
    return (words[0], recipe) if words[0] == "train" else (words[0],)


def run(*args: object) -> dict:
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], dict]:
    """What each --json command prints, run for real on a few small images."""
    root = tmp_path_factory.mktemp("authority-docs")
    write_pictures(root / "banned", range(4))
    write_pictures(root / "innocent", range(100, 104))
    (root / "tiny.toml").write_text(TINY_CONFIG)
    torch.manual_seed(0)
    write_model(root / "base.vhm", Hasher(TINY_COPY_SPEC, TINY_COPY_SPEC.build()), {"kind": "pretrained"})
    out = {("keygen",): run("keygen", "--out-dir", root / "keys", "--json"),
           ("train", "copy"): run("train", root / "banned", "--out", root / "copy.model", "--base", root / "base.vhm",
                                  "--views", "2", "--background", "4", "--bits", "16", "--quiet", "--json"),
           ("train", "paper"): run("train", root / "banned", "--recipe", "paper", "--out", root / "paper.model",
                                   "--config", root / "tiny.toml", "--epochs", "1", "--device", "cpu", "--quiet",
                                   "--json")}
    out[("distil",)] = run("distil", "--teacher", root / "base.vhm", "--out", root / "student.vhm", "--synthetic", "2",
                           "--steps", "1", "--batch", "2", "--quiet", "--json")
    out[("publish",)] = run("publish", root / "paper.model", root / "banned", "--key", root / "keys" / "authority.key",
                            "--out", root / "b.vhb", "--innocent", root / "innocent", "--target-fpr", "0.5", "--json")
    return out


EXAMPLES = [example for example in json_examples() if example.command[0] == "authority"]


def test_the_docs_print_a_json_example_of_every_json_command_but_evaluate():
    takes_json = {(name,) for name, command in cli.commands.items()
                  if any("--json" in getattr(param, "opts", ()) for param in command.params)}
    shown = {example_kind(example.command[1:]) for example in EXAMPLES}
    assert takes_json - UNDOCUMENTED == {kind[:1] for kind in shown}
    assert {("train", "copy"), ("train", "paper")} <= shown


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.where)
def test_every_json_example_has_the_keys_the_command_emits(emitted, example):
    kind = example_kind(example.command[1:])
    problems = key_differences(example.parsed(), emitted[kind])
    assert not problems, (f"{example.where}: the example of `{' '.join(example.command)}` no longer matches "
                          f"the command's output ({'; '.join(problems)}); rerun the command and paste what it "
                          f"prints, e.g. {json.dumps(emitted[kind])[:200]}...")
