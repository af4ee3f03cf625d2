"""What the documentation claims about the commands, read out of the Markdown: the command lines it shows
and the JSON examples it prints, each with where it was found. The tests hold these against the real
commands (tests/test_docs.py for command lines, the parties' test_*docs* for JSON examples)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
PROGRAMS = ("authority", "platform")
REGENERATE = "run `make docs` (docs/make_reference.py) and commit docs/commands.md"

_FENCE = re.compile(r"^\s*```")
_INLINE = re.compile(r"`((?:authority|platform) [^`]+)`")
_SHORT = re.compile(r"`([a-z][a-z-]* --[^`]+)`")  # `publish --privacy strict`: a subcommand, the program implied
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class Shown:
    """A command line as a document shows it: the words after the program's name, and where."""

    where: str
    program: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class JsonExample:
    """One line of JSON a document prints as the output of `command` (the words after `$ `)."""

    where: str
    command: tuple[str, ...]
    text: str

    def parsed(self) -> Any:
        return json.loads(self.text)


def _words(line: str) -> tuple[str, tuple[str, ...]] | None:
    """(program, words) when `line` runs `authority` or `platform`, else None: environment assignments,
    `time` and a path to the program are skipped; comments, pipes and redirections end the command."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return None
    while tokens and (_ENV.match(tokens[0]) or tokens[0] == "time"):
        tokens.pop(0)
    if not tokens or Path(tokens[0]).name not in PROGRAMS:
        return None
    words = []
    for token in tokens[1:]:
        if token in ("|", "||", "&&", ";") or token.startswith((">", "2>", "<")):
            break
        words.append(token)
    return Path(tokens[0]).name, tuple(words)


def _blocks(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of each fenced code block, continuation lines (`\\`) joined."""
    lines = path.read_text().splitlines()
    inside, start, block = False, 0, []
    for number, line in enumerate(lines, 1):
        if _FENCE.match(line):
            if inside:
                yield start, block
            inside, start, block = not inside, number + 1, []
        elif inside:
            if block and block[-1].endswith("\\"):
                block[-1] = block[-1][:-1] + " " + line.strip()
                block.append("")  # keeps later lines' numbers
            else:
                block.append(line)


def shown_commands(paths: tuple[Path, ...] = DOCUMENTS) -> list[Shown]:
    """Every command line in the documents' code blocks (with or without a `$ ` prompt) and inline code."""
    found = []
    for path in paths:
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for start, block in _blocks(path):
            for offset, line in enumerate(block):
                parsed = _words(line.strip().removeprefix("$ "))
                if parsed:
                    found.append(Shown(f"{name}:{start + offset}", *parsed))
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in _INLINE.finditer(line):
                parsed = _words(match.group(1))
                if parsed:
                    found.append(Shown(f"{name}:{number}", *parsed))
            for match in _SHORT.finditer(line):
                program = _program_of(match.group(1).split()[0])
                parsed = _words(f"{program} {match.group(1)}") if program else None
                if parsed:
                    found.append(Shown(f"{name}:{number}", *parsed))
    return found


def _program_of(subcommand: str) -> str | None:
    """The one program that has `subcommand` (None when neither or both do: the docs must then name it)."""
    from vetohash_authority.cli import cli as authority
    from vetohash_platform.cli import cli as platform

    owners = [name for name, cli in (("authority", authority), ("platform", platform)) if subcommand in cli.commands]
    return owners[0] if len(owners) == 1 else None


def json_examples(paths: tuple[Path, ...] = DOCUMENTS) -> list[JsonExample]:
    """Every line starting with `{` that a code block prints after a `$ ... --json` command line."""
    found = []
    for path in paths:
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for start, block in _blocks(path):
            command: tuple[str, ...] | None = None
            for offset, line in enumerate(block):
                if line.startswith("$ "):
                    parsed = _words(line[2:])
                    command = (parsed[0], *parsed[1]) if parsed and "--json" in parsed[1] else None
                elif command and line.startswith("{"):
                    found.append(JsonExample(f"{name}:{start + offset}", command, line))
    return found


def command_path(root: click.Group, words: tuple[str, ...]) -> tuple[list[click.Command], list[str]]:
    """The commands `words` walk through from `root` (root first) and the words left for the last one.

    Options given to a group before its subcommand (`platform --db x screen`) are checked against that
    group. Raises click.UsageError naming the first unknown subcommand or option."""
    chain: list[click.Command] = [root]
    rest, walked = list(words), []
    while isinstance(chain[-1], click.Group) and rest:
        word = rest.pop(0)
        if word.startswith("-"):
            option = _option(chain[-1], word, walked)
            if option is not None and not option.is_flag and "=" not in word and rest:
                rest.pop(0)
            continue
        if word not in chain[-1].commands:
            raise click.UsageError(f"no command {word!r} after {' '.join(walked) or 'the program name'}")
        chain.append(chain[-1].commands[word])
        walked.append(word)
    for word in rest:
        if word.startswith("-") and word != "-":
            _option(chain[-1], word, walked)
    return chain, rest


def _option(command: click.Command, word: str, walked: list[str] | None = None) -> click.Option | None:
    name = word.split("=", 1)[0]
    for param in command.params:
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    if name in ("-h", "--help", "--version"):
        return None
    raise click.UsageError(f"{' '.join(walked or []) or 'the program'} has no option {name}")


def key_differences(documented: Any, emitted: Any, where: str = "") -> list[str]:
    """How the keys of a documented JSON value differ from those the command emitted, at every depth
    (objects compared key by key; a list of objects compared element by element with the first emitted)."""
    if isinstance(documented, dict) and isinstance(emitted, dict):
        problems = [f"{where}{key}: documented, not emitted" for key in documented.keys() - emitted.keys()]
        problems += [f"{where}{key}: emitted, not documented" for key in emitted.keys() - documented.keys()]
        for key in documented.keys() & emitted.keys():
            problems += key_differences(documented[key], emitted[key], f"{where}{key}.")
        return problems
    if isinstance(documented, list) and isinstance(emitted, list) and emitted:
        return [problem for item in documented for problem in key_differences(item, emitted[0], f"{where}[].")]
    return []
