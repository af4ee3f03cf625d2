"""Every `platform` command teaches itself (`--help` with an example) and is shown in docs/platform.md."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from vetohash_platform.cli import cli

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
