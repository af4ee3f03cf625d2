"""Write docs/commands.md: every `authority` and `platform` command's --help, rendered from the code.

Run `make docs` after changing a command, an option or a help text; tests/test_docs.py fails while the
committed file differs from what this prints. The help is rendered at a fixed width, so the file does not
depend on the terminal it was made in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from vetohash_authority.cli import cli as authority
from vetohash_platform.cli import cli as platform

OUT = Path(__file__).resolve().parent / "commands.md"
WIDTH = 100
PROGRAMS = {"authority": authority, "platform": platform}

HEADER = """\
# Command reference

Every command's `--help`, generated from the code by `make docs` (`docs/make_reference.py`); a test fails
while this file differs from what the commands print, so it is never out of date. `docs/authority.md` and
`docs/platform.md` show the commands at work.
"""


def commands() -> Iterator[tuple[tuple[str, ...], click.Context]]:
    """(command path, its help context) for each program, group and subcommand, groups before their members."""

    def walk(command: click.Command, path: tuple[str, ...], parent: click.Context | None) -> Iterator:
        ctx = command.make_context(path[-1], [], parent=parent, resilient_parsing=True, terminal_width=WIDTH)
        yield path, ctx
        if isinstance(command, click.Group):
            for name in sorted(command.commands):
                yield from walk(command.commands[name], (*path, name), ctx)

    for name, program in PROGRAMS.items():
        yield from walk(program, (name,), None)


def reference() -> str:
    """The text of docs/commands.md."""
    parts = [HEADER]
    for path, ctx in commands():
        parts.append(f"\n## {' '.join(path)}\n\n```text\n{ctx.command.get_help(ctx)}\n```\n")
    return "".join(parts)


def main() -> int:
    text = reference()
    if OUT.exists() and OUT.read_text() == text:
        print(f"{OUT.name} is up to date")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
