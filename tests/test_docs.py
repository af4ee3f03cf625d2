"""The documentation cannot drift from the commands: the command reference is what the code prints, every
command line the README and docs/ show names real subcommands and options, and every JSON example parses.
(The JSON examples' keys are held against real output in authority_tests/test_cli.py and
platform_tests/test_platform_docs.py.)"""

from __future__ import annotations

import importlib.util
import re

import click
import pytest

from vetohash_authority.cli import cli as authority
from vetohash_platform.cli import cli as platform

from .docs_examples import REGENERATE, ROOT, command_path, json_examples, shown_commands

PROGRAMS = {"authority": authority, "platform": platform}


def _reference_module():
    spec = importlib.util.spec_from_file_location("make_reference", ROOT / "docs" / "make_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_reference_is_what_the_commands_print() -> None:
    assert (ROOT / "docs" / "commands.md").read_text() == _reference_module().reference(), (
        f"docs/commands.md is out of date with the commands' --help: {REGENERATE}")


def test_the_reference_has_every_command_with_its_help() -> None:
    paths = [path for path, _ in _reference_module().commands()]
    text = (ROOT / "docs" / "commands.md").read_text()
    assert ("authority", "publish") in paths and ("platform", "trust", "add") in paths
    for path in paths:
        assert f"\n## {' '.join(path)}\n\n```text\nUsage: {' '.join(path)} " in text


SHOWN = shown_commands()


def test_the_docs_show_commands_of_both_programs() -> None:
    """The reader below finds what it should: if it found nothing, the test after it would pass vacuously."""
    programs = {shown.program for shown in SHOWN}
    assert programs == {"authority", "platform"} and len(SHOWN) > 50


@pytest.mark.parametrize("shown", SHOWN, ids=lambda shown: shown.where)
def test_every_command_line_the_docs_show_exists(shown) -> None:
    try:
        command_path(PROGRAMS[shown.program], shown.words)
    except click.UsageError as error:
        pytest.fail(f"{shown.where}: `{shown.program} {' '.join(shown.words)}`: {error.message}")


def test_an_unknown_option_or_subcommand_is_caught() -> None:
    """The checker itself: a renamed option or command would be reported, not skipped."""
    with pytest.raises(click.UsageError, match="no option --no-such"):
        command_path(platform, ("screen", "--no-such", "x.jpg"))
    with pytest.raises(click.UsageError, match="no command 'scan'"):
        command_path(platform, ("--db", "x.db", "scan", "x.jpg"))
    chain, rest = command_path(platform, ("--db", "x.db", "trust", "add", "k.pub", "--name", "acme"))
    assert chain[1:] == [platform.commands["trust"], platform.commands["trust"].commands["add"]] and rest == ["k.pub", "--name", "acme"]


def test_an_option_shown_after_its_subcommand_alone_is_checked_too(tmp_path) -> None:
    """Prose often names `publish --option` without the program: the program is the one that has the
    subcommand, and a removed option is reported like any other."""
    page = tmp_path / "page.md"
    page.write_text("Use `publish --any-signal` or `screen --json`; `make --jobs 2` is neither program's.\n")
    shown = shown_commands((page,))
    assert [(s.program, s.words) for s in shown] == [("authority", ("publish", "--any-signal")),
                                                     ("platform", ("screen", "--json"))]
    with pytest.raises(click.UsageError, match="no option --any-signal"):
        command_path(authority, shown[0].words)
    command_path(platform, shown[1].words)


@pytest.mark.parametrize("example", json_examples(), ids=lambda example: example.where)
def test_every_json_example_parses_as_one_object(example) -> None:
    assert isinstance(example.parsed(), dict), f"{example.where}: not a JSON object"


PACKAGES = ("shared/vetohash", "authority/vetohash_authority", "platform/vetohash_platform")
MODULES = [path for package in PACKAGES for path in sorted((ROOT / package).glob("*.py")) if path.stem != "__init__"]


@pytest.mark.parametrize("module", MODULES, ids=lambda path: f"{path.parent.name}.{path.stem}")
def test_the_architecture_names_every_module(module) -> None:
    """docs/architecture.md's module map is where a newcomer looks first; a new module must appear in it."""
    assert f"`{module.stem}`" in (ROOT / "docs" / "architecture.md").read_text(), (
        f"{module.relative_to(ROOT)} is not in docs/architecture.md's module tables: add a row saying what it holds")


def test_every_module_the_architecture_names_exists() -> None:
    """The other way round: a module removed or renamed leaves no row behind."""
    named = {name for line in (ROOT / "docs" / "architecture.md").read_text().splitlines() if line.startswith("| `")
             for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    assert named, "found no module tables in docs/architecture.md"
    gone = named - {module.stem for module in MODULES}
    assert not gone, f"docs/architecture.md names modules that do not exist: {sorted(gone)}"
