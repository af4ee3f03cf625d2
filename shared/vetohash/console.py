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


def fail(message: str, code: ExitCode = ExitCode.ERROR) -> NoReturn:
    """Print `error: message` on stderr and exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(int(code))


def run(command: Callable[..., object], prog_name: str) -> None:
    """Run a click command; a VetohashError becomes one line and exit 2 (a traceback with VETOHASH_DEBUG=1)."""
    try:
        command(prog_name=prog_name, standalone_mode=True)
    except VetohashError as error:
        if os.environ.get("VETOHASH_DEBUG"):
            traceback.print_exc()
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted", ExitCode.ERROR)
