"""Both command lines' exit conventions: one line per error, exit 2, no traceback unless asked."""

import click
import pytest

from vetohash.console import Group, run
from vetohash.errors import ImageError


@click.group(cls=Group)
def cli() -> None:
    pass


@cli.command()
def known() -> None:
    raise ImageError("x.png: not a readable image")


@cli.command()
def unexpected() -> None:
    raise RuntimeError("boom")


@cli.command()
def pipe() -> None:
    raise BrokenPipeError


@cli.command()
@click.argument("n", type=int)
def matched(n: int) -> None:
    raise click.exceptions.Exit(n)


def outcome(capsys, monkeypatch, *args, debug=False):
    if debug:
        monkeypatch.setenv("VETOHASH_DEBUG", "1")
    monkeypatch.setattr("sys.argv", ["prog", *args])
    with pytest.raises(SystemExit) as done:
        run(cli, "prog")
    return done.value.code, capsys.readouterr().err


def test_a_library_error_is_one_line_and_exit_2(capsys, monkeypatch):
    code, err = outcome(capsys, monkeypatch, "known")
    assert code == 2 and err == "error: x.png: not a readable image\n"


def test_an_unexpected_exception_is_one_line_without_traceback(capsys, monkeypatch):
    code, err = outcome(capsys, monkeypatch, "unexpected")
    assert code == 2 and err.count("\n") == 1 and "internal error: RuntimeError: boom" in err


def test_debug_shows_the_traceback(capsys, monkeypatch):
    with pytest.raises(RuntimeError):
        outcome(capsys, monkeypatch, "unexpected", debug=True)


def test_a_closed_output_pipe_exits_2_not_click_s_1(capsys, monkeypatch):
    assert outcome(capsys, monkeypatch, "pipe")[0] == 2


def test_usage_errors_exit_2_and_command_exit_codes_pass_through(capsys, monkeypatch):
    assert outcome(capsys, monkeypatch, "matched", "notanumber")[0] == 2
    assert outcome(capsys, monkeypatch, "matched", "1")[0] == 1
    assert outcome(capsys, monkeypatch, "matched", "0")[0] == 0
