"""What both command lines share: exit codes and turning library errors into one line of text."""

from __future__ import annotations

import enum
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

import click

from .errors import VetohashError


class ExitCode(enum.IntEnum):
    """Process exit codes (grep's convention for screening: 1 means 'found')."""

    OK = 0
    MATCH = 1
    ERROR = 2
    USAGE = 2


def printable(text: str) -> str:
    """`text` for a terminal: every character that is not printable (control characters such as CR, LF and
    ESC, bidirectional overrides, the surrogates an undecodable file name carries) written as its Python
    escape, so a hostile file name can neither break a line nor rewrite what is already on screen."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def fail(message: str, code: ExitCode = ExitCode.ERROR) -> NoReturn:
    """Print `error: message` on stderr (non-printable characters escaped) and exit."""
    click.echo(f"error: {printable(message)}", err=True)
    sys.exit(int(code))


class Group(click.Group):
    """A click group whose commands exit 2 when their output pipe closes (`| head`): click alone exits 1,
    which for `platform screen` means "match"."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error while exiting
            raise click.exceptions.Exit(int(ExitCode.ERROR)) from None


def run(command: Callable[..., object], prog_name: str) -> None:
    """Run a click command with vetohash's exit conventions.

    A VetohashError becomes one line and exit 2; usage errors keep click's message and exit 2; anything
    unexpected is one line too. VETOHASH_DEBUG=1 shows the traceback instead.
    """
    debug = bool(os.environ.get("VETOHASH_DEBUG"))
    try:
        # Outside standalone mode click returns the code of an Exit instead of exiting (commands return None).
        code = command(prog_name=prog_name, standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(int(ExitCode.USAGE))
    except click.Abort:
        fail("aborted")
    except VetohashError as error:
        if debug:
            traceback.print_exc()
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted")
    except Exception as error:  # noqa: BLE001 (the last line of defence against a traceback)
        if debug:
            raise
        fail(f"internal error: {type(error).__name__}: {error} (set VETOHASH_DEBUG=1 for the traceback)")
    sys.exit(code if isinstance(code, int) else int(ExitCode.OK))
