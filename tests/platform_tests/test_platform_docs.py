"""Every `platform` command teaches itself (`--help` with an example) and is shown in docs/platform.md, and
every JSON example the docs print has exactly the keys the command emits."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest

from vetohash.bundle import CropSignal, DctSignal
from vetohash_platform.cli import cli

from ..docs_examples import json_examples, key_differences
from .helpers import dct_of, records

DOCS = Path(__file__).resolve().parents[2] / "docs" / "platform.md"


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_help_has_an_example_and_the_docs_show_the_command(platform, path):
    result = platform(*path, "--help")
    assert result.code == 0
    assert "Example" in result.stdout, f"`platform {' '.join(path)} --help` shows no example"
    assert f"$ platform {' '.join(path)}" in DOCS.read_text(), f"docs/platform.md never runs platform {' '.join(path)}"


def json_commands(group: click.Group = cli) -> list[tuple[str, ...]]:
    """Every command path that takes --json."""
    return [path for path in commands(group) if any(
        "--json" in getattr(param, "opts", ()) for param in _command(path).params)]


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


@pytest.fixture
def emitted(platform, pubkey_file, make_bundle, banned_hashes, images, tmp_path) -> dict[tuple[str, ...], dict]:
    """The first JSON object each --json command prints, in a database holding a bundle with every signal
    (DCT and crop hashes) after a match was screened and logged."""
    bundle = tmp_path / "full.vhb"
    dct = dct_of(*(images[f"banned-{i}"] for i in range(4)))
    bundle.write_bytes(make_bundle(dct=DctSignal(hashes=dct, threshold=24),
                                   crops=CropSignal(banned_hashes, np.arange(4, dtype=np.int64), 8)))
    assert platform("trust", "add", pubkey_file, "--name", "acme").code == 0
    out = {("ingest",): platform("ingest", "--json", bundle).stdout,
           ("screen",): platform("screen", "--json", images["banned-0"]).stdout,
           ("hash",): platform("hash", "--json", images["banned-0"]).stdout,
           ("log",): platform("log", "--json").stdout,
           ("bundles",): platform("bundles", "--json").stdout,
           ("trust", "list"): platform("trust", "list", "--json").stdout}
    return {path: records(text)[0] for path, text in out.items()}


def test_the_scenario_covers_every_json_command(emitted):
    assert sorted(emitted) == sorted(json_commands())


EXAMPLES = [example for example in json_examples() if example.command[0] == "platform"]


def test_the_docs_print_a_json_example_of_every_json_command():
    shown = {tuple(word for word in example.command[1:] if not word.startswith("-") and "/" not in word
                   and "." not in word and not word.isdigit()) for example in EXAMPLES}
    assert set(json_commands()) <= shown, f"no JSON example in the docs for {set(json_commands()) - shown}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.where)
def test_every_json_example_has_the_keys_the_command_emits(emitted, example):
    path = next(path for path in emitted if example.command[1:len(path) + 1] == path)
    problems = key_differences(example.parsed(), emitted[path])
    assert not problems, (f"{example.where}: the example of `{' '.join(example.command)}` no longer matches "
                          f"the command's output ({'; '.join(problems)}); rerun the command and paste what it "
                          f"prints, e.g. {json.dumps(emitted[path])[:200]}...")
